//! One node: open the store, start Raft, serve gRPC until shutdown.

use std::future::Future;
use std::sync::Arc;

use openraft::storage::RaftLogStorage;
use openraft::BasicNode;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::api::{NodeContext, RaftApi, TaskApi};
use crate::config::NodeConfig;
use crate::proto::raft_service_server::RaftServiceServer;
use crate::proto::task_service_server::TaskServiceServer;
use crate::raft::log_store::LogStore;
use crate::raft::network::{Network, MAX_MESSAGE_BYTES};
use crate::raft::state_machine::StateMachine;
use crate::raft::{raft_config, LogId, Raft};
use crate::store::{Store, StoreError};

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
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

fn raft_err(e: impl std::fmt::Display) -> ServerError {
    ServerError::Raft(e.to_string())
}

/// The gRPC service names whose health this node reports, besides "".
const SERVICES: [&str; 2] = ["taskd.v1.TaskService", "taskd.v1.RaftService"];

/// Runs one node on `listener` until `shutdown` resolves; then stops taking
/// calls, lets in-flight ones finish, stops Raft and closes the database.
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let store = Store::connect(&config.database_url).await?;
    let result = serve(&config, store.clone(), listener, shutdown).await;
    store.close().await;
    result
}

async fn serve(
    config: &NodeConfig,
    store: Store,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let id = config.node_id;
    let mut log_store = LogStore::new(store.clone());
    // Health waits until what was committed before this start is applied again.
    let committed_at_start = log_store.read_committed().await.map_err(raft_err)?;
    let state_machine = StateMachine::new(store.clone()).await.map_err(raft_err)?;
    let raft_config = Arc::new(raft_config("taskd").map_err(raft_err)?);
    let raft = Raft::new(id, raft_config, Network, log_store, state_machine)
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

    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = tokio::spawn(report_health(raft.clone(), reporter, committed_at_start));

    let ctx = NodeContext::new(id, raft.clone(), store);
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    tracing::info!(node = id, addr = %config.advertise, "serving");
    let served = Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            TaskServiceServer::new(TaskApi::new(ctx))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            RaftServiceServer::new(RaftApi::new(id, raft.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;

    tracing::info!(node = id, "stopping raft");
    health.abort();
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(node = id, error = %e, "raft did not stop cleanly");
    }
    served?;
    Ok(())
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
async fn report_health(raft: Raft, reporter: HealthReporter, committed_at_start: Option<LogId>) {
    let mut metrics = raft.metrics();
    let mut last = None;
    loop {
        let serving = {
            let m = metrics.borrow_and_update();
            m.running_state.is_ok()
                && m.current_leader.is_some()
                && m.last_applied.map(|l| l.index) >= committed_at_start.map(|l| l.index)
        };
        if last != Some(serving) {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            for service in SERVICES {
                reporter.set_service_status(service, status).await;
            }
            last = Some(serving);
        }
        if metrics.changed().await.is_err() {
            break;
        }
    }
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}
