//! Durable storage of one node: the Raft log and vote, the state machine
//! (tasks, request ids, `last_applied`) and the latest snapshot, in one SQL
//! database (MySQL/MariaDB or SQLite).
//!
//! The store knows nothing of openraft: vote, log ids and membership arrive as
//! opaque byte blobs. SQL is written once for both backends wherever the
//! dialects agree (`?` placeholders, `REPLACE INTO`, multi-row `VALUES`); the
//! `on_pool!` macro expands the same body once per backend.
//!
//! Layout:
//! - `pool`: connecting, the backend-neutral bind/exec helpers
//! - `log`: `raft_state`, `raft_log` and the snapshot row
//! - `rows`: task rows <-> [`Task`], multi-row write statements
//! - `tasks`: reads of tasks (`get_task`, `list_tasks`)
//! - `apply`: [`Store::apply_batch`], the state machine's one write path
//! - `snapshot`: `sm_meta`, [`Store::write_snapshot`] / [`Store::import_snapshot`]
//! - [`snapshot_file`]: the versioned snapshot (and backup) file format
//! - `snapshot_data`: the stored snapshot, written chunk by chunk
//! - `recover`: forgetting the Raft group (`taskd recover --force-new-cluster`)
//!
//! Request-id expiry: a request id is live for a command whose running
//! maximum `now` (over the batch so far) is at most `create_time +
//! REQUEST_ID_TTL_MICROS`; expired ids are deleted at the end of each batch.
//! With proposer clocks that never go back by more than the TTL, the outcome
//! does not depend on how entries are cut into batches.

#[macro_use]
mod pool;
mod apply;
mod error;
mod log;
mod recover;
mod rows;
mod snapshot;
mod snapshot_data;
pub mod snapshot_file;
mod tasks;
#[cfg(test)]
pub(crate) mod testutil;

use serde::{Deserialize, Serialize};

use crate::domain::{CommandResult, Micros, Task, TaskStatus};

pub use error::StoreError;
pub use pool::{PoolConnections, StoreOptions};
pub use snapshot::{ImportOptions, EXPORT_PAGE_ROWS, IMPORT_BATCH_BYTES, IMPORT_BATCH_ROWS};
pub use snapshot_file::{SnapshotFileError, SnapshotSummary};

/// Which SQL database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Mysql,
    Sqlite,
}

/// A node's database. Cheap to clone (pools inside).
#[derive(Clone)]
pub struct Store {
    pools: pool::Pools,
    /// A snapshot is being received, and its import will purge the log it
    /// covers (see `raft::log_store`); cleared when an import commits.
    import_pending: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One Raft log entry as stored: the payload is the serialized entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

/// The state machine's own metadata, opaque to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmMeta {
    pub last_applied: Option<Vec<u8>>,
    pub membership: Option<Vec<u8>>,
}

/// The sort order of [`Store::list_tasks`]; ties are broken by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    CreateTime,
    /// Tasks without a deadline come last.
    Deadline,
}

/// Keyset position: the sort key of the last task returned (create_time, or
/// the deadline with "no deadline" = `i64::MAX`) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub key: i64,
    pub id: String,
}

/// A filtered, ordered page of tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<TaskStatus>,
    pub assignee: Option<String>,
    pub label: Option<String>,
    /// deadline < x (tasks without deadline excluded)
    pub deadline_before: Option<Micros>,
    /// deadline > x (tasks without deadline excluded)
    pub deadline_after: Option<Micros>,
    pub order: ListOrder,
    /// Resume strictly after this position.
    pub after: Option<Cursor>,
    pub limit: u32,
}

impl ListQuery {
    /// The cursor that resumes after `task` in this order.
    pub fn cursor_of(&self, task: &Task) -> Cursor {
        let key = match self.order {
            ListOrder::CreateTime => task.create_time,
            ListOrder::Deadline => rows::deadline_key(task.deadline),
        };
        Cursor {
            key,
            id: task.id.clone(),
        }
    }
}

/// A consistent copy of the state machine tables, whole in memory; also
/// the snapshot format of releases before snapshot format 1
/// ([`snapshot_file::legacy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDump {
    pub meta: SmMeta,
    pub tasks: Vec<Task>,
    pub request_ids: Vec<RequestIdRow>,
}

/// A remembered request_id: the task its write named (for a create, the
/// task it created), when it was first seen, what was asked, and, for an
/// update or delete, the first result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestIdRow {
    pub request_id: String,
    pub task_id: String,
    pub create_time: Micros,
    /// [`crate::domain::Command::fingerprint`] of the first request.
    #[serde(default)]
    pub fingerprint: Vec<u8>,
    /// `None` for a create: its retry returns the task as it is now.
    #[serde(default)]
    pub result: Option<CommandResult>,
}
