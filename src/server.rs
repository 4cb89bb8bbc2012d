//! One node: open the store, start Raft, serve gRPC until shutdown.
//!
//! - [`incoming`]: accepting connections: TLS, the connection cap, running
//!   out of file descriptors.
//! - [`security`]: a node's TLS, credentials checker and peer dialer,
//!   reloaded on SIGHUP.

pub mod incoming;
pub mod security;

use std::future::Future;
use std::sync::Arc;

use openraft::storage::RaftLogStorage;
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tonic_health::pb::health_server::HealthServer;
use tracing::Instrument;

use crate::api::auth::AuthLayer;
use crate::api::health::{HealthApi, NodeHealth};
use crate::api::limits::{ShedLayer, MAX_CONCURRENT_STREAMS, MAX_RESPONSE_BYTES};
use crate::api::{NodeContext, RaftApi, TaskApi};
use crate::cluster::{Cluster, ClusterError};
use crate::config::NodeConfig;
use crate::proto::raft_service_server::RaftServiceServer;
use crate::proto::task_service_server::TaskServiceServer;
use crate::raft::log_store::LogStore;
use crate::raft::network::{Network, MAX_MESSAGE_BYTES};
use crate::raft::proposer::Proposer;
use crate::raft::read_index::ReadIndex;
use crate::raft::state_machine::StateMachine;
use crate::raft::{raft_config, LogId, Raft};
use crate::security::SecurityError;
use crate::store::{Store, StoreError, StoreOptions};
use security::Security;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("raft: {0}")]
    Raft(String),
    /// The Raft core stopped on its own (a storage failure): the node
    /// cannot recover in-process, so it stops and lets its supervisor
    /// restart it (see `run`).
    #[error("raft stopped on a fatal error: {0}; exiting so that a supervisor restarts this node")]
    RaftStopped(String),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Security(#[from] SecurityError),
    #[error("cannot listen on --peer-listen {addr}: {source}")]
    PeerListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("--metrics-listen: {0}")]
    MetricsListen(std::io::Error),
}

/// A service that takes gzip, deflate and zstd requests, and compresses
/// its answers for clients that ask (`grpc-accept-encoding`). The message
/// size limits apply to the decompressed message, so a small compressed
/// bomb is refused like a big message.
macro_rules! compressed {
    ($service:expr) => {
        $service
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Deflate)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Deflate)
            .send_compressed(CompressionEncoding::Zstd)
    };
}

fn raft_err(e: impl std::fmt::Display) -> ServerError {
    ServerError::Raft(e.to_string())
}

/// How long a stopping node waits for in-flight calls and open streams.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs one node on `listener` until `shutdown` resolves; then stops taking
/// calls, lets in-flight ones finish, stops Raft and closes the database.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Bad TLS or token files fail the start before anything else happens.
    let security = Security::load(&config.security)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let options = StoreOptions {
        allow_lossy_database: config.allow_lossy_database,
    };
    let mut listeners = Vec::new();
    let tls = security.server_tls.clone();
    listeners.push(incoming::Listener {
        listener,
        tls: tls.clone(),
        peer_listener: config.peer_listen.is_none(),
    });
    if let Some(addr) = config.peer_listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::PeerListen { addr, source })?;
        listeners.push(incoming::Listener {
            listener,
            tls,
            peer_listener: true,
        });
    }
    let store = Store::connect_with(&config.database_url, options).await?;
    let result = serve(&config, store.clone(), security, listeners, shutdown)
        .instrument(tracing::info_span!("node", node = config.node_id))
        .await;
    store.close().await;
    result
}

