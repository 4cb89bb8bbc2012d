//! `taskd dev`: a local cluster of N nodes in one process, each with its own
//! port and SQLite database, for trying taskd out. Ctrl-C stops it cleanly.

use std::collections::BTreeMap;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{DevArgs, NodeConfig};
use crate::security::{ClusterSecret, SecurityConfig, SecurityError};
use crate::server::{self, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("--nodes must be between 1 and 9, not {0}")]
    Nodes(u16),
    #[error("ports {first}..={last} do not fit below 65536")]
    Ports { first: u16, last: u32 },
    #[error("cannot listen on {addr}: {source} (is another taskd running? try --base-port)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("node {id}: {source}")]
    Node { id: u64, source: ServerError },
    #[error("cluster secret {path}: {source}")]
    SecretFile {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Secret(#[from] SecurityError),
}

/// The local cluster's secret: `<data-dir>/cluster-secret`, made (readable
/// by its owner only) on the first start and reused after, so that even a
/// dev cluster's peer calls need cluster credentials.
fn cluster_secret(data_dir: &std::path::Path) -> Result<ClusterSecret, DevError> {
    let path = data_dir.join("cluster-secret");
    let io_err = |source| DevError::SecretFile {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(data_dir).map_err(io_err)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        writeln!(file, "{}", ClusterSecret::generate().expose()).map_err(io_err)?;
    }
    Ok(ClusterSecret::from_file(&path)?)
}

/// Runs the cluster until `shutdown` resolves.
pub async fn run(
    args: DevArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DevError> {
    if !(1..=9).contains(&args.nodes) {
        return Err(DevError::Nodes(args.nodes));
    }
    let last = u32::from(args.base_port) + u32::from(args.nodes) - 1;
    if last > u32::from(u16::MAX) {
        return Err(DevError::Ports {
            first: args.base_port,
            last,
        });
    }
    let members: BTreeMap<u64, String> = (1..=u64::from(args.nodes))
        .map(|id| {
            (
                id,
                format!("127.0.0.1:{}", u64::from(args.base_port) + id - 1),
            )
        })
        .collect();

    // Bind every port first: a clash fails before any node starts.
    let mut listeners = Vec::new();
    for addr in members.values() {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DevError::Bind {
                addr: addr.clone(),
                source,
            })?;
        listeners.push(listener);
    }

    let secret = cluster_secret(&args.data_dir)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut nodes = tokio::task::JoinSet::new();
    for ((id, addr), listener) in members.iter().zip(listeners) {
        let config = NodeConfig {
            node_id: *id,
            advertise: addr.clone(),
            data_dir: args.data_dir.join(format!("node{id}")),
            database_url: format!(
                "sqlite://{}",
                args.data_dir
                    .join(format!("node{id}"))
                    .join("taskd.db")
                    .display()
            ),
            allow_lossy_database: false,
            initial_cluster: members.clone(),
            join: None,
            snapshots: Default::default(),
            raft_timing: Default::default(),
            security: SecurityConfig {
                cluster_secret: Some(secret.clone()),
                ..Default::default()
            },
            limits: Default::default(),
            peer_listen: None,
            metrics_listen: None,
        };
        let mut stop = stop_rx.clone();
        let id = *id;
        nodes.spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            (id, server::run(config, listener, shutdown).await)
        });
    }

    let endpoints: Vec<&str> = members.values().map(String::as_str).collect();
    println!(
        "taskd dev: {} nodes, data in {}",
        args.nodes,
        args.data_dir.display()
    );
    for (id, addr) in &members {
        println!("  node {id}: {addr}");
    }
    println!("Try:");
    println!(
        "  grpcurl -plaintext -d '{{\"title\": \"hello\"}}' {} taskd.v1.TaskService/CreateTask",
        endpoints[0]
    );
    println!("Ctrl-C stops the cluster.");

    tokio::select! {
        () = shutdown => {}
        Some(joined) = nodes.join_next() => {
            // A node stopped on its own: stop the others and report it.
            let _ = stop_tx.send(true);
            while nodes.join_next().await.is_some() {}
            return match joined {
                Ok((id, Err(source))) => Err(DevError::Node { id, source }),
                _ => Ok(()),
            };
        }
    }
    println!("stopping…");
    let _ = stop_tx.send(true);
    let mut first_error = None;
    while let Some(joined) = nodes.join_next().await {
        if let Ok((id, Err(source))) = joined {
            first_error.get_or_insert(DevError::Node { id, source });
        }
    }
    first_error.map_or(Ok(()), Err)
}
