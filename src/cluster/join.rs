//! `taskd serve --join`: an empty node asks a running cluster to add it.
//!
//! The node serves first (the leader must reach it to send it the log),
//! then calls `AddLearner` on the seed addresses in turn until one answers
//! that it caught up, and, with `--join-as voter`, asks to become a voter.
//! A node that is already a member (a restart) skips the asking; each step
//! is idempotent, so a crash half-way is repaired by starting again.

use std::collections::BTreeSet;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::{Cluster, ClusterError};
use crate::proto;
use crate::raft::NodeId;

/// How a joining node enters the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JoinAs {
    /// Replicates but does not vote, until an operator promotes it.
    Learner,
    /// Promoted to voter as soon as it has caught up.
    Voter,
}

/// Where and how to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinPlan {
    /// Addresses of running members; any one will do.
    pub seeds: Vec<String>,
    /// This node's address as the others reach it.
    pub advertise: String,
    pub join_as: JoinAs,
}

/// How long one `AddLearner` call waits for this node to catch up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(30);

impl Cluster {
    /// Joins the cluster per `plan`; returns once this node is a member
    /// (a voter, with `JoinAs::Voter`). Retries forever, with backoff, while
    /// no seed answers: a supervisor can always stop the node.
    pub async fn join(&self, plan: &JoinPlan) {
        let attempt = || async { self.join_once(plan).await };
        let joined = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .without_max_times(),
            )
            .when(|e: &ClusterError| !matches!(e, ClusterError::InvalidArgument { .. }))
            .notify(|e, wait| {
                tracing::warn!(node = self.id, error = %e, retry_in = ?wait, "joining the cluster");
            })
            .await;
        match joined {
            Ok(()) => tracing::info!(node = self.id, as_ = ?plan.join_as, "joined the cluster"),
            Err(e) => tracing::error!(node = self.id, error = %e, "cannot join the cluster"),
        }
    }

    async fn join_once(&self, plan: &JoinPlan) -> Result<(), ClusterError> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let member = membership.get_node(&self.id).is_some();
        let voter = membership.voter_ids().any(|v| v == self.id);
        if !member {
            let progress = self
                .ask_seeds(plan, |mut client| {
                    let request = proto::AddLearnerRequest {
                        node_id: self.id,
                        address: plan.advertise.clone(),
                        wait_timeout: Some(prost_types::Duration {
                            seconds: CATCH_UP_WAIT.as_secs() as i64,
                            nanos: 0,
                        }),
                    };
                    async move { client.add_learner(request).await }
                })
                .await?;
            if !progress.caught_up {
                return Err(ClusterError::Unavailable(format!(
                    "added as a learner, still catching up (at {} of {})",
                    progress.matched_index, progress.leader_last_index
                )));
            }
            tracing::info!(node = self.id, "added as a learner and caught up");
        }
        if plan.join_as == JoinAs::Voter && !voter {
            let status = self
                .ask_seeds(plan, |mut client| async move {
                    client
                        .get_cluster_status(proto::GetClusterStatusRequest {})
                        .await
                })
                .await?;
            let mut voters: BTreeSet<NodeId> = status
                .members
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.node_id)
                .collect();
            voters.insert(self.id);
            self.ask_seeds(plan, |mut client| {
                let request = proto::ChangeMembershipRequest {
                    voter_ids: voters.iter().copied().collect(),
                };
                async move { client.change_membership(request).await }
            })
            .await?;
            tracing::info!(node = self.id, "promoted to voter");
        }
        Ok(())
    }

    /// The first answer of the seeds, tried in turn.
    async fn ask_seeds<T, F, Fut>(&self, plan: &JoinPlan, call: F) -> Result<T, ClusterError>
    where
        F: Fn(
            crate::proto::raft_service_client::RaftServiceClient<crate::security::peer::PeerChannel>,
        ) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = ClusterError::Unavailable("no seed address given".into());
        for seed in &plan.seeds {
            let client = self.peers.client(seed)?;
            match call(client).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) => {
                    last = match status.code() {
                        tonic::Code::InvalidArgument => ClusterError::InvalidArgument {
                            field: "join",
                            description: format!("{seed} refused this node: {}", status.message()),
                        },
                        _ => ClusterError::Unavailable(format!(
                            "{seed}: {}: {}",
                            status.code(),
                            status.message()
                        )),
                    };
                }
            }
        }
        Err(last)
    }
}