async fn serve(
    config: &NodeConfig,
    store: Store,
    security: Security,
    listeners: Vec<incoming::Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let id = config.node_id;
    let mut log_store = LogStore::new(store.clone());
    let commit_index = log_store.commit_index();
    // Health waits until what was committed before this start is applied again.
    let committed_at_start = log_store.read_committed().await.map_err(raft_err)?;
    let state_machine = StateMachine::new(store.clone(), config.data_dir.join("snapshots"))
        .await
        .map_err(raft_err)?;
    let raft_config =
        Arc::new(raft_config("taskd", config.snapshots, config.raft_timing).map_err(raft_err)?);
    let network = Network::new(security.dialer.clone());
    let refusal = network.refusal();
    let muted = network.muted();
    let raft = Raft::new(id, raft_config, network, log_store, state_machine)
        .await
        .map_err(raft_err)?;

    let founder = config.initial_cluster.keys().next() == Some(&id);
    if founder && !raft.is_initialized().await.map_err(raft_err)? {
        let members = config
            .initial_cluster
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect::<std::collections::BTreeMap<_, _>>();
        tracing::info!(node = id, ?members, "initializing a new cluster");
        raft.initialize(members).await.map_err(raft_err)?;
    }

    let (health_tx, health_api) = HealthApi::new();
    let health = tokio::spawn(report_health(
        raft.clone(),
        health_tx.clone(),
        committed_at_start,
    ));
    let _gauges = crate::raft::gauges::spawn(id, raft.clone(), commit_index, store.clone());
    let ready = crate::api::health::readiness(&health_tx);
    let _metrics_http = crate::metrics::http::start(config.metrics_listen, ready)
        .await
        .map_err(ServerError::MetricsListen)?;

    let read_index = ReadIndex::start(id, raft.clone(), security.dialer.clone());
    let proposer = Proposer::start(raft.clone());
    let cluster = Cluster::start(
        id,
        raft.clone(),
        proposer.clone(),
        config.raft_timing,
        refusal,
        muted,
        crate::cluster::peers::Peers::new(security.dialer.clone()),
    );
    let ctx = NodeContext::new(
        id,
        raft.clone(),
        store.clone(),
        proposer,
        read_index.clone(),
        cluster.clone(),
        security.dialer.clone(),
    );
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let reloading = security.reload_on_sighup(id);
    let max_conns = incoming::max_connections();
    tracing::info!(
        node = id,
        addr = %config.advertise,
        tls = security.server_tls.is_some(),
        cluster_auth = config.security.cluster_auth(),
        client_tokens = config.security.token_file.is_some(),
        max_connections = max_conns,
        "serving"
    );
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = config.limits;
    let server = Server::builder()
        // Dead connections are found and closed; no client holds more
        // streams than this; a flood of resets cannot pile up work.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_max_header_list_size(Some(16 * 1024))
        // Outermost: every call counts in the metrics, refused ones too.
        .layer(crate::api::observe::ObserveLayer::new(id))
        // Refused before anything else runs: no credentials, no capacity.
        .layer(AuthLayer::new(security.auth.clone()))
        .layer(ShedLayer::new(&limits))
        .add_service(HealthServer::new(health_api))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(compressed!(TaskServiceServer::new(TaskApi::new(ctx))
            .max_decoding_message_size(limits.max_request_bytes)
            .max_encoding_message_size(MAX_RESPONSE_BYTES)))
        .add_service(compressed!(RaftServiceServer::new(
            RaftApi::new(id, raft.clone(), read_index, cluster.clone(), store.clone())
                .with_max_snapshot_bytes(config.snapshots.max_bytes),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)))
        .serve_with_incoming_shutdown(incoming::incoming(listeners, max_conns), async {
            let _ = drain_rx.await;
        });
    let mut server = Box::pin(server);
    // Joining needs this node served: the leader sends it the log.
    let joining = config.join.clone().map(|plan| {
        let cluster = cluster.clone();
        tokio::spawn(async move { cluster.join(&plan).await })
    });
    tokio::pin!(shutdown);
    let stopped = raft_stopped(raft.clone());
    tokio::pin!(stopped);
    let mut fatal = None;
    let stop_reason = tokio::select! {
        served = &mut server => Err(served),
        () = &mut shutdown => Ok("shutting down"),
        why = &mut stopped => {
            tracing::error!(node = id, error = %why, "raft stopped on a fatal error: this node exits so that its supervisor restarts it");
            fatal = Some(why);
            Ok("raft stopped")
        }
    };
    let served = match stop_reason {
        Err(served) => served,
        Ok(reason) => 'stopping: {
            // Tell load balancers first (health Watch streams say NOT_SERVING
            // and end), then drain: new calls are refused, in-flight ones
            // finish. Whatever is still open after DRAIN_TIMEOUT is abandoned.
            if let Some(joining) = &joining {
                joining.abort();
            }
            if fatal.is_none() {
                // The server goes on serving meanwhile: the target's vote
                // request, and forwarded writes, must reach this node.
                tokio::select! {
                    served = &mut server => break 'stopping served,
                    () = hand_over_leadership(&cluster) => {}
                }
            }
            tracing::info!(node = id, reason, "draining in-flight calls");
            health.abort();
            health_tx.send_replace(NodeHealth::Stopping);
            let _ = drain_tx.send(());
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!(
                        node = id,
                        "calls still open after {DRAIN_TIMEOUT:?}; closing them"
                    );
                    Ok(())
                }
            }
        }
    };

    drop(server);
    reloading.abort();
    tracing::info!(node = id, "stopping raft");
    health.abort();
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(node = id, error = %e, "raft did not stop cleanly");
    }
    tracing::info!(node = id, "raft stopped");
    served?;
    match fatal {
        Some(why) => Err(ServerError::RaftStopped(why)),
        None => Ok(()),
    }
}

