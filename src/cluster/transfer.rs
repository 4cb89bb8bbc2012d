//! Leadership transfer, built from openraft 0.9's parts (it has no call
//! for it), as Raft's thesis (§3.10) describes it:
//!
//! 1. the leader holds new writes (the proposer's gate), so its log stops
//!    growing;
//! 2. it waits until the target holds its whole log;
//! 3. it asks the target to stand for election now (`StartElection`, Raft's
//!    TimeoutNow), and the target calls `trigger().elect()`;
//! 4. once a new leader is known, the held writes go on (to the new leader).
//!
//! Who grants the target's vote: openraft refuses every vote for
//! `leader_lease` (= `election_timeout_max`) after the voter last heard
//! from a leader. Followers hear heartbeats all the time, so they refuse;
//! the leader's own vote was last renewed when it was elected, so it grants
//! once it has led for longer than the lease (a transfer right after an
//! election waits for that). In a 3-voter cluster the target's own vote
//! and the old leader's are a majority: the move costs clients about one
//! election round trip. With 4 or more voters the target also needs
//! followers whose lease ran out: before holding writes, the leader mutes
//! just enough followers (it sends them no AppendEntries; writes still
//! commit with the others) for one lease, so that they may vote. The move
//! itself then costs clients about as little as with 3 voters; it only
//! starts a lease later. When too few followers answer to keep a write
//! quorum with some muted, the leader pauses every heartbeat instead, with
//! writes held: that move costs clients about one lease.
//!
//! The move is done only when another node leads; a transfer that ends
//! with this node leading again (the target lost its election) fails.

use std::time::Duration;

use tokio::time::Instant;

use super::{Cluster, ClusterError, Metrics};
use crate::proto;
use crate::raft::NodeId;

/// The outcome of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    pub leader: NodeId,
    pub leader_addr: Option<String>,
    pub term: u64,
    /// How long new writes were held.
    pub writes_held: Duration,
}

