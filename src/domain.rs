//! The task model shared by every layer: what a task is, the commands that
//! change tasks (the Raft log's application payload), and their outcomes.
//!
//! No prost, sqlx or openraft types here: `api::convert` maps proto to these,
//! `store` maps these to rows. Times are microseconds since the Unix epoch.

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// How long a `CreateTask.request_id` is remembered, measured in the proposer
/// times carried by commands (never a node's clock at apply).
pub const REQUEST_ID_TTL_MICROS: Micros = 24 * 60 * 60 * 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(i32)]
pub enum TaskStatus {
    Todo = 1,
    InProgress = 2,
    Done = 3,
    Cancelled = 4,
}

impl TaskStatus {
    pub fn from_i32(value: i32) -> Option<Self> {
        match value {
            1 => Some(Self::Todo),
            2 => Some(Self::InProgress),
            3 => Some(Self::Done),
            4 => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// Priority 0 means "unspecified" and is kept as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(i32)]
pub enum TaskPriority {
    Unspecified = 0,
    Low = 1,
    Medium = 2,
    High = 3,
    Urgent = 4,
}

impl TaskPriority {
    pub fn from_i32(value: i32) -> Option<Self> {
        match value {
            0 => Some(Self::Unspecified),
            1 => Some(Self::Low),
            2 => Some(Self::Medium),
            3 => Some(Self::High),
            4 => Some(Self::Urgent),
            _ => None,
        }
    }
}

/// A task as stored and as returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub priority: TaskPriority,
    pub deadline: Option<Micros>,
    pub assignee: String,
    pub labels: Vec<String>,
    pub create_time: Micros,
    pub update_time: Micros,
    pub version: u64,
}

/// The user-writable fields of a new task, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub priority: TaskPriority,
    pub deadline: Option<Micros>,
    pub assignee: String,
    pub labels: Vec<String>,
}

/// The fields an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<TaskStatus>,
    pub priority: Option<TaskPriority>,
    /// `Some(None)` clears the deadline.
    #[serde(with = "double_option")]
    pub deadline: Option<Option<Micros>>,
    pub assignee: Option<String>,
    pub labels: Option<Vec<String>>,
}

impl TaskPatch {
    /// Applies the patch to `task` in place (no version or time change).
    pub fn apply_to(&self, task: &mut Task) {
        if let Some(v) = &self.title {
            task.title.clone_from(v);
        }
        if let Some(v) = &self.description {
            task.description.clone_from(v);
        }
        if let Some(v) = self.status {
            task.status = v;
        }
        if let Some(v) = self.priority {
            task.priority = v;
        }
        if let Some(v) = self.deadline {
            task.deadline = v;
        }
        if let Some(v) = &self.assignee {
            task.assignee.clone_from(v);
        }
        if let Some(v) = &self.labels {
            task.labels.clone_from(v);
        }
    }
}

/// Serde for `Option<Option<T>>` that keeps "clear" (`Some(None)`) apart
/// from "leave" (`None`): plain serde folds both into nil in MessagePack.
/// `Some(x)` travels as the one-element array `[x]`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().map(|inner| (inner,)).serialize(serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Ok(Option::<(Option<T>,)>::deserialize(deserializer)?.map(|(inner,)| inner))
    }
}

/// A change to the task table: the application payload of a Raft log entry.
///
/// Everything that is not a pure function of the current state (the new id,
/// the time) is chosen by the proposer and carried here, so that applying a
/// command gives the same result on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateTask {
        id: String,
        /// The client's idempotency key; `None` when it sent none.
        request_id: Option<String>,
        now: Micros,
        task: NewTask,
    },
    UpdateTask {
        id: String,
        /// 0 = unconditional.
        expected_version: u64,
        now: Micros,
        patch: TaskPatch,
        /// The client's idempotency key: a retry gets the first result.
        #[serde(default)]
        request_id: Option<String>,
    },
    DeleteTask {
        id: String,
        /// 0 = unconditional.
        expected_version: u64,
        now: Micros,
        #[serde(default)]
        request_id: Option<String>,
    },
}