/// A leader that stops first hands leadership to another voter, so that
/// clients see a planned move (writes held for milliseconds) instead of an
/// election after a silent leader (leader lease + election timeout).
/// Bounded: a node that cannot hand over stops anyway.
async fn hand_over_leadership(cluster: &Cluster) {
    let deadline = tokio::time::Instant::now() + HAND_OVER_TIMEOUT;
    match cluster.transfer_leadership(None, deadline).await {
        Ok(moved) if moved.leader != cluster.id() => {
            tracing::info!(
                node = cluster.id(),
                leader = moved.leader,
                held_ms = moved.writes_held.as_millis() as u64,
                "handed leadership over before stopping"
            );
        }
        Ok(_) | Err(ClusterError::NotLeader(_)) => {}
        Err(e) => {
            tracing::warn!(node = cluster.id(), error = %e, "could not hand leadership over before stopping")
        }
    }
}

/// How long a stopping leader tries to hand leadership over.
const HAND_OVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Resolves when this node's Raft core has stopped on a fatal error (a
/// storage failure: openraft never restarts a core). Never resolves while
/// it runs. The node then exits non-zero rather than linger NOT_SERVING
/// forever: once its store answers again, a restart is all it needs, and
/// its supervisor (systemd, Kubernetes, `taskd dev`'s caller) does that.
async fn raft_stopped(raft: Raft) -> String {
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state {
            return fatal.to_string();
        }
        if metrics.changed().await.is_err() {
            // The core is gone without a word: nothing more will be said.
            return "raft metrics closed".to_string();
        }
    }
}

/// Reflection over every service served here, and the error details
/// (`google.rpc.*`) they return, so grpcurl needs no proto files.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// SERVING while this node knows a leader, its Raft runs, and it has applied
/// everything that was committed when it started; NOT_SERVING otherwise.
async fn report_health(
    raft: Raft,
    health: watch::Sender<NodeHealth>,
    committed_at_start: Option<LogId>,
) {
    let mut metrics = raft.metrics();
    loop {
        let serving = {
            let m = metrics.borrow_and_update();
            m.running_state.is_ok()
                && m.current_leader.is_some()
                && crate::cluster::membership::not_serving_reason(&m).is_none()
                && m.last_applied.map(|l| l.index) >= committed_at_start.map(|l| l.index)
        };
        let state = if serving {
            NodeHealth::Serving
        } else {
            NodeHealth::NotServing
        };
        health.send_if_modified(|current| {
            let changed = *current != state && *current != NodeHealth::Stopping;
            if changed {
                *current = state;
            }
            changed
        });
        if metrics.changed().await.is_err() {
            break;
        }
    }
    health.send_if_modified(|current| {
        let changed = *current == NodeHealth::Serving;
        if changed {
            *current = NodeHealth::NotServing;
        }
        changed
    });
}
