//! Raft: openraft's type configuration and the adapters that connect it to
//! the rest of taskd.
//!
//! - [`log_store`]: `RaftLogStorage` over the `raft_log` / `raft_state` tables.
//! - [`log_tail`]: the newest log entries in memory, so replication and apply skip the database.
//! - [`log_writer`]: group commit of log appends (one transaction per queue drain).
//! - [`state_machine`]: `RaftStateMachine`: one database transaction per batch.
//! - [`proposer`]: the leader's writes, batched into entries (one in flight).
//! - [`read_index`]: read indexes for linearizable reads on every node, shared rounds.
//! - [`recover`]: `taskd recover --force-new-cluster`, when a majority is lost for good.
//! - [`network`]: `RaftNetwork` over the internal gRPC `RaftService`.
//! - [`batcher`]: single-flight batching (the proposer, shared read-index rounds).
//! - [`codec`]: how openraft values become bytes (log rows, RPC payloads), format versions.
//! - [`gauges`]: openraft's metrics and the pool's state as taskd's gauges.
//! - [`retry`]: bounded retries of database calls that failed transiently.
//! - [`snapshot_files`]: the snapshot directory: scratch files and the current snapshot's copy.

#![allow(clippy::result_large_err)] // openraft fixes the storage error type; it is large

pub mod batcher;
pub mod codec;
pub mod gauges;
pub mod log_store;
pub mod log_tail;
pub mod log_writer;
pub mod network;
pub mod proposer;
pub mod read_index;
pub mod recover;
pub mod retry;
pub mod snapshot_files;
pub mod state_machine;

use std::time::Duration;

use openraft::BasicNode;

use crate::domain::{BatchResults, WriteBatch};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// taskd's openraft types: a batch of commands in, their results out.
    pub TypeConfig:
        D = WriteBatch,
        R = BatchResults,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        // A file in the node's snapshot directory (`state_machine`): never
        // a whole snapshot in memory.
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;

/// When a node compacts its log into a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotTuning {
    /// Build a snapshot after this many entries since the last one.
    pub every: u64,
    /// Entries kept in the log behind a snapshot, so that a follower a little
    /// behind catches up from the log instead of a whole snapshot.
    pub keep_logs: u64,
    /// The largest snapshot this node accepts from a peer (bytes): an
    /// `InstallSnapshot` chunk reaching past it is refused before anything
    /// is allocated for it.
    pub max_bytes: u64,
}

impl Default for SnapshotTuning {
    fn default() -> Self {
        Self {
            every: 10_000,
            keep_logs: 1_000,
            max_bytes: 1 << 30,
        }
    }
}

/// How fast the Raft group notices a dead leader.
///
/// openraft 0.9 makes a follower that saw a committed leader wait
/// `leader_lease` (= the election timeout's maximum) plus its own random
/// election timeout before it stands, and refuse votes inside the lease. With
/// the election timeout drawn from `[election_timeout, 2 × election_timeout)`
/// the failover after a leader's crash costs 3 to 4 election timeouts (plus
/// up to 1.5 heartbeats of timer granularity): 0.6 to 0.9 s with the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// How often the leader tells its followers it is alive (ms).
    pub heartbeat_interval_ms: u64,
    /// The least time without a heartbeat after which a follower may stand (ms).
    pub election_timeout_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 50,
            election_timeout_ms: 200,
        }
    }
}

impl RaftTiming {
    /// The longest election, from the last heartbeat of a dead leader to a
    /// new leader: lease + the largest random timeout + a timer tick.
    pub fn worst_failover(&self) -> Duration {
        Duration::from_millis(4 * self.election_timeout_ms + 2 * self.heartbeat_interval_ms)
    }
}

/// The Raft group's openraft configuration.
pub fn raft_config(
    cluster_name: &str,
    snapshots: SnapshotTuning,
    timing: RaftTiming,
) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: cluster_name.to_string(),
        heartbeat_interval: timing.heartbeat_interval_ms,
        election_timeout_min: timing.election_timeout_ms,
        election_timeout_max: 2 * timing.election_timeout_ms,
        // One append / AppendEntries carries at most this many entries, each a
        // batch of writes of at most 1 MiB (`proposer::LIMITS`).
        max_payload_entries: 32,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshots.every),
        max_in_snapshot_log_to_keep: snapshots.keep_logs,
        // Per InstallSnapshot call. The reply to the last chunk waits until
        // the receiver has installed the whole snapshot (one import
        // transaction: measured ~10-20 s for 100k tasks in a debug build on
        // SQLite); a reply that times out makes the leader send it all again.
        install_snapshot_timeout: 60_000,
        // One chunk per InstallSnapshot call, far below tonic's 4 MiB message limit.
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..Default::default()
    }
    .validate()
}

/// Bytes of snapshot data per `InstallSnapshot` call.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

/// How long a client call waits for a leader or a quorum before UNAVAILABLE.
pub const QUORUM_WAIT: Duration = Duration::from_secs(5);
