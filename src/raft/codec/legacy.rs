//! Untagged log entries, as the releases before format tags wrote them.
//!
//! Three shapes, told apart by the normal payload:
//! - the core release (`a31fde7`): `{"Normal": {"CreateTask": {…}}}`, one
//!   command per entry, and a patch's deadline in plain serde (`Some(Some(x))`
//!   as the bare number `x`, `Some(None)` and `None` both as nil);
//! - `50dfa55`: still one command, the deadline as `[x]` / `[nil]` / nil;
//! - the performance release (`41c4cb8`) and later: `{"Normal": {"writes": […]}}`.
//!
//! A batch never decodes as a command nor a command as a batch (a command is
//! an enum keyed by its variant, a batch needs its `writes` field), so trying
//! the batch first and the single command second never misreads.

use std::io::Cursor;

use openraft::{BasicNode, EntryPayload};
use serde::{Deserialize, Serialize};

use super::CodecError;
use crate::domain::{
    BatchResults, Command, Micros, NewTask, TaskPatch, TaskPriority, TaskStatus, WriteBatch,
};
use crate::raft::{Entry, NodeId};

openraft::declare_raft_types!(
    /// The core release's types: one command per entry. Only for decoding.
    pub(super) PreBatching:
        D = SingleCommand,
        R = BatchResults,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<PreBatching>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// `Command` as the releases before batching wrote it: no request_id on
/// updates and deletes (later ones take a missing one as `None` anyway).
#[allow(clippy::enum_variant_names)] // the names are the stored format
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum SingleCommand {
    CreateTask {
        id: String,
        request_id: Option<String>,
        now: Micros,
        task: NewTask,
    },
    UpdateTask {
        id: String,
        expected_version: u64,
        now: Micros,
        patch: SinglePatch,
    },
    DeleteTask {
        id: String,
        expected_version: u64,
        now: Micros,
    },
}

/// `TaskPatch` with a deadline of either pre-batching encoding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SinglePatch {
    title: Option<String>,
    description: Option<String>,
    status: Option<TaskStatus>,
    priority: Option<TaskPriority>,
    deadline: Option<Deadline>,
    assignee: Option<String>,
    labels: Option<Vec<String>>,
}

/// A set deadline: `[x]` / `[nil]` (`50dfa55`) or the bare `x` (`a31fde7`,
/// whose nil meant both "leave" and "clear": its nodes applied it as "leave",
/// and so does this).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Deadline {
    Wrapped((Option<Micros>,)),
    Bare(Micros),
}

impl From<SingleCommand> for Command {
    fn from(old: SingleCommand) -> Self {
        match old {
            SingleCommand::CreateTask {
                id,
                request_id,
                now,
                task,
            } => Command::CreateTask {
                id,
                request_id,
                now,
                task,
            },
            SingleCommand::UpdateTask {
                id,
                expected_version,
                now,
                patch,
            } => Command::UpdateTask {
                id,
                expected_version,
                now,
                patch: TaskPatch {
                    title: patch.title,
                    description: patch.description,
                    status: patch.status,
                    priority: patch.priority,
                    deadline: patch.deadline.map(|d| match d {
                        Deadline::Wrapped((inner,)) => inner,
                        Deadline::Bare(x) => Some(x),
                    }),
                    assignee: patch.assignee,
                    labels: patch.labels,
                },
                request_id: None,
            },
            SingleCommand::DeleteTask {
                id,
                expected_version,
                now,
            } => Command::DeleteTask {
                id,
                expected_version,
                now,
                request_id: None,
            },
        }
    }
}

/// Decodes an untagged entry of any of the shapes.
pub(super) fn decode_entry(body: &[u8]) -> Result<Entry, CodecError> {
    let batched = match rmp_serde::from_slice::<Entry>(body) {
        Ok(entry) => return Ok(entry),
        Err(e) => e,
    };
    match rmp_serde::from_slice::<openraft::Entry<PreBatching>>(body) {
        Ok(old) => Ok(Entry {
            log_id: old.log_id,
            payload: match old.payload {
                EntryPayload::Blank => EntryPayload::Blank,
                EntryPayload::Normal(command) => EntryPayload::Normal(WriteBatch {
                    writes: vec![command.into()],
                }),
                EntryPayload::Membership(m) => EntryPayload::Membership(m),
            },
        }),
        // Neither shape: the batched shape's error is the one to report.
        Err(_) => Err(batched.into()),
    }
}
