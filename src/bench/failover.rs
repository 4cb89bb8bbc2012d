//! `--workload failover`: how long writes stop when the leader dies.
//!
//! Each round finds the leader (every node's `GetClusterStatus` names the
//! same one), SIGKILLs it, and measures wall time from the kill until a
//! CreateTask is acknowledged. The writes go to the survivors in turn, each
//! with a 100 ms deadline and tried again at once (a try that fails within
//! 5 ms waits out the 5 ms, so a refused connection does not spin). Then the
//! killed node restarts on its data and the round ends when all are SERVING
//! and have applied the leader's whole log.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::{sleep_until, timeout, Instant};
use tonic::transport::Channel;

use super::cluster::LocalCluster;
use super::load::{run_tag, PADDING};
use super::report::FailoverReport;
use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::task_service_client::TaskServiceClient;
use crate::proto::{CreateTaskRequest, GetClusterStatusRequest};

/// The deadline of one write try.
const TRY_TIMEOUT: Duration = Duration::from_millis(100);
/// The least time between two tries on the same node.
const MIN_TRY_SPACING: Duration = Duration::from_millis(5);
/// How long the cluster may take to agree on a leader, or to take a write.
const PATIENCE: Duration = Duration::from_secs(60);

pub async fn run(cluster: &mut LocalCluster, kills: usize) -> anyhow::Result<FailoverReport> {
    let tag = run_tag();
    let mut times_ms = Vec::with_capacity(kills);
    for round in 1..=kills {
        let leader = agreed_leader(cluster).await?;
        cluster.kill_9(leader)?;
        let killed_at = Instant::now();
        let survivors: Vec<Channel> = cluster
            .channels()
            .into_iter()
            .filter(|(id, _)| *id != leader)
            .map(|(_, channel)| channel)
            .collect();
        first_acknowledged_write(&survivors, &format!("failover {tag}-{round}")).await?;
        let ms = (killed_at.elapsed().as_secs_f64() * 1000.0).round();
        eprintln!(
            "bench: kill {round}/{kills}: leader {leader} → first acknowledged write after {ms} ms"
        );
        times_ms.push(ms);
        cluster.restart(leader).await?;
        cluster.wait_serving().await?;
        // Kill the next leader only in a healthy cluster: the restarted node
        // has caught up. A node still behind cannot win an election, but its
        // own (failing) candidacy bumps the term and restarts the others'
        // election timers: that measures a second fault, not one failover.
        converged(cluster).await?;
    }
    Ok(FailoverReport::new(
        cluster.len(),
        cluster.database(),
        times_ms,
    ))
}

/// Polls until every node names the same leader; returns its id.
pub(super) async fn agreed_leader(cluster: &LocalCluster) -> anyhow::Result<u64> {
    let nodes: Vec<Channel> = cluster.channels().into_iter().map(|(_, ch)| ch).collect();
    leader_agreed_by(&nodes, None, Duration::from_millis(20)).await
}

/// Polls `nodes` every `poll` until all name the same leader, other than
/// `unlike` when given; returns its id.
pub(super) async fn leader_agreed_by(
    nodes: &[Channel],
    unlike: Option<u64>,
    poll: Duration,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        seen.clear();
        for channel in nodes {
            let status = RaftServiceClient::new(channel.clone())
                .get_cluster_status(GetClusterStatusRequest {})
                .await;
            seen.push(status.map(|s| s.into_inner().leader_id).unwrap_or(0));
        }
        let first = seen[0];
        if first != 0 && Some(first) != unlike && seen.iter().all(|&id| id == first) {
            return Ok(first);
        }
        if Instant::now() >= deadline {
            bail!("the nodes agreed on no new leader in {PATIENCE:?} (they name {seen:?})");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Polls until every node has applied the leader's whole log.
pub(super) async fn converged(cluster: &LocalCluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut statuses = Vec::new();
        for (_, channel) in cluster.channels() {
            let status = RaftServiceClient::new(channel)
                .get_cluster_status(GetClusterStatusRequest {})
                .await;
            statuses.extend(status.ok().map(|s| s.into_inner()));
        }
        let leader = statuses
            .iter()
            .find(|s| s.leader_id == s.node_id && s.node_id != 0);
        if let Some(leader) = leader {
            let target = leader.last_log_index;
            if statuses.len() == cluster.len()
                && statuses.iter().all(|s| s.last_applied_index >= target)
            {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!("the restarted node did not catch up with the leader in {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends CreateTask to `nodes` in turn until one is acknowledged.
async fn first_acknowledged_write(nodes: &[Channel], title: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let mut last_error = String::from("no try");
    let mut turn = 0;
    loop {
        if Instant::now() >= deadline {
            bail!("no write was acknowledged in {PATIENCE:?} after the kill (last: {last_error})");
        }
        let mut client = TaskServiceClient::new(nodes[turn % nodes.len()].clone());
        turn += 1;
        let mut request = tonic::Request::new(CreateTaskRequest {
            title: title.to_string(),
            description: PADDING.to_string(),
            ..Default::default()
        });
        request.set_timeout(TRY_TIMEOUT);
        let sent = Instant::now();
        match timeout(TRY_TIMEOUT, client.create_task(request)).await {
            Ok(Ok(response)) => {
                response.into_inner().task.context("a created task")?;
                return Ok(());
            }
            Ok(Err(status)) => last_error = format!("{:?}: {}", status.code(), status.message()),
            Err(_) => last_error = "timed out".into(),
        }
        sleep_until(sent + MIN_TRY_SPACING).await;
    }
}
