//! Raft: openraft's type configuration and the adapters that connect it to
//! the rest of taskd.
//!
//! - [`log_store`]: `RaftLogStorage` over the `raft_log` / `raft_state` tables.
//! - [`log_writer`]: group commit of log appends (one transaction per queue drain).
//! - [`state_machine`]: `RaftStateMachine`: one database transaction per batch.
//! - [`network`]: `RaftNetwork` over the internal gRPC `RaftService`.
//! - [`codec`]: how openraft values become bytes (log rows, RPC payloads).
//! - [`retry`]: bounded retries of database calls that failed transiently.

#![allow(clippy::result_large_err)] // openraft fixes the storage error type; it is large

pub mod codec;
pub mod log_store;
pub mod log_writer;
pub mod network;
pub mod retry;
pub mod state_machine;

use std::io::Cursor;
use std::time::Duration;

use openraft::BasicNode;

use crate::domain::{Command, CommandResult};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// taskd's openraft types: commands in, command results out.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
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
}

impl Default for SnapshotTuning {
    fn default() -> Self {
        Self {
            every: 10_000,
            keep_logs: 1_000,
        }
    }
}

/// Timing of the Raft group. Elections take 1.5 to 3 s without a heartbeat:
/// well above a loaded machine's scheduling hiccups (no needless leader
/// changes), well below what a client's retry budget tolerates.
pub fn raft_config(
    cluster_name: &str,
    snapshots: SnapshotTuning,
) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: cluster_name.to_string(),
        heartbeat_interval: 250,
        election_timeout_min: 1500,
        election_timeout_max: 3000,
        // Bounded batches: one append / apply transaction carries at most this many entries.
        max_payload_entries: 512,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshots.every),
        max_in_snapshot_log_to_keep: snapshots.keep_logs,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    }
    .validate()
}

/// How long a client call waits for a leader or a quorum before UNAVAILABLE.
pub const QUORUM_WAIT: Duration = Duration::from_secs(5);
