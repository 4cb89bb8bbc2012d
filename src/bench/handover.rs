//! `--workload transfer` and `--workload stop-leader`: how long clients see
//! no leader when leadership moves on purpose.
//!
//! Each round starts one sequential writer (CreateTask to the nodes in
//! turn, 100 ms per try, the next try at once) and, once writes flow, moves
//! leadership: `transfer` asks the leader for `TransferLeadership` to the
//! most up-to-date voter; `stop-leader` sends the leader SIGTERM (it hands
//! over before it stops) and restarts it after. The round's number is the
//! longest wait between two acknowledged writes from the move until the
//! writes flow again under a new leader: what a client sees of the move.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use tokio::time::{timeout, Instant};
use tonic::transport::Channel;

use super::cluster::LocalCluster;
use super::failover::{agreed_leader, converged, leader_agreed_by};
use super::load::{run_tag, PADDING};
use super::report::FailoverReport;
use super::Workload;
use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::task_service_client::TaskServiceClient;
use crate::proto::{CreateTaskRequest, TransferLeadershipRequest};

/// The deadline of one write try.
const TRY_TIMEOUT: Duration = Duration::from_millis(100);
/// How long writes may take to flow again after a move.
const PATIENCE: Duration = Duration::from_secs(30);
/// Acknowledged writes before the move, and after the new leader is known.
const WRITES_AROUND: usize = 20;

/// The acknowledgement times of one writer, and its failed tries.
#[derive(Default)]
struct Acks {
    times: Mutex<Vec<Instant>>,
    failed: AtomicUsize,
    stop: AtomicBool,
}

impl Acks {
    fn count(&self) -> usize {
        self.times.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The longest gap between acknowledgements from `since` on (the last
    /// acknowledgement before `since` opens the first gap).
    fn longest_gap(&self, since: Instant) -> Duration {
        let times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        let first = times.iter().rposition(|t| *t < since).unwrap_or(0);
        times[first..]
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

async fn write_until_stopped(nodes: Vec<Channel>, tag: String, acks: Arc<Acks>) {
    let mut turn = 0usize;
    while !acks.stop.load(Ordering::Relaxed) {
        let mut client = TaskServiceClient::new(nodes[turn % nodes.len()].clone());
        turn += 1;
        let mut request = tonic::Request::new(CreateTaskRequest {
            title: format!("{tag} {turn}"),
            description: PADDING.to_string(),
            request_id: format!("{tag}-{turn}"),
            ..Default::default()
        });
        request.set_timeout(TRY_TIMEOUT);
        match timeout(TRY_TIMEOUT, client.create_task(request)).await {
            Ok(Ok(_)) => acks
                .times
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Instant::now()),
            _ => {
                acks.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

async fn wait_acks(acks: &Acks, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while acks.count() < n {
        if Instant::now() >= deadline {
            bail!(
                "writes did not flow: {} acknowledged in {PATIENCE:?}",
                acks.count()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

pub async fn run(
    cluster: &mut LocalCluster,
    rounds: usize,
    workload: Workload,
) -> anyhow::Result<FailoverReport> {
    let tag = run_tag();
    let mut gaps_ms = Vec::with_capacity(rounds);
    let mut failed_tries = 0;
    for round in 1..=rounds {
        let leader = agreed_leader(cluster).await?;
        let nodes: Vec<Channel> = cluster
            .channels()
            .into_iter()
            .filter(|(id, _)| workload == Workload::Transfer || *id != leader)
            .map(|(_, channel)| channel)
            .collect();
        let acks = Arc::new(Acks::default());
        let writer = tokio::spawn(write_until_stopped(
            nodes,
            format!("handover {tag}-{round}"),
            acks.clone(),
        ));
        wait_acks(&acks, WRITES_AROUND).await?;
        let moved_at = Instant::now();
        match workload {
            Workload::Transfer => {
                let leader_channel = cluster
                    .channels()
                    .into_iter()
                    .find(|(id, _)| *id == leader)
                    .map(|(_, ch)| ch)
                    .expect("the leader's channel");
                RaftServiceClient::new(leader_channel)
                    .transfer_leadership(TransferLeadershipRequest { node_id: 0 })
                    .await?;
            }
            _ => cluster.terminate(leader).await?,
        }
        let before = acks.count();
        let new_leader = agreed_leader_except(cluster, leader, workload).await?;
        wait_acks(&acks, before + WRITES_AROUND).await?;
        acks.stop.store(true, Ordering::Relaxed);
        writer.await?;
        let gap = acks.longest_gap(moved_at);
        let ms = (gap.as_secs_f64() * 10_000.0).round() / 10.0;
        let failed = acks.failed.load(Ordering::Relaxed);
        failed_tries += failed;
        eprintln!(
            "bench: {} {round}/{rounds}: leader {leader} → {new_leader}; longest wait between acknowledged writes {ms} ms; {failed} failed tries",
            workload.name()
        );
        gaps_ms.push(ms);
        if workload == Workload::StopLeader {
            cluster.restart(leader).await?;
            cluster.wait_serving().await?;
        }
        converged(cluster).await?;
    }
    Ok(
        FailoverReport::new(cluster.len(), cluster.database(), gaps_ms)
            .for_workload(workload, failed_tries),
    )
}

/// The leader every running node names, once it is not `old`.
async fn agreed_leader_except(
    cluster: &LocalCluster,
    old: u64,
    workload: Workload,
) -> anyhow::Result<u64> {
    let running: Vec<Channel> = cluster
        .channels()
        .into_iter()
        .filter(|(id, _)| workload == Workload::Transfer || *id != old)
        .map(|(_, ch)| ch)
        .collect();
    leader_agreed_by(&running, Some(old), Duration::from_millis(5)).await
}
