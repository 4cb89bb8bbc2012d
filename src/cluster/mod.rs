//! The cluster's membership and leadership: what the admin RPCs
//! (`api::admin_service`) and `taskd serve --join` do.
//!
//! - [`membership`]: add a learner, change the voters, remove a node, and
//!   what this node's own part in the cluster is.
//! - [`transfer`]: hand leadership to another voter (openraft 0.9 has no
//!   call for it).
//! - [`join`]: an empty node asks a running cluster to add it.
//! - [`peers`]: `RaftService` clients of other members.
//! - [`quiet`]: no elections from a node while it receives a snapshot.
//!
//! Every operation here runs on the leader; on any other node it answers
//! [`ClusterError::NotLeader`] and the API layer forwards the call.

pub mod join;
pub mod membership;
pub mod peers;
pub mod quiet;
pub mod transfer;

use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::raft::network::{Muted, Refusal};
use crate::raft::proposer::Proposer;
use crate::raft::{NodeId, Raft, RaftTiming};
use peers::Peers;

/// Why a cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The request itself is wrong (an id of 0, an address without a port).
    #[error("{field}: {description}")]
    InvalidArgument {
        field: &'static str,
        description: String,
    },
    /// The request does not fit the cluster as it is (not a member, the
    /// last voter, a change already in progress).
    #[error("{0}")]
    FailedPrecondition(String),
    /// This node does not lead; the leader's id and address if known.
    #[error("not the leader")]
    NotLeader(Option<(NodeId, String)>),
    /// Nothing can be decided now (no leader, no quorum, unreachable peer).
    #[error("{0}")]
    Unavailable(String),
    /// The operation did not finish in time; it may still.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

type Metrics = RaftMetrics<NodeId, BasicNode>;

/// This node's handle on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    id: NodeId,
    raft: Raft,
    proposer: Proposer,
    timing: RaftTiming,
    peers: Peers,
    /// When this node last became leader, and in which term.
    leader_since: watch::Receiver<Option<(u64, Instant)>>,
    /// Peers refused this node's votes as a non-member's.
    refusal: Refusal,
    /// Elections off while a snapshot arrives.
    quiet: quiet::SnapshotQuiet,
    /// Peers the leader stops replicating to during a transfer.
    muted: Muted,
}

impl Cluster {
    /// Starts watching `raft`'s leadership; call inside a tokio runtime.
    pub fn start(
        id: NodeId,
        raft: Raft,
        proposer: Proposer,
        timing: RaftTiming,
        refusal: Refusal,
        muted: Muted,
        peers: Peers,
    ) -> Self {
        let (since_tx, leader_since) = watch::channel(None);
        let mut metrics = raft.metrics();
        let refusal_seen = refusal.clone();
        tokio::spawn(async move {
            loop {
                let term = {
                    let m = metrics.borrow_and_update();
                    if m.current_leader.is_some() {
                        // A leader counts this node in: any refusal is stale.
                        *refusal_seen.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    }
                    (m.current_leader == Some(id)).then_some(m.current_term)
                };
                since_tx.send_if_modified(|since| {
                    let changed = since.map(|(t, _)| t) != term;
                    if changed {
                        *since = term.map(|t| (t, Instant::now()));
                    }
                    changed
                });
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        let quiet = quiet::SnapshotQuiet::start(
            raft.clone(),
            Duration::from_millis(4 * timing.election_timeout_ms),
        );
        Self {
            id,
            raft,
            proposer,
            timing,
            peers,
            leader_since,
            refusal,
            muted,
            quiet,
        }
    }

    /// Why this node does not serve for membership reasons: it is not (or
    /// no longer) in the membership it knows, or, while it knows no leader,
    /// peers refused its votes as a non-member's (a removed node that
    /// missed its removal). A leader heard of clears that doubt.
    pub fn not_serving_reason(&self, m: &Metrics) -> Option<String> {
        membership::not_serving_reason(m).or_else(|| self.refused_reason(m))
    }

    /// Why this node is no member any more, if it knows or was told so;
    /// calls to it then fail at once instead of waiting for a leader.
    pub fn removed(&self, m: &Metrics) -> Option<String> {
        membership::removed_reason(m).or_else(|| self.refused_reason(m))
    }

    fn refused_reason(&self, m: &Metrics) -> Option<String> {
        let refused = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        match (m.current_leader, refused.as_ref()) {
            (None, Some(why)) => Some(format!(
                "the cluster does not count node {} as a member ({why}): it was removed; stop it, and never reuse its id",
                self.id
            )),
            _ => None,
        }
    }

    /// This node's part in the cluster, as far as it can tell.
    pub fn role(&self, m: &Metrics) -> membership::Role {
        let refused = m.current_leader.is_none()
            && self
                .refusal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some();
        if refused {
            membership::Role::NotAMember
        } else {
            membership::role(m)
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Hold while serving an InstallSnapshot call (see [`quiet`]).
    pub fn receiving_snapshot(&self) -> quiet::Receiving {
        self.quiet.receiving()
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow().clone()
    }

    /// `Ok` on the leader; else who leads, as far as this node knows.
    fn ensure_leader(&self) -> Result<Metrics, ClusterError> {
        let m = self.metrics();
        if m.current_leader == Some(self.id) {
            return Ok(m);
        }
        Err(ClusterError::NotLeader(leader_of(&m)))
    }

    /// `Ok` while this node leads.
    pub fn ensure_leading(&self) -> Result<(), ClusterError> {
        self.ensure_leader().map(drop)
    }

    /// Waits until this node has applied `index`, or `deadline`.
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ClusterError> {
        self.wait_until(deadline, "applying up to the read index", |m| {
            m.last_applied.map_or(0, |l| l.index) >= index
        })
        .await
        .map(drop)
    }

    /// Waits until `ready` holds for this node's metrics, or `deadline`.
    async fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        ready: impl Fn(&Metrics) -> bool,
    ) -> Result<Metrics, ClusterError> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if ready(&m) {
                    return Ok(m.clone());
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Err(_) => return Err(ClusterError::DeadlineExceeded(format!("timed out {what}"))),
                Ok(Err(_)) => {
                    return Err(ClusterError::Unavailable("this node is stopping".into()))
                }
                Ok(Ok(())) => {}
            }
        }
    }

    /// How long a vote for anyone else is refused after a leader was seen:
    /// openraft's leader lease, `election_timeout_max`.
    fn leader_lease(&self) -> Duration {
        Duration::from_millis(2 * self.timing.election_timeout_ms)
    }
}

/// The leader `m` knows of, with its address.
pub fn leader_of(m: &Metrics) -> Option<(NodeId, String)> {
    let leader = m.current_leader?;
    let node = m.membership_config.membership().get_node(&leader)?;
    Some((leader, node.addr.clone()))
}

/// Maps openraft's answer to a membership write.
fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ClusterError::NotLeader(f.leader_id.zip(f.leader_node.map(|n| n.addr)))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => match e {
            ChangeMembershipError::InProgress(_) => ClusterError::FailedPrecondition(format!(
                "another membership change is in progress; retry when it is done ({e})"
            )),
            e => ClusterError::FailedPrecondition(e.to_string()),
        },
        RaftError::Fatal(fatal) => ClusterError::Unavailable(format!("raft stopped: {fatal}")),
    }
}