impl Cluster {
    /// Moves leadership to `to`, or to the most up-to-date other voter.
    pub async fn transfer_leadership(
        &self,
        to: Option<NodeId>,
        deadline: Instant,
    ) -> Result<Transferred, ClusterError> {
        let m = self.ensure_leader()?;
        let target = self.pick_target(&m, to)?;
        if target == self.id {
            return Ok(Transferred {
                leader: self.id,
                leader_addr: None,
                term: m.current_term,
                writes_held: Duration::ZERO,
            });
        }
        let target_addr = m
            .membership_config
            .membership()
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or_else(|| ClusterError::Internal(format!("voter {target} has no address")))?;

        // Our own vote is granted only past the lease since our election.
        let leader_since = *self.leader_since.borrow();
        if let Some((term, since)) = leader_since {
            let lease_end = since + self.leader_lease() + Duration::from_millis(5);
            if term == m.current_term && lease_end > Instant::now() {
                tokio::time::sleep_until(lease_end.min(deadline)).await;
            }
        }

        // With more than 3 voters the target needs followers' votes too:
        // mute enough of them (writes go on with the rest) until their
        // lease runs out, then hand over.
        let voters = m.membership_config.membership().voter_ids().count();
        let muted = if voters > 3 {
            self.mute_helpers(&m, target, deadline).await
        } else {
            None
        };

        let held_at = Instant::now();
        let held = self.proposer.hold().await;
        let m = self.ensure_leader()?;
        let term = m.current_term;
        let last = m.last_log_index.unwrap_or(0);
        let matched = |m: &Metrics| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&target).copied().flatten())
                .map_or(0, |l| l.index)
        };
        self.wait_until(deadline, "waiting for the target to catch up", |m| {
            m.current_leader != Some(self.id) || matched(m) >= last
        })
        .await?;
        self.ensure_leader()?;

        let _paused = match muted {
            Some(_) => None,
            None if voters > 3 => {
                // No helpers could be muted: pause every heartbeat instead.
                let paused = HeartbeatPause::start(&self.raft);
                let lease_end = Instant::now()
                    + self.leader_lease()
                    + Duration::from_millis(self.timing.heartbeat_interval_ms);
                tokio::time::sleep_until(lease_end.min(deadline)).await;
                Some(paused)
            }
            None => None,
        };

        tracing::info!(
            node = self.id,
            target,
            term,
            last,
            "handing leadership over"
        );
        let mut client = self.peers.client(&target_addr)?;
        let mut request = tonic::Request::new(proto::StartElectionRequest {
            leader_id: self.id,
            term,
            last_log_index: last,
        });
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        client.start_election(request).await.map_err(|s| {
            ClusterError::Unavailable(format!(
                "node {target} did not stand for election: {}",
                s.message()
            ))
        })?;
        let me = self.id;
        let moved = self
            .wait_until(deadline, "waiting for another node to lead", |m| {
                m.current_term > term && m.current_leader.is_some_and(|l| l != me)
            })
            .await;
        let writes_held = held_at.elapsed();
        drop(held);
        let m = moved?;
        let leader = m.current_leader.unwrap_or(0);
        tracing::info!(
            node = self.id,
            leader,
            term = m.current_term,
            held_ms = writes_held.as_millis() as u64,
            "leadership moved"
        );
        Ok(Transferred {
            leader,
            leader_addr: super::leader_of(&m).map(|(_, addr)| addr),
            term: m.current_term,
            writes_held,
        })
    }

    /// Mutes the followers (other than `target`) whose votes the target
    /// needs, and waits until their leader lease ran out; `None` when too
    /// few followers answer to keep a quorum for writes meanwhile.
    async fn mute_helpers(
        &self,
        m: &Metrics,
        target: NodeId,
        deadline: Instant,
    ) -> Option<MutedPeers> {
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let majority = voters.len() / 2 + 1;
        let needed = majority.saturating_sub(2);
        // Followers that answer now, most up to date first.
        let mut alive = Vec::new();
        for id in voters.iter().filter(|v| **v != self.id && **v != target) {
            let Some(node) = membership.get_node(id) else {
                continue;
            };
            let Ok(mut client) = self.peers.client(&node.addr) else {
                continue;
            };
            let mut probe = tonic::Request::new(proto::GetClusterStatusRequest {});
            probe.set_timeout(Duration::from_millis(200));
            if client.get_cluster_status(probe).await.is_ok() {
                alive.push(*id);
            }
        }
        // Writes need a majority of leader, target and unmuted live followers.
        if 2 + alive.len() - needed.min(alive.len()) < majority || alive.len() < needed {
            return None;
        }
        let helpers: Vec<NodeId> = alive.into_iter().take(needed).collect();
        let muted = MutedPeers::start(self.muted.clone(), &helpers);
        let lease_end = Instant::now()
            + self.leader_lease()
            + Duration::from_millis(self.timing.heartbeat_interval_ms);
        tracing::info!(
            node = self.id,
            ?helpers,
            "muting followers until their leader lease runs out"
        );
        tokio::time::sleep_until(lease_end.min(deadline)).await;
        Some(muted)
    }

    /// `to` if it is a voter; else the other voter that holds the most log.
    fn pick_target(&self, m: &Metrics, to: Option<NodeId>) -> Result<NodeId, ClusterError> {
        let membership = m.membership_config.membership();
        if let Some(to) = to {
            if !membership.voter_ids().any(|v| v == to) {
                return Err(ClusterError::FailedPrecondition(format!(
                    "node {to} is not a voter: only a voter can lead"
                )));
            }
            return Ok(to);
        }
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).copied().flatten())
                .map(|l| l.index)
        };
        membership
            .voter_ids()
            .filter(|v| *v != self.id)
            .max_by_key(|v| (matched(v), std::cmp::Reverse(*v)))
            .ok_or_else(|| {
                ClusterError::FailedPrecondition(
                    "this node is the only voter: there is no one to hand leadership to".into(),
                )
            })
    }

    /// `StartElection` from a leader that hands over to this node: stand
    /// now, if this node holds the leader's whole log and the request is
    /// not stale.
    pub async fn start_election(
        &self,
        request: &proto::StartElectionRequest,
    ) -> Result<(), ClusterError> {
        let m = self.metrics();
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id)
        {
            return Err(ClusterError::FailedPrecondition(format!(
                "node {} is not a voter",
                self.id
            )));
        }
        if m.current_term > request.term {
            return Err(ClusterError::FailedPrecondition(format!(
                "stale request: this node is in term {}, the request is of term {}",
                m.current_term, request.term
            )));
        }
        let last = m.last_log_index.unwrap_or(0);
        if last < request.last_log_index {
            return Err(ClusterError::FailedPrecondition(format!(
                "this node holds the log up to {last}, not {}",
                request.last_log_index
            )));
        }
        tracing::info!(
            node = self.id,
            from = request.leader_id,
            term = request.term,
            "standing for election: leadership handed over"
        );
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| ClusterError::Unavailable(format!("raft stopped: {e}")))
    }
}

/// While alive, the leader sends no heartbeats and this node starts no
/// election on its own, so that the followers' leader leases run out and
/// they may vote for the transfer target.
struct HeartbeatPause {
    raft: crate::raft::Raft,
}

impl HeartbeatPause {
    fn start(raft: &crate::raft::Raft) -> Self {
        raft.runtime_config().heartbeat(false);
        raft.runtime_config().elect(false);
        Self { raft: raft.clone() }
    }
}

impl Drop for HeartbeatPause {
    fn drop(&mut self) {
        self.raft.runtime_config().heartbeat(true);
        self.raft.runtime_config().elect(true);
    }
}

/// While alive, the leader sends no AppendEntries to these peers.
struct MutedPeers {
    muted: crate::raft::network::Muted,
    peers: Vec<NodeId>,
}

impl MutedPeers {
    fn start(muted: crate::raft::network::Muted, peers: &[NodeId]) -> Self {
        muted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(peers.iter().copied());
        Self {
            muted,
            peers: peers.to_vec(),
        }
    }
}

impl Drop for MutedPeers {
    fn drop(&mut self) {
        let mut muted = self.muted.lock().unwrap_or_else(|e| e.into_inner());
        for peer in &self.peers {
            muted.remove(peer);
        }
    }
}
