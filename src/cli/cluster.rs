//! `taskd cluster …`: see the members, add, promote, remove, move the leader.

use std::collections::BTreeSet;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::{with_timeout, Endpoints};
use crate::proto::{self, NodeRole};
use crate::raft::NodeId;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, roles, leader, term, and log/applied index per node.
    Status {
        #[command(flatten)]
        endpoints: Endpoints,
        /// `json` prints one object with `leader` and `members`.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Whether each endpoint serves (gRPC health SERVING): exit code 1 if
    /// any does not. With --wait, polls until all do or the time is up.
    Health {
        #[command(flatten)]
        endpoints: Endpoints,
        /// Keep asking for up to this many seconds.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Add a node as a learner; waits until it has caught up.
    AddLearner {
        node_id: NodeId,
        /// host:port the members reach the new node at.
        address: String,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Make a learner a voter.
    Promote {
        node_id: NodeId,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Remove a node (voter or learner) from the cluster for good.
    Remove {
        node_id: NodeId,
        #[command(flatten)]
        endpoints: Endpoints,
    },
    /// Move leadership to NODE_ID, or to the most up-to-date other voter.
    TransferLeader {
        node_id: Option<NodeId>,
        #[command(flatten)]
        endpoints: Endpoints,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// One member in `taskd cluster status`.
#[derive(Debug, Serialize)]
pub struct MemberStatus {
    pub node_id: NodeId,
    pub address: String,
    /// `leader`, `follower`, `candidate`, `learner`, `not-a-member`, or
    /// `unreachable` when the node did not answer.
    pub role: String,
    pub voter: bool,
    pub term: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// As the leader knows it.
    pub matched_index: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub not_serving_reason: String,
}

/// `taskd cluster status --output json`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// The leader's node id; null when none is known.
    pub leader: Option<NodeId>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Status { endpoints, output } => {
            let status = status(&endpoints).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                Output::Text => print_status(&status),
            }
        }
        ClusterCommand::Health { endpoints, wait } => health(&endpoints, wait).await?,
        ClusterCommand::AddLearner {
            node_id,
            address,
            endpoints,
        } => {
            let reply = endpoints
                .call(|mut c, t| {
                    let request = proto::AddLearnerRequest {
                        node_id,
                        address: address.clone(),
                        wait_timeout: Some(prost_types::Duration {
                            seconds: t.as_secs().saturating_sub(1) as i64,
                            nanos: 0,
                        }),
                    };
                    async move { c.add_learner(with_timeout(request, t)).await }
                })
                .await?;
            if !reply.caught_up {
                bail!(
                    "node {node_id} was added as a learner but has not caught up yet (at {} of {}); \
                     see `taskd cluster status`",
                    reply.matched_index,
                    reply.leader_last_index
                );
            }
            println!(
                "node {node_id} added as a learner at {address}, caught up at index {}",
                reply.matched_index
            );
        }
        ClusterCommand::Promote { node_id, endpoints } => {
            let leader = leader_status(&endpoints).await?;
            let Some(member) = leader.members.iter().find(|m| m.node_id == node_id) else {
                bail!(
                    "node {node_id} is not a member: add it with `taskd cluster add-learner` first"
                );
            };
            if member.voter {
                println!("node {node_id} is already a voter");
                return Ok(());
            }
            let mut voters: BTreeSet<NodeId> = leader
                .members
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.node_id)
                .collect();
            voters.insert(node_id);
            change_voters(&endpoints, &voters).await?;
            println!("node {node_id} is now a voter; voters: {voters:?}");
        }
        ClusterCommand::Remove { node_id, endpoints } => {
            let reply = endpoints
                .call(|mut c, t| async move {
                    c.remove_node(with_timeout(proto::RemoveNodeRequest { node_id }, t))
                        .await
                })
                .await?;
            let left: Vec<NodeId> = reply.members.iter().map(|m| m.node_id).collect();
            println!("node {node_id} removed; members: {left:?}");
        }
        ClusterCommand::TransferLeader { node_id, endpoints } => {
            let reply = endpoints
                .call(|mut c, t| async move {
                    let request = proto::TransferLeadershipRequest {
                        node_id: node_id.unwrap_or(0),
                    };
                    c.transfer_leadership(with_timeout(request, t)).await
                })
                .await?;
            let held = reply
                .writes_held
                .map(|d| d.seconds as f64 * 1e3 + d.nanos as f64 / 1e6)
                .unwrap_or(0.0);
            println!(
                "node {} leads (term {}); writes were held {held:.1} ms",
                reply.leader_id, reply.term
            );
        }
    }
    Ok(())
}

async fn change_voters(endpoints: &Endpoints, voters: &BTreeSet<NodeId>) -> anyhow::Result<()> {
    endpoints
        .call(|mut c, t| {
            let request = proto::ChangeMembershipRequest {
                voter_ids: voters.iter().copied().collect(),
            };
            async move { c.change_membership(with_timeout(request, t)).await }
        })
        .await?;
    Ok(())
}

/// The leader's own status (its members carry matched indexes).
async fn leader_status(endpoints: &Endpoints) -> anyhow::Result<proto::GetClusterStatusResponse> {
    let any = endpoints
        .call(|mut c, t| async move {
            c.get_cluster_status(with_timeout(proto::GetClusterStatusRequest {}, t))
                .await
        })
        .await?;
    if any.leader_id == any.node_id {
        return Ok(any);
    }
    let Some(leader) = any.members.iter().find(|m| m.node_id == any.leader_id) else {
        bail!(
            "no leader is known to node {}: is a majority of the voters up?",
            any.node_id
        );
    };
    let mut c = endpoints.client(&leader.address)?;
    Ok(c.get_cluster_status(with_timeout(
        proto::GetClusterStatusRequest {},
        endpoints.timeout(),
    ))
    .await
    .map_err(|s| {
        anyhow::anyhow!(
            "leader {} at {}: {}",
            leader.node_id,
            leader.address,
            s.message()
        )
    })?
    .into_inner())
}

/// Every member's own view, joined with the leader's.
pub async fn status(endpoints: &Endpoints) -> anyhow::Result<ClusterStatus> {
    let view = match leader_status(endpoints).await {
        Ok(view) => view,
        // No leader: show what the first answering node knows.
        Err(_) => {
            endpoints
                .call(|mut c, t| async move {
                    c.get_cluster_status(with_timeout(proto::GetClusterStatusRequest {}, t))
                        .await
                })
                .await?
        }
    };
    let probe = std::time::Duration::from_secs(2).min(endpoints.timeout());
    let mut members = Vec::new();
    for m in &view.members {
        let own = match endpoints.client(&m.address) {
            Ok(mut c) => c
                .get_cluster_status(with_timeout(proto::GetClusterStatusRequest {}, probe))
                .await
                .ok()
                .map(|r| r.into_inner()),
            Err(_) => None,
        };
        members.push(MemberStatus {
            node_id: m.node_id,
            address: m.address.clone(),
            role: own
                .as_ref()
                .map_or("unreachable".into(), |s| role_name(s.role())),
            voter: m.voter,
            term: own.as_ref().map(|s| s.term),
            last_log_index: own.as_ref().map(|s| s.last_log_index),
            applied_index: own.as_ref().map(|s| s.last_applied_index),
            matched_index: m.matched_index,
            not_serving_reason: own.map(|s| s.not_serving_reason).unwrap_or_default(),
        });
    }
    Ok(ClusterStatus {
        leader: (view.leader_id != 0).then_some(view.leader_id),
        term: view.term,
        members,
    })
}

fn role_name(role: NodeRole) -> String {
    match role {
        NodeRole::Leader => "leader",
        NodeRole::Follower => "follower",
        NodeRole::Candidate => "candidate",
        NodeRole::Learner => "learner",
        NodeRole::NotAMember => "not-a-member",
        NodeRole::Unspecified => "unknown",
    }
    .into()
}

fn print_status(status: &ClusterStatus) {
    match status.leader {
        Some(leader) => println!("leader: node {leader}, term {}", status.term),
        None => println!("leader: none known (term {})", status.term),
    }
    println!(
        "{:>7}  {:<22} {:<12} {:>6} {:>10} {:>10} {:>10}",
        "NODE", "ADDRESS", "ROLE", "TERM", "LOG", "APPLIED", "MATCHED"
    );
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for m in &status.members {
        println!(
            "{:>7}  {:<22} {:<12} {:>6} {:>10} {:>10} {:>10}",
            m.node_id,
            m.address,
            m.role,
            show(m.term),
            show(m.last_log_index),
            show(m.applied_index),
            m.matched_index
        );
        if !m.not_serving_reason.is_empty() {
            println!("         not serving: {}", m.not_serving_reason);
        }
    }
}

/// One endpoint's gRPC health, and its reason when it does not serve.
async fn endpoint_health(
    endpoints: &Endpoints,
    addr: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let ch = endpoints
        .connection
        .dialer()
        .map_err(|e| format!("{e:#}"))?
        .channel(addr)
        .map_err(|e| e.to_string())?;
    let reply = HealthClient::new(ch)
        .check(with_timeout(HealthCheckRequest::default(), timeout))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    if reply.into_inner().status() == ServingStatus::Serving {
        return Ok(());
    }
    let reason = match endpoints.client(addr) {
        Ok(mut c) => c
            .get_cluster_status(with_timeout(proto::GetClusterStatusRequest {}, timeout))
            .await
            .map(|r| r.into_inner().not_serving_reason)
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    Err(if reason.is_empty() {
        "NOT_SERVING (no leader known, or still catching up)".into()
    } else {
        format!("NOT_SERVING: {reason}")
    })
}

async fn health(endpoints: &Endpoints, wait: u64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    let probe = std::time::Duration::from_secs(2).min(endpoints.timeout());
    loop {
        let mut failed = Vec::new();
        for addr in &endpoints.endpoints {
            if let Err(why) = endpoint_health(endpoints, addr, probe).await {
                failed.push(format!("{addr}: {why}"));
            }
        }
        if failed.is_empty() {
            for addr in &endpoints.endpoints {
                println!("{addr}: SERVING");
            }
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{}", failed.join("; "));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
