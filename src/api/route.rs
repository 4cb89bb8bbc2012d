//! Where a call is served: writes and linearizable reads need the leader.
//!
//! A node that is not the leader forwards the whole call to the leader over
//! the public API (the client never sees "not leader"). A forwarded call is
//! marked with a hop count so that a call chasing a moving leader gives up
//! with UNAVAILABLE instead of looping. Every wait is bounded by the
//! client's `grpc-timeout`, or by [`QUORUM_WAIT`] when it sent none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::{BasicNode, RaftMetrics};
use tokio::time::Instant;

use super::error::ApiError;
use crate::cluster::Cluster;
use crate::domain::{Command, CommandResult, Micros};
use crate::proto::task_service_client::TaskServiceClient;
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::raft::proposer::{ProposeError, Proposer};
use crate::raft::read_index::{Asker, ReadIndex, ReadIndexError};
use crate::raft::{NodeId, Raft, QUORUM_WAIT};
use crate::security::peer::{Dialer, PeerChannel};
use crate::store::Store;

/// Metadata key counting how often a call has been forwarded.
pub const FORWARDED_HEADER: &str = "x-taskd-forwarded";
/// A call forwarded this many times gives up: leadership is moving.
pub const MAX_HOPS: u32 = 3;
/// How soon a follower asks a leader again for a read index it failed to give.
const READ_INDEX_RETRY: Duration = Duration::from_millis(50);

/// What every handler needs of its node.
#[derive(Clone)]
pub struct NodeContext {
    pub id: NodeId,
    pub raft: Raft,
    pub store: Store,
    /// The leader's write batching; idle while this node follows.
    proposer: Proposer,
    /// Shared read-index rounds (also answers peers' `ReadIndex`).
    read_index: ReadIndex,
    leaders: Arc<Mutex<HashMap<String, TaskServiceClient<PeerChannel>>>>,
    /// How this node reaches the leader (TLS, cluster credentials).
    dialer: Dialer,
    /// Whether this node is still a member.
    cluster: Cluster,
}

