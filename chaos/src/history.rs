//! The history: every operation a client ran, as it saw it, with times on
//! one monotonic clock (microseconds since the run started). Written out as
//! `history.jsonl`, and the input of every check.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use tonic::Code;

/// What kind of call an operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// GetTask, default (linearizable) consistency, on a register task.
    Read,
    /// UpdateTask of the title, unconditional.
    Write,
    /// UpdateTask of the title with `expected_version`.
    Cas,
    /// CreateTask of the set workload (with a request_id).
    Create,
    /// GetTask with STALE consistency, on one named node.
    StaleRead,
}

/// How an operation ended, as far as the client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Definitely did not take effect (a CAS rejected for its version
    /// counts here, and is still a known outcome for the checker).
    Fail,
    /// May have taken effect, at any time after it was invoked, or never.
    Unknown,
}

/// A register's value and version, as an operation saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub value: String,
    pub version: u64,
}

/// One operation.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    pub process: usize,
    pub kind: Kind,
    /// The slot the call went to (1-based): a namespace and its address.
    pub node: usize,
    /// The id of the node that ran in that slot when the call was made (the
    /// membership nemesis puts new nodes, with new ids, into old slots).
    pub node_id: u64,
    /// The task: a register's id, or the id a create was acknowledged with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The unique value a write carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub invoked_us: u64,
    pub completed_us: u64,
    pub status: Status,
    /// A CAS that found another version.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rejected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Collects the operations of every worker.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Microseconds since the run started.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// Every operation so far, in the order they completed.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How a failed call ended for a write: definitely not applied, or maybe.
///
/// Only answers that the server gives after deciding (bad input, missing,
/// version mismatch) say "not applied". Everything else — deadlines,
/// connections lost, UNKNOWN, and UNAVAILABLE too, since a node that
/// proposed a write and then lost its leader may answer it — is unknown:
/// treating a maybe as a no would make the checks report false violations.
pub fn write_error_status(status: &tonic::Status) -> Status {
    if never_sent(status) {
        return Status::Fail;
    }
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::PermissionDenied
        | Code::Unauthenticated => Status::Fail,
        _ => Status::Unknown,
    }
}

/// Whether the call failed to connect, so that no request left the client:
/// decided from the error's type (a refused connection in its source
/// chain), never from its text.
pub fn never_sent(status: &tonic::Status) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        next = error.source();
    }
    false
}

/// Whether an error was a CAS rejected for its version.
pub fn is_version_mismatch(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::Aborted | Code::FailedPrecondition)
}

/// A short form of an error for the history and the report.
pub fn describe(status: &tonic::Status) -> String {
    let message: String = status.message().chars().take(120).collect();
    format!("{:?}: {message}", status.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decided_answers_count_as_not_applied() {
        let s = |c| write_error_status(&tonic::Status::new(c, "x"));
        assert_eq!(s(Code::Aborted), Status::Fail);
        assert_eq!(s(Code::InvalidArgument), Status::Fail);
        assert_eq!(s(Code::Unavailable), Status::Unknown);
        assert_eq!(s(Code::DeadlineExceeded), Status::Unknown);
        assert_eq!(s(Code::Unknown), Status::Unknown);
        assert_eq!(s(Code::Internal), Status::Unknown);
    }

    /// A real refused connection (nothing listens on the port) is "never
    /// sent", hence not applied; the plain UNAVAILABLE a server sends is not.
    #[tokio::test]
    async fn a_refused_connection_was_never_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_lazy();
        let mut client = taskd_client::pb::task_service_client::TaskServiceClient::new(channel);
        let e = client
            .get_task(taskd_client::pb::GetTaskRequest::default())
            .await
            .unwrap_err();
        assert!(never_sent(&e), "{e:?}");
        assert_eq!(write_error_status(&e), Status::Fail);
        assert!(!never_sent(&tonic::Status::unavailable("no leader")));
    }
}
