//! Adding learners, changing the voters, removing nodes, and this node's
//! own part in the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};
use tokio::time::Instant;

use super::{write_error, Cluster, ClusterError, Metrics};
use crate::raft::NodeId;

/// A member as the leader (or any node) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
    /// The last log index the leader knows this member holds; 0 off the leader.
    pub matched_index: u64,
}

/// How far a new learner got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerProgress {
    pub caught_up: bool,
    pub matched_index: u64,
    pub leader_last_index: u64,
    pub members: Vec<MemberInfo>,
}

/// This node's part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    /// Not in the membership this node knows: removed, or not yet joined.
    NotAMember,
}

/// The members `m` knows, in id order.
pub fn members(m: &Metrics) -> Vec<MemberInfo> {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let matched = m.replication.as_ref();
    membership
        .nodes()
        .map(|(id, node)| MemberInfo {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
            matched_index: matched
                .and_then(|r| r.get(id))
                .map(|l| l.map_or(0, |l| l.index))
                .or_else(|| (*id == m.id).then(|| m.last_log_index.unwrap_or(0)))
                .filter(|_| matched.is_some())
                .unwrap_or(0),
        })
        .collect()
}

/// What `m` says this node is. A node whose membership is empty has not
/// joined yet; one whose membership names others but not itself was removed.
pub fn role(m: &Metrics) -> Role {
    let membership = m.membership_config.membership();
    if membership.get_node(&m.id).is_none() {
        return Role::NotAMember;
    }
    match m.state {
        ServerState::Leader => Role::Leader,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Follower | ServerState::Shutdown => {
            if membership.voter_ids().any(|v| v == m.id) {
                Role::Follower
            } else {
                Role::Learner
            }
        }
    }
}

/// Why a node does not serve clients for membership reasons, if it doesn't.
pub fn not_serving_reason(m: &Metrics) -> Option<String> {
    let membership = m.membership_config.membership();
    if membership.nodes().next().is_none() {
        return Some("not a member of any cluster yet (waiting to join)".into());
    }
    removed_reason(m)
}

/// Why this node counts itself removed: its membership names others, not it.
pub fn removed_reason(m: &Metrics) -> Option<String> {
    let membership = m.membership_config.membership();
    if membership.nodes().next().is_some() && membership.get_node(&m.id).is_none() {
        return Some(format!(
            "node {} was removed from the cluster (its members are now {:?}); \
             it takes no part any more: stop it, and never reuse its id",
            m.id,
            membership.nodes().map(|(id, _)| *id).collect::<Vec<_>>()
        ));
    }
    None
}

fn check_address(addr: &str) -> Result<(), ClusterError> {
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if port_ok {
        Ok(())
    } else {
        Err(ClusterError::InvalidArgument {
            field: "address",
            description: format!("{addr:?} is not host:port"),
        })
    }
}

impl Cluster {
    /// Adds `id` at `addr` as a learner and waits up to `wait` for it to
    /// catch up with the leader's log.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: &str,
        wait: Duration,
    ) -> Result<LearnerProgress, ClusterError> {
        if id == 0 {
            return Err(ClusterError::InvalidArgument {
                field: "node_id",
                description: "must be at least 1".into(),
            });
        }
        check_address(addr)?;
        let m = self.ensure_leader()?;
        match m.membership_config.membership().get_node(&id) {
            Some(node) if node.addr == addr => {}
            Some(node) => {
                return Err(ClusterError::FailedPrecondition(format!(
                    "node {id} is already a member, at {}; remove it first (and use a new id)",
                    node.addr
                )))
            }
            None => {
                tracing::info!(node = self.id, learner = id, addr, "adding a learner");
                self.raft
                    .add_learner(id, BasicNode::new(addr), false)
                    .await
                    .map_err(write_error)?;
            }
        }
        // Caught up: the learner holds what the leader held once it was added.
        let target = self.metrics().last_log_index.unwrap_or(0);
        let matched = |m: &Metrics| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .map_or(0, |l| l.index)
        };
        let waited = self
            .wait_until(Instant::now() + wait, "waiting for the learner", |m| {
                m.current_leader != Some(self.id) || matched(m) >= target
            })
            .await;
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(ClusterError::Unavailable(
                "leadership changed while the learner caught up; the learner was added, call again to wait for it".into(),
            ));
        }
        Ok(LearnerProgress {
            caught_up: waited.is_ok(),
            matched_index: matched(&m),
            leader_last_index: m.last_log_index.unwrap_or(0),
            members: members(&m),
        })
    }

    /// Makes `voters` the voters; voters left out stay as learners.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
    ) -> Result<Vec<MemberInfo>, ClusterError> {
        if voters.is_empty() {
            return Err(ClusterError::InvalidArgument {
                field: "voter_ids",
                description: "must name at least one voter".into(),
            });
        }
        let m = self.ensure_leader()?;
        let membership = m.membership_config.membership();
        if let Some(stranger) = voters.iter().find(|v| membership.get_node(v).is_none()) {
            return Err(ClusterError::FailedPrecondition(format!(
                "node {stranger} is not a member: add it as a learner first"
            )));
        }
        let current: BTreeSet<NodeId> = membership.voter_ids().collect();
        if current == voters {
            return Ok(members(&m));
        }
        tracing::info!(node = self.id, ?voters, "changing the voters");
        self.raft
            .change_membership(voters, true)
            .await
            .map_err(write_error)?;
        Ok(members(&self.metrics()))
    }

    /// Removes `id` from the cluster. The leader itself is removed by the
    /// next leader: this hands leadership over and answers `NotLeader`.
    pub async fn remove_node(&self, id: NodeId) -> Result<Vec<MemberInfo>, ClusterError> {
        let m = self.ensure_leader()?;
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(ClusterError::FailedPrecondition(format!(
                "node {id} is not a member"
            )));
        }
        let voter = membership.voter_ids().any(|v| v == id);
        if voter && membership.voter_ids().count() == 1 {
            return Err(ClusterError::FailedPrecondition(format!(
                "node {id} is the only voter; a cluster needs one"
            )));
        }
        if id == self.id {
            let moved = self
                .transfer_leadership(None, Instant::now() + Duration::from_secs(5))
                .await?;
            return Err(ClusterError::NotLeader(
                moved.leader_addr.map(|addr| (moved.leader, addr)),
            ));
        }
        tracing::info!(node = self.id, removed = id, voter, "removing a node");
        let change = if voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(write_error)?;
        Ok(members(&self.metrics()))
    }
}