/// One incoming call's routing state: how far it travelled, how long it may take.
pub struct Call {
    hops: u32,
    deadline: Instant,
    /// Whether `deadline` is the client's (DEADLINE_EXCEEDED) or ours (UNAVAILABLE).
    client_deadline: bool,
    /// The caller's `authorization`: a forwarded call keeps its caller's identity.
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

/// A call that this node cannot serve: send it to the leader with this client.
pub struct Forward {
    pub client: TaskServiceClient<PeerChannel>,
    leader: NodeId,
    hops: u32,
    deadline: Instant,
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

impl Forward {
    /// Wraps `message` for the leader: hop count, and the remaining deadline.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert(FORWARDED_HEADER, (self.hops + 1).into());
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        request.set_timeout(self.deadline.saturating_duration_since(Instant::now()));
        request
    }
}

/// The outcome of routing a call.
pub enum Routed<T> {
    Here(T),
    Leader(Box<Forward>),
}

/// How often a call was forwarded already, and the deadline its client set.
pub(crate) fn hops_and_timeout<T>(request: &tonic::Request<T>) -> (u32, Option<Duration>) {
    let metadata = request.metadata();
    let hops = metadata
        .get(FORWARDED_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let client_timeout = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    (hops, client_timeout)
}

impl Call {
    pub fn new<T>(request: &tonic::Request<T>) -> Self {
        let (hops, client_timeout) = hops_and_timeout(request);
        let (budget, client_deadline) = match client_timeout {
            // A little before the client's deadline: our DEADLINE_EXCEEDED
            // beats tonic's own timeout, which answers CANCELLED.
            Some(t) if t <= QUORUM_WAIT => (t - t / 20, true),
            _ => (QUORUM_WAIT, false),
        };
        Self {
            hops,
            deadline: Instant::now() + budget,
            client_deadline,
            authorization: request.metadata().get("authorization").cloned(),
        }
    }

    fn timed_out(&self, what: &str) -> ApiError {
        if self.client_deadline {
            ApiError::DeadlineExceeded(format!("deadline exceeded while {what}"))
        } else {
            ApiError::Unavailable(format!(
                "{what} took longer than {}s: no leader or no quorum (is a majority of nodes up?)",
                QUORUM_WAIT.as_secs()
            ))
        }
    }

    /// A proposed or forwarded write whose outcome is unknown: it may still
    /// apply. `why` says what happened.
    fn outcome_unknown(&self, why: &str) -> ApiError {
        ApiError::OutcomeUnknown {
            message: format!(
                "{why}; the write may have been applied (retrying with the same request_id is safe)"
            ),
            client_deadline: self.client_deadline,
        }
    }

    /// A proposed write that did not commit within the call's budget.
    fn commit_timed_out(&self) -> ApiError {
        if self.client_deadline {
            self.outcome_unknown("deadline exceeded while committing the write")
        } else {
            self.outcome_unknown(&format!(
                "the write did not commit within {}s: no quorum (is a majority of nodes up?)",
                QUORUM_WAIT.as_secs()
            ))
        }
    }
}

/// Parses gRPC's `grpc-timeout` header: up to 8 digits and a unit.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The proposer's clock, in microseconds: the only clock commands see.
pub fn now_micros() -> Micros {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

enum Leader {
    Me,
    Other(NodeId, String),
}

impl NodeContext {
    pub fn new(
        id: NodeId,
        raft: Raft,
        store: Store,
        proposer: Proposer,
        read_index: ReadIndex,
        cluster: Cluster,
        dialer: Dialer,
    ) -> Self {
        Self {
            dialer,
            id,
            cluster,
            proposer,
            read_index,
            raft,
            store,
            leaders: Arc::default(),
        }
    }

    /// Waits, within the call's budget, until `ready` finds what it looks
    /// for in this node's Raft metrics; `what` names the wait in the error.
    async fn wait_for<T>(
        &self,
        call: &Call,
        what: &str,
        ready: impl Fn(&RaftMetrics<NodeId, BasicNode>) -> Option<T>,
    ) -> Result<T, ApiError> {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(found) = ready(&metrics.borrow_and_update()) {
                return Ok(found);
            }
            match tokio::time::timeout_at(call.deadline, metrics.changed()).await {
                Err(_) => return Err(call.timed_out(what)),
                Ok(Err(_)) => {
                    return Err(ApiError::Unavailable("this node is shutting down".into()))
                }
                Ok(Ok(())) => {}
            }
        }
    }

    /// Waits, within the call's budget, until some node is known as leader.
    /// UNAVAILABLE at once, saying why, on a node that was removed.
    pub fn ensure_member(&self) -> Result<(), ApiError> {
        let removed = self.cluster.removed(&self.raft.metrics().borrow());
        match removed {
            Some(why) => Err(ApiError::Unavailable(format!("{why}; ask another node"))),
            None => Ok(()),
        }
    }

    async fn leader(&self, call: &Call) -> Result<Leader, ApiError> {
        self.ensure_member()?;
        self.wait_for(call, "waiting for a leader", |m| {
            let leader = m.current_leader?;
            if leader == self.id {
                return Some(Leader::Me);
            }
            let node = m.membership_config.membership().get_node(&leader)?;
            Some(Leader::Other(leader, node.addr.clone()))
        })
        .await
    }

    fn forward(&self, call: &Call, leader: NodeId, addr: &str) -> Result<Forward, ApiError> {
        if call.hops >= MAX_HOPS {
            return Err(ApiError::Unavailable(format!(
                "leadership is changing (forwarded {} times, last to node {leader}); retry",
                call.hops
            )));
        }
        let client = {
            let mut leaders = self.leaders.lock().unwrap_or_else(|e| e.into_inner());
            match leaders.get(addr) {
                Some(client) => client.clone(),
                None => {
                    let ch = self
                        .dialer
                        .channel(addr)
                        .map_err(|e| ApiError::internal("leader address", e))?;
                    let client = TaskServiceClient::new(ch)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES);
                    leaders.insert(addr.to_string(), client.clone());
                    client
                }
            }
        };
        Ok(Forward {
            client,
            leader,
            hops: call.hops,
            deadline: call.deadline,
            authorization: call.authorization.clone(),
        })
    }

    /// The leader's answer to a forwarded call, or `None` when the call
    /// never reached it (the connection could not be made, so nothing was
    /// sent and nothing can have been applied): then this waits, within the
    /// call's budget, until another node leads, and the caller routes again.
    /// A failure after the call was sent is an unknown outcome: the write may
    /// have been applied, so it is never resent here (the client may resend
    /// it with its request_id).
    pub async fn forwarded<T>(
        &self,
        call: &Call,
        to: &Forward,
        sent: Result<T, tonic::Status>,
    ) -> Result<Option<T>, tonic::Status> {
        match sent {
            Ok(reply) => Ok(Some(reply)),
            Err(status) if never_sent(&status) => {
                tracing::info!(leader = to.leader, error = %status.message(), "leader unreachable; waiting for another");
                let moved = |m: &RaftMetrics<NodeId, BasicNode>| {
                    (m.current_leader != Some(to.leader)).then_some(())
                };
                self.wait_for(call, "waiting for a reachable leader", moved)
                    .await?;
                Ok(None)
            }
            // No answer from the leader (the connection broke, or our
            // deadline for it passed) after the call went out: it may apply.
            Err(status) if std::error::Error::source(&status).is_some() => {
                tracing::info!(leader = to.leader, error = %status, "forwarded write lost its answer");
                Err(call
                    .outcome_unknown(&format!("the leader (node {}) did not answer", to.leader))
                    .into())
            }
            // The leader's own answer, details and all.
            Err(status) => Err(status),
        }
    }

    /// Raft said this node does not lead although its metrics said it did:
    /// waits, within the call's budget, until the metrics catch up (so that
    /// routing again is not a busy loop).
    async fn leadership_lost(&self, call: &Call) -> Result<(), ApiError> {
        let not_me =
            |m: &RaftMetrics<NodeId, BasicNode>| (m.current_leader != Some(self.id)).then_some(());
        self.wait_for(call, "waiting for a leader", not_me).await
    }

    /// Proposes the command built by `command` on the leader (batched with
    /// the writes that arrive meanwhile), or says where the leader is. The
    /// command is built only here, on the leader, so ids and times come
    /// from the proposer.
    pub async fn write(
        &self,
        call: &Call,
        command: impl Fn() -> Command,
    ) -> Result<Routed<CommandResult>, ApiError> {
        loop {
            let (id, addr) = match self.leader(call).await? {
                Leader::Other(id, addr) => (id, addr),
                Leader::Me => {
                    let write = self.proposer.propose(command());
                    match tokio::time::timeout_at(call.deadline, write).await {
                        Err(_) | Ok(Err(ProposeError::NoQuorum)) => {
                            return Err(call.commit_timed_out())
                        }
                        Ok(Ok(result)) => return Ok(Routed::Here(result)),
                        Ok(Err(ProposeError::NotLeader(Some((id, addr))))) => (id, addr),
                        // Leadership just moved and nobody knows where: wait.
                        Ok(Err(ProposeError::NotLeader(None))) => {
                            self.leadership_lost(call).await?;
                            continue;
                        }
                        Ok(Err(ProposeError::Stopped(why))) => {
                            // The detail may be storage text: log it, never answer it.
                            tracing::warn!(node = self.id, error = %why, "write failed: raft stopped");
                            return Err(call.outcome_unknown(
                                "this node's Raft stopped while proposing the write",
                            ));
                        }
                        Ok(Err(e @ ProposeError::Internal(_))) => {
                            return Err(ApiError::internal("propose", e))
                        }
                    }
                }
            };
            return Ok(Routed::Leader(Box::new(self.forward(call, id, &addr)?)));
        }
    }

    /// Makes a following read of this node's database linearizable: gets a
    /// read index (the leader's, confirmed with a quorum; rounds are shared)
    /// and waits until this node has applied that far. Leader or follower,
    /// the read is then served here.
    pub async fn linearize(&self, call: &Call) -> Result<(), ApiError> {
        loop {
            let asked = self.read_index.read_index(Asker::Local);
            let index = match tokio::time::timeout_at(call.deadline, asked).await {
                Err(_) => return Err(call.timed_out("confirming the read index with a quorum")),
                Ok(Ok(index)) => index,
                Ok(Err(ReadIndexError::NoLeader)) => {
                    self.leader(call).await?;
                    continue;
                }
                Ok(Err(ReadIndexError::LeadershipLost | ReadIndexError::NotLeader(_))) => {
                    self.leadership_lost(call).await?;
                    continue;
                }
                Ok(Err(ReadIndexError::LeaderFailed { leader, why })) => {
                    // Often passing (a busy leader, a connection being
                    // replaced): ask again soon, sooner if leadership moves,
                    // within the call's budget.
                    tracing::info!(leader, error = %why, "no read index from the leader; asking again");
                    let moved = |m: &RaftMetrics<NodeId, BasicNode>| {
                        (m.current_leader != Some(leader)).then_some(())
                    };
                    let again = (Instant::now() + READ_INDEX_RETRY).min(call.deadline);
                    let waited =
                        self.wait_for(call, "waiting for a leader that gives a read index", moved);
                    if let Ok(Err(e)) = tokio::time::timeout_at(again, waited).await {
                        return Err(e);
                    }
                    continue;
                }
                Ok(Err(ReadIndexError::NoQuorum(e))) => {
                    return Err(ApiError::Unavailable(format!(
                        "no quorum: the leader could not reach a majority ({e})"
                    )))
                }
                Ok(Err(ReadIndexError::Stopped(e))) => {
                    tracing::warn!(node = self.id, error = %e, "read failed: raft stopped");
                    return Err(ApiError::Unavailable(
                        "this node's Raft has stopped; ask another node".into(),
                    ));
                }
            };
            let applied = |m: &RaftMetrics<NodeId, BasicNode>| {
                (m.last_applied.map_or(0, |l| l.index) >= index).then_some(())
            };
            return self
                .wait_for(call, "applying up to the read index", applied)
                .await;
        }
    }
}

/// Whether a failed call to another node was certainly never sent: the
/// connection could not be made (tonic's [`tonic::ConnectError`] in the
/// error's source chain), or the leader refused the stream before reading
/// it (HTTP/2 REFUSED_STREAM). Decided from the error's type only: a status
/// the leader itself answered has no source, whatever its message says.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if cause.is::<tonic::ConnectError>() {
            return true;
        }
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwarded_calls_carry_the_remaining_deadline() {
        let mut incoming = tonic::Request::new(());
        incoming.set_timeout(Duration::from_secs(2));
        incoming
            .metadata_mut()
            .insert("authorization", "Bearer caller-token".parse().unwrap());
        let call = Call::new(&incoming);
        assert!(call.client_deadline);
        let forward = Forward {
            client: TaskServiceClient::new(Dialer::default().channel("127.0.0.1:1").unwrap()),
            leader: 2,
            hops: call.hops,
            deadline: call.deadline,
            authorization: call.authorization.clone(),
        };
        let outgoing = forward.request(());
        // The leader judges the caller, not the node that forwarded the call.
        assert_eq!(
            outgoing.metadata().get("authorization").unwrap(),
            "Bearer caller-token"
        );
        let timeout = outgoing
            .metadata()
            .get("grpc-timeout")
            .expect("grpc-timeout set");
        let timeout = parse_grpc_timeout(timeout.to_str().unwrap()).unwrap();
        assert!(timeout <= Duration::from_secs(2), "{timeout:?}");
        assert!(timeout > Duration::from_secs(1), "{timeout:?}");
        let hops = outgoing.metadata().get(FORWARDED_HEADER).unwrap();
        assert_eq!(hops.to_str().unwrap(), "1");
    }

    #[test]
    fn taskds_own_unavailable_messages_never_read_as_unsent() {
        let call = Call::new(&tonic::Request::new(()));
        for error in [
            call.timed_out("waiting for a leader"),
            ApiError::Unavailable("this node is shutting down".into()),
        ] {
            assert!(!never_sent(&error.into()));
        }
    }

    /// "Never sent" is read from the error's type: a real refused connection
    /// is, a leader's own UNAVAILABLE is not, whatever its text says (a
    /// storage error such as "lost connection to MySQL" once read as unsent,
    /// and the write was sent again to the next leader: applied twice).
    #[tokio::test]
    async fn never_sent_comes_from_the_error_type_not_its_text() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let mut client =
            TaskServiceClient::new(Dialer::default().channel(&addr.to_string()).unwrap());
        let refused = client
            .get_task(crate::proto::GetTaskRequest::default())
            .await
            .unwrap_err();
        assert!(never_sent(&refused), "a refused connection: {refused:?}");

        for answered in [
            tonic::Status::unavailable(
                "this node's Raft has stopped: storage: lost connection to MySQL server during query",
            ),
            tonic::Status::unavailable("tcp connect error"),
        ] {
            assert!(!never_sent(&answered), "an answer: {answered:?}");
        }
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }
}
