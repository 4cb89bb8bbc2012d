//! The command line: `taskd serve` runs one node, `taskd dev` a local
//! cluster. Every flag has a `TASKD_…` environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::raft::{NodeId, SnapshotTuning};

#[derive(Debug, Parser)]
#[command(
    name = "taskd",
    version,
    about = "A highly available, Raft-replicated task service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a cluster.
    Serve(ServeArgs),
    /// Run a local cluster of N nodes in this process, on embedded SQLite.
    Dev(DevArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// This node's id: a positive integer, unique in the cluster and never
    /// reused for another node (even after this one is removed).
    #[arg(long, env = "TASKD_NODE_ID")]
    pub node_id: NodeId,

    /// Address to listen on for both the public and the internal API.
    #[arg(long, env = "TASKD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Address other nodes and forwarded clients use to reach this node
    /// (host:port). Defaults to --listen; required when listening on 0.0.0.0.
    #[arg(long, env = "TASKD_ADVERTISE")]
    pub advertise: Option<String>,

    /// Directory of this node's files (the SQLite database by default).
    #[arg(long, env = "TASKD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// `mysql://user:pass@host:port/db` (created if missing) or `sqlite://path`.
    /// Default: `sqlite://<data-dir>/taskd.db`. One database per node.
    #[arg(long, env = "TASKD_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Every founding member as `id=host:port,…`. The lowest id initializes a
    /// new cluster once; restarts never re-initialize. Must be the same on
    /// every node.
    #[arg(long, env = "TASKD_INITIAL_CLUSTER", value_parser = parse_initial_cluster)]
    pub initial_cluster: InitialCluster,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// How many nodes to run.
    #[arg(long, env = "TASKD_DEV_NODES", default_value_t = 3)]
    pub nodes: u16,

    /// The first node's port; node i listens on base-port + i - 1.
    #[arg(long, env = "TASKD_DEV_BASE_PORT", default_value_t = 50051)]
    pub base_port: u16,

    /// Where the nodes keep their SQLite databases (one subdirectory each).
    #[arg(long, env = "TASKD_DEV_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

/// Node id → address of the founding members.
pub type InitialCluster = BTreeMap<NodeId, String>;

fn parse_initial_cluster(value: &str) -> Result<InitialCluster, String> {
    let mut members = BTreeMap::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not id=host:port"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} in {part:?} is not a node id"))?;
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(format!("{addr:?} in {part:?} is not host:port"));
        }
        if members.insert(id, addr.to_string()).is_some() {
            return Err(format!("node id {id} appears twice"));
        }
    }
    if members.is_empty() {
        return Err("names no node".into());
    }
    Ok(members)
}

/// A node's settings, validated and with defaults resolved.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub advertise: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub initial_cluster: InitialCluster,
    /// Log compaction; not a flag yet (cluster operations will add one).
    pub snapshots: SnapshotTuning,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-id must be at least 1 (0 means \"no node\" in cluster status)")]
    ZeroNodeId,
    #[error("--node-id {0} is not in --initial-cluster")]
    NotAMember(NodeId),
    #[error("--initial-cluster node ids must be at least 1")]
    ZeroMember,
    #[error("--listen {0} is a wildcard address: give --advertise host:port")]
    NeedAdvertise(SocketAddr),
    #[error(
        "--advertise {advertise} differs from this node's address {member} in --initial-cluster"
    )]
    AdvertiseMismatch { advertise: String, member: String },
}

impl ServeArgs {
    /// Turns the flags into a [`NodeConfig`], or says precisely what is wrong.
    pub fn validate(&self) -> Result<NodeConfig, ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        if self.initial_cluster.contains_key(&0) {
            return Err(ConfigError::ZeroMember);
        }
        let member = self
            .initial_cluster
            .get(&self.node_id)
            .ok_or(ConfigError::NotAMember(self.node_id))?;
        let advertise = match &self.advertise {
            Some(a) => a.clone(),
            None if self.listen.ip().is_unspecified() => {
                return Err(ConfigError::NeedAdvertise(self.listen))
            }
            None => self.listen.to_string(),
        };
        if &advertise != member {
            return Err(ConfigError::AdvertiseMismatch {
                advertise,
                member: member.clone(),
            });
        }
        let database_url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("taskd.db").display()));
        Ok(NodeConfig {
            node_id: self.node_id,
            advertise,
            data_dir: self.data_dir.clone(),
            database_url,
            initial_cluster: self.initial_cluster.clone(),
            snapshots: SnapshotTuning::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut argv = vec!["taskd", "serve", "--node-id", "1", "--data-dir", "/tmp/x"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(a) => Ok(a),
            Command::Dev(_) => unreachable!(),
        }
    }

    #[test]
    fn parses_and_defaults() {
        let a = args(&["--initial-cluster", "1=127.0.0.1:50051,2=127.0.0.1:50052"]).unwrap();
        let c = a.validate().unwrap();
        assert_eq!(c.advertise, "127.0.0.1:50051");
        assert_eq!(c.database_url, "sqlite:///tmp/x/taskd.db");
        assert_eq!(c.initial_cluster.len(), 2);
    }

    #[test]
    fn rejects_nonsense() {
        assert!(args(&["--initial-cluster", "1=nohost"]).is_err());
        assert!(args(&["--initial-cluster", "1=a:1,1=b:2"]).is_err());
        let a = args(&["--initial-cluster", "2=127.0.0.1:50052"]).unwrap();
        assert!(matches!(a.validate(), Err(ConfigError::NotAMember(1))));
        let a = args(&["--initial-cluster", "1=10.0.0.1:50051"]).unwrap();
        assert!(matches!(
            a.validate(),
            Err(ConfigError::AdvertiseMismatch { .. })
        ));
        let a = args(&[
            "--listen",
            "0.0.0.0:50051",
            "--initial-cluster",
            "1=h:50051",
        ])
        .unwrap();
        assert!(matches!(a.validate(), Err(ConfigError::NeedAdvertise(_))));
    }
}