/// The application payload of one Raft log entry: the writes the leader's
/// proposer collected while its previous proposal was in flight.
///
/// An entry applies atomically (all its writes or none), in order, each
/// write seeing the ones before it. Each write keeps its own position, the
/// pair (entry index, offset in `writes`), which numbers it cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    pub writes: Vec<Command>,
}

/// The results of one entry's writes, one per write, in order (empty for a
/// blank or membership entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResults {
    pub results: Vec<CommandResult>,
}

impl Command {
    /// The client's idempotency key, if it sent one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Command::CreateTask { request_id, .. }
            | Command::UpdateTask { request_id, .. }
            | Command::DeleteTask { request_id, .. } => request_id.as_deref(),
        }
    }

    /// What the client asked for, hashed: everything but what the proposer
    /// chose (the new id, the time). Two calls with one request_id must
    /// match here, else the key was reused for a different request. A pure
    /// function of the command, so every node computes the same bytes.
    pub fn fingerprint(&self) -> Vec<u8> {
        use sha2::Digest;
        #[derive(Serialize)]
        enum Asked<'a> {
            Create(&'a NewTask),
            Update(&'a str, u64, &'a TaskPatch),
            Delete(&'a str, u64),
        }
        let asked = match self {
            Command::CreateTask { task, .. } => Asked::Create(task),
            Command::UpdateTask {
                id,
                expected_version,
                patch,
                ..
            } => Asked::Update(id, *expected_version, patch),
            Command::DeleteTask {
                id,
                expected_version,
                ..
            } => Asked::Delete(id, *expected_version),
        };
        // Serializing plain data to a Vec cannot fail.
        let bytes = rmp_serde::to_vec(&asked).unwrap_or_default();
        sha2::Sha256::digest(bytes).to_vec()
    }

    /// Roughly how many bytes the command takes in a log entry: what the
    /// proposer counts against a batch's byte bound.
    pub fn weight(&self) -> usize {
        const FIXED: usize = 64;
        let labels = |labels: &[String]| labels.iter().map(|l| l.len() + 2).sum::<usize>();
        FIXED
            + match self {
                Command::CreateTask {
                    id,
                    request_id,
                    task,
                    ..
                } => {
                    id.len()
                        + request_id.as_ref().map_or(0, String::len)
                        + task.title.len()
                        + task.description.len()
                        + task.assignee.len()
                        + labels(&task.labels)
                }
                Command::UpdateTask {
                    id,
                    patch,
                    request_id,
                    ..
                } => {
                    id.len()
                        + request_id.as_ref().map_or(0, String::len)
                        + patch.title.as_ref().map_or(0, String::len)
                        + patch.description.as_ref().map_or(0, String::len)
                        + patch.assignee.as_ref().map_or(0, String::len)
                        + patch.labels.as_deref().map_or(0, labels)
                }
                Command::DeleteTask { id, request_id, .. } => {
                    id.len() + request_id.as_ref().map_or(0, String::len)
                }
            }
    }
}

/// Why a command changed nothing. Decided at apply, identical on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    NotFound {
        id: String,
    },
    VersionMismatch {
        id: String,
        expected: u64,
        current: u64,
    },
    /// The request_id was seen before, but the task it created is gone.
    RequestIdTaskDeleted {
        request_id: String,
        id: String,
    },
    /// The request_id was first used for a different request.
    RequestIdReused {
        request_id: String,
    },
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// A blank or membership entry: nothing for a client.
    None,
    /// The task as it is after the command.
    Task(Task),
    Deleted {
        id: String,
    },
    Rejected(Rejection),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log entries are MessagePack: every patch must survive the trip,
    /// including "clear the deadline" versus "leave it".
    #[test]
    fn patch_round_trips_through_messagepack() {
        for deadline in [None, Some(None), Some(Some(42))] {
            let patch = TaskPatch {
                deadline,
                ..TaskPatch::default()
            };
            let bytes = rmp_serde::to_vec_named(&patch).unwrap();
            let back: TaskPatch = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, patch);
        }
    }
}
