//! The command line: `taskd serve` runs one node, `taskd dev` a local
//! cluster. Every flag has a `TASKD_…` environment variable.
//!
//! - [`security`]: `taskd serve`'s credential, TLS, token and limit flags.

pub mod security;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::api::limits::Limits;
use crate::cluster::join::{JoinAs, JoinPlan};
use crate::raft::{NodeId, RaftTiming, SnapshotTuning, QUORUM_WAIT, SNAPSHOT_CHUNK_BYTES};
use crate::security::{SecurityConfig, SecurityError};
pub use security::{LimitArgs, SecurityArgs};

#[derive(Debug, Parser)]
#[command(
    name = "taskd",
    version,
    about = "A highly available, Raft-replicated task service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object a line, with the span fields) for log collectors.
    #[arg(long, env = "TASKD_LOG_FORMAT", global = true, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,

    /// The least severe level logged: error, warn, info, debug or trace (or
    /// any `RUST_LOG`-style directive list). At `info`, openraft and sqlx log
    /// only warnings. `RUST_LOG`, when set, wins over this flag.
    #[arg(long, env = "TASKD_LOG_LEVEL", global = true, default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a cluster.
    Serve(Box<ServeArgs>),
    /// Run a local cluster of N nodes in this process, on embedded SQLite.
    Dev(DevArgs),
    /// Measure throughput, latency and failover time, against running nodes
    /// (--endpoints) or a local cluster of `taskd serve` processes (--nodes).
    Bench(crate::bench::BenchArgs),
    /// Administer a running cluster: status, add-learner, promote, remove,
    /// transfer-leader.
    Cluster(crate::cli::cluster::ClusterArgs),
    /// DANGEROUS, when a majority of the voters is lost for good: turn one
    /// stopped survivor's data into a new one-node cluster.
    Recover(crate::cli::recover::RecoverArgs),
    /// Write a consistent point-in-time copy of the cluster's state (taken
    /// through the leader) to a file.
    Backup(crate::cli::backup::BackupArgs),
    /// Seed a new node's empty database from a backup file.
    Restore(crate::cli::backup::RestoreArgs),
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

    /// Run on a MySQL server that loses committed transactions on a crash
    /// (`innodb_flush_log_at_trx_commit` other than 1). Without this flag
    /// such a server is refused: acknowledged writes could vanish.
    #[arg(long, env = "TASKD_UNSAFE_ALLOW_LOSSY_DATABASE")]
    pub unsafe_allow_lossy_database: bool,

    /// Every founding member as `id=host:port,…`, to found a new cluster:
    /// the lowest id initializes it once; restarts never re-initialize.
    /// Must be the same on every founding node. Nodes added later use
    /// --join instead.
    #[arg(long, env = "TASKD_INITIAL_CLUSTER", value_parser = parse_initial_cluster)]
    pub initial_cluster: Option<InitialCluster>,

    /// Join a running cluster: addresses (host:port,…) of any of its
    /// members. This node starts empty, asks the leader to add it as a
    /// learner, and catches up by snapshot and log. Ignored once this node
    /// is a member (a restart keeps the flag harmlessly).
    #[arg(
        long,
        env = "TASKD_JOIN",
        value_delimiter = ',',
        conflicts_with = "initial_cluster"
    )]
    pub join: Vec<String>,

    /// What a joining node becomes: a learner until an operator promotes it
    /// (`taskd cluster promote`), or a voter as soon as it has caught up.
    #[arg(long, env = "TASKD_JOIN_AS", value_enum, default_value_t = JoinAs::Learner)]
    pub join_as: JoinAs,

    /// How often the leader sends heartbeats, in milliseconds. Shorter
    /// notices a dead leader sooner at the cost of more idle traffic.
    /// Use the same value on every node.
    #[arg(long, env = "TASKD_HEARTBEAT_INTERVAL", default_value_t = RaftTiming::default().heartbeat_interval_ms)]
    pub heartbeat_interval: u64,

    /// Milliseconds without a heartbeat before a follower may call an
    /// election (each node draws its timeout from [T, 2T)). A dead leader is
    /// replaced after about 3-4 T; too short for the machine's hiccups
    /// (at least 3 heartbeats) causes needless elections. At most 1000, so
    /// that an election fits in a call's bounded wait. Use the same value on
    /// every node.
    #[arg(long, env = "TASKD_ELECTION_TIMEOUT", default_value_t = RaftTiming::default().election_timeout_ms)]
    pub election_timeout: u64,

    /// Breaks this node on purpose, for taskd-chaos (feature `chaos-break`).
    #[cfg(feature = "chaos-break")]
    #[arg(long = "break", env = "TASKD_BREAK", hide = true, value_enum)]
    pub break_mode: Option<crate::chaos_break::Mode>,

    /// Build a snapshot (and purge the log behind it) after this many log
    /// entries since the last one. Smaller keeps the log short and restarts
    /// quick, at the cost of writing the whole state more often.
    #[arg(long, env = "TASKD_SNAPSHOT_EVERY", default_value_t = SnapshotTuning::default().every)]
    pub snapshot_every: u64,

    /// Log entries kept behind a snapshot, so that a follower a little
    /// behind catches up from the log instead of a whole snapshot. More
    /// costs disk; fewer sends snapshots sooner.
    #[arg(long, env = "TASKD_SNAPSHOT_KEEP_LOGS", default_value_t = SnapshotTuning::default().keep_logs)]
    pub snapshot_keep_logs: u64,

    /// The largest snapshot (bytes) this node accepts from a peer; a chunk
    /// past it is refused with INVALID_ARGUMENT before anything is written
    /// for it. Must exceed the cluster's state; a snapshot is received into a
    /// file under --data-dir, one chunk in memory at a time.
    #[arg(long, env = "TASKD_MAX_SNAPSHOT_BYTES", default_value_t = SnapshotTuning::default().max_bytes)]
    pub max_snapshot_bytes: u64,

    #[command(flatten)]
    pub security: SecurityArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` over plain
    /// HTTP on this address (host:port). Off by default.
    #[arg(long, env = "TASKD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
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
        if !is_host_port(addr) {
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

fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// A node's settings, validated and with defaults resolved.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub advertise: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// `--unsafe-allow-lossy-database`.
    pub allow_lossy_database: bool,
    /// The founding members; empty for a node that joins.
    pub initial_cluster: InitialCluster,
    /// How to join a running cluster (`--join`), if this node does.
    pub join: Option<JoinPlan>,
    /// Log compaction.
    pub snapshots: SnapshotTuning,
    /// Heartbeats and elections.
    pub raft_timing: RaftTiming,
    /// Cluster credentials, TLS and client tokens.
    pub security: SecurityConfig,
    /// Bounds on public API calls.
    pub limits: Limits,
    /// `--peer-listen`: where the peer RPCs are served, if apart.
    pub peer_listen: Option<SocketAddr>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--node-id must be at least 1 (0 means \"no node\" in cluster status)")]
    ZeroNodeId,
    #[error("--node-id {0} is not in --initial-cluster")]
    NotAMember(NodeId),
    #[error("give --initial-cluster to found a new cluster, or --join ADDR[,ADDR…] to join a running one")]
    NoCluster,
    #[error("--join {0:?} is not host:port")]
    BadJoinAddress(String),
    #[error("--initial-cluster node ids must be at least 1")]
    ZeroMember,
    #[error("--listen {0} is a wildcard address: give --advertise host:port")]
    NeedAdvertise(SocketAddr),
    #[error("--heartbeat-interval must be at least 10 ms, not {0}")]
    HeartbeatTooShort(u64),
    #[error("--election-timeout {election} ms must be at least 3 heartbeats ({} ms)", 3 * .heartbeat)]
    ElectionTooShort { election: u64, heartbeat: u64 },
    #[error("--election-timeout {0} ms is too long: an election (about 4 of them) must fit in the {wait}s a call waits for a leader; at most 1000", wait = QUORUM_WAIT.as_secs())]
    ElectionTooLong(u64),
    #[error(
        "--advertise {advertise} differs from this node's address {member} in --initial-cluster"
    )]
    AdvertiseMismatch { advertise: String, member: String },
    #[error("--snapshot-every must be at least 1")]
    ZeroSnapshotEvery,
    #[error("--max-snapshot-bytes {0} is below one snapshot chunk ({SNAPSHOT_CHUNK_BYTES} bytes)")]
    MaxSnapshotTooSmall(u64),
    #[error("{0}")]
    Security(#[from] SecurityError),
    #[error("{listen} is reachable from other machines, and anyone who reaches it could call RaftService (vote, append entries, install a snapshot): give --cluster-secret-file FILE (the same secret on every node), or --peer-ca-file CA with --tls-cert-file and --tls-key-file; or --insecure-no-cluster-auth to run without cluster credentials on purpose")]
    OpenToNetwork { listen: String },
    #[error("--tls-cert-file needs --peer-ca-file: the CA this node checks its peers' certificates against (and whose certificates make a caller a peer)")]
    TlsNeedsPeerCa,
    #[error("{flag} needs --tls-cert-file and --tls-key-file")]
    NeedsTls { flag: &'static str },
    #[error("--max-request-bytes must be between 64 KiB and 64 MiB, not {0}")]
    MaxRequestBytes(usize),
    #[error("--max-concurrent-calls must be at least 1")]
    ZeroConcurrentCalls,
}

impl ServeArgs {
    /// Turns the flags into a [`NodeConfig`], or says precisely what is wrong.
    pub fn validate(&self) -> Result<NodeConfig, ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        // Members reach each other on the peer address when it is apart.
        let member_listen = self.security.peer_listen.unwrap_or(self.listen);
        let advertise = match &self.advertise {
            Some(a) => a.clone(),
            None if member_listen.ip().is_unspecified() => {
                return Err(ConfigError::NeedAdvertise(member_listen))
            }
            None => member_listen.to_string(),
        };
        let security = self.security.validate(self.listen)?;
        let (initial_cluster, join) = match &self.initial_cluster {
            Some(initial) => {
                if initial.contains_key(&0) {
                    return Err(ConfigError::ZeroMember);
                }
                let member = initial
                    .get(&self.node_id)
                    .ok_or(ConfigError::NotAMember(self.node_id))?;
                if &advertise != member {
                    return Err(ConfigError::AdvertiseMismatch {
                        advertise,
                        member: member.clone(),
                    });
                }
                (initial.clone(), None)
            }
            None if self.join.is_empty() => return Err(ConfigError::NoCluster),
            None => {
                if let Some(bad) = self.join.iter().find(|a| !is_host_port(a)) {
                    return Err(ConfigError::BadJoinAddress(bad.clone()));
                }
                let plan = JoinPlan {
                    seeds: self.join.clone(),
                    advertise: advertise.clone(),
                    join_as: self.join_as,
                };
                (InitialCluster::new(), Some(plan))
            }
        };
        let raft_timing = self.raft_timing()?;
        #[cfg(feature = "chaos-break")]
        crate::chaos_break::install(self.break_mode);
        let database_url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("taskd.db").display()));
        Ok(NodeConfig {
            node_id: self.node_id,
            advertise,
            data_dir: self.data_dir.clone(),
            database_url,
            allow_lossy_database: self.unsafe_allow_lossy_database,
            initial_cluster,
            join,
            snapshots: self.snapshots()?,
            raft_timing,
            security,
            limits: self.limits.validate()?,
            peer_listen: self.security.peer_listen,
            metrics_listen: self.metrics_listen,
        })
    }

    fn snapshots(&self) -> Result<SnapshotTuning, ConfigError> {
        if self.snapshot_every == 0 {
            return Err(ConfigError::ZeroSnapshotEvery);
        }
        if self.max_snapshot_bytes < SNAPSHOT_CHUNK_BYTES {
            return Err(ConfigError::MaxSnapshotTooSmall(self.max_snapshot_bytes));
        }
        Ok(SnapshotTuning {
            every: self.snapshot_every,
            keep_logs: self.snapshot_keep_logs,
            max_bytes: self.max_snapshot_bytes,
        })
    }

    fn raft_timing(&self) -> Result<RaftTiming, ConfigError> {
        let (heartbeat, election) = (self.heartbeat_interval, self.election_timeout);
        if heartbeat < 10 {
            return Err(ConfigError::HeartbeatTooShort(heartbeat));
        }
        if election < 3 * heartbeat {
            return Err(ConfigError::ElectionTooShort {
                election,
                heartbeat,
            });
        }
        let timing = RaftTiming {
            heartbeat_interval_ms: heartbeat,
            election_timeout_ms: election,
        };
        if election > 1000 || timing.worst_failover() >= QUORUM_WAIT {
            return Err(ConfigError::ElectionTooLong(election));
        }
        Ok(timing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut argv = vec!["taskd", "serve", "--node-id", "1", "--data-dir", "/tmp/x"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(a) => Ok(*a),
            _ => unreachable!(),
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

    #[test]
    fn raft_timing_flags() {
        let cluster = ["--initial-cluster", "1=127.0.0.1:50051"];
        let c = args(&cluster).unwrap().validate().unwrap();
        assert_eq!(c.raft_timing, RaftTiming::default());
        assert!(c.raft_timing.worst_failover() < std::time::Duration::from_secs(1));
        let timing = |extra: &[&str]| {
            let mut argv = cluster.to_vec();
            argv.extend_from_slice(extra);
            args(&argv).unwrap().validate().map(|c| c.raft_timing)
        };
        assert_eq!(
            timing(&["--heartbeat-interval", "100", "--election-timeout", "1000"]).unwrap(),
            RaftTiming {
                heartbeat_interval_ms: 100,
                election_timeout_ms: 1000
            }
        );
        assert!(matches!(
            timing(&["--heartbeat-interval", "5"]),
            Err(ConfigError::HeartbeatTooShort(5))
        ));
        assert!(matches!(
            timing(&["--heartbeat-interval", "100", "--election-timeout", "250"]),
            Err(ConfigError::ElectionTooShort { .. })
        ));
        assert!(matches!(
            timing(&["--election-timeout", "1500"]),
            Err(ConfigError::ElectionTooLong(1500))
        ));
    }
}
