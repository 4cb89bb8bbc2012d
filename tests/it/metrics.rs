//! `--metrics-listen` on real `taskd serve` processes: `/metrics` moves with
//! traffic, `/readyz` follows the node's gRPC health, `/healthz` stays up;
//! and a healthy start logs no warnings.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::bytes::Bytes;
use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::CreateTaskRequest;

use crate::process::{
    channel, free_port_run, free_ports, spawn_node_with, wait_for_leader, wait_serving,
    TaskdProcess,
};
use crate::support::{eventually, init_tracing};

/// GET `http://{addr}{path}`: the status and the body, or `None` when the
/// server does not answer (within 5 s).
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().expect("uri");
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `/metrics` of `addr`, which must answer 200.
async fn scrape(addr: &str) -> String {
    let (status, body) =
        eventually(&format!("{addr}/metrics"), || http_get(addr, "/metrics")).await;
    assert_eq!(status, 200, "{addr}/metrics: {body}");
    body
}

/// The value of the first sample of `name` whose labels include `labels`
/// (0 when there is none yet: a counter not yet incremented).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            let (series_name, label_set) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| label_set.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse().expect("a sample's value"))
        .unwrap_or(0.0)
}

const CREATE: &str = "/taskd.v1.TaskService/CreateTask";

async fn create(addr: &str, n: usize, prefix: &str) {
    let mut client = TaskServiceClient::new(channel(addr));
    for i in 0..n {
        client
            .create_task(CreateTaskRequest {
                title: format!("{prefix} {i}"),
                request_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("CreateTask through {addr}: {s:?}"));
    }
}

/// On a 3-node cluster of real processes with `--metrics-listen`: creates
/// move the leader's `taskd_grpc_requests_total{method=CreateTask,code=OK}`
/// by exactly their number, its `taskd_proposal_batch_size` count and every
/// node's `taskd_raft_applied_index` by at least as much, and creates through a
/// follower count as forwarded there. `/readyz` is 200 while a node is
/// SERVING; once the other two are killed the survivor loses its leader
/// and `/readyz` turns 503, while `/healthz` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_readyz_follows_health() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(6);
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
        .collect();
    let http: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize + 2])))
        .collect();
    let mut nodes: BTreeMap<u64, TaskdProcess> = members
        .keys()
        .map(|&id| {
            let extra = ["--metrics-listen".to_string(), http[&id].clone()];
            (id, spawn_node_with(dir.path(), id, &members, &extra))
        })
        .collect();
    for addr in members.values() {
        wait_serving(addr).await;
    }
    let leader = wait_for_leader(&members).await;
    let follower = *members.keys().find(|&&id| id != leader).unwrap();
    for (id, addr) in &http {
        eventually(&format!("node {id} /readyz 200"), || async {
            (http_get(addr, "/readyz").await?.0 == 200).then_some(())
        })
        .await;
    }

    let node = |id: u64| id.to_string();
    let before = scrape(&http[&leader]).await;
    let creates_ok = |text: &str| {
        sample(
            text,
            "taskd_grpc_requests_total",
            &[("node", &node(leader)), ("method", CREATE), ("code", "OK")],
        )
    };
    let batches = |text: &str| {
        sample(
            text,
            "taskd_proposal_batch_size_count",
            &[("node", &node(leader))],
        )
    };
    let mut applied_before = BTreeMap::new();
    for (id, addr) in &http {
        let text = scrape(addr).await;
        applied_before.insert(
            *id,
            sample(&text, "taskd_raft_applied_index", &[("node", &node(*id))]),
        );
    }

    const N: usize = 5;
    create(&members[&leader], N, "measured").await;
    let after = scrape(&http[&leader]).await;
    assert_eq!(
        creates_ok(&after),
        creates_ok(&before) + N as f64,
        "CreateTask OK count on the leader:\n{after}"
    );
    assert!(
        batches(&after) >= batches(&before) + N as f64,
        "proposed entries on the leader:\n{after}"
    );
    assert_eq!(
        sample(&after, "taskd_raft_is_leader", &[("node", &node(leader))]),
        1.0
    );
    assert!(sample(&after, "taskd_raft_term", &[("node", &node(leader))]) >= 1.0);
    assert!(
        sample(
            &after,
            "taskd_grpc_request_duration_seconds_count",
            &[("node", &node(leader)), ("method", CREATE)],
        ) >= N as f64,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "taskd_db_pool_connections",
            &[("node", &node(leader)), ("state", "idle")],
        ) + sample(
            &after,
            "taskd_db_pool_connections",
            &[("node", &node(leader)), ("state", "in_use")],
        ) >= 1.0,
        "{after}"
    );
    // Health checks are calls too.
    assert!(
        sample(
            &after,
            "taskd_grpc_requests_total",
            &[("method", "/grpc.health.v1.Health/Check"), ("code", "OK")],
        ) >= 1.0,
        "{after}"
    );
    for (id, addr) in &http {
        let want = applied_before[id] + N as f64;
        eventually(&format!("node {id} applied index >= {want}"), || async {
            let text = scrape(addr).await;
            let applied = sample(&text, "taskd_raft_applied_index", &[("node", &node(*id))]);
            let committed = sample(&text, "taskd_raft_commit_index", &[("node", &node(*id))]);
            (applied >= want && committed >= applied).then_some(())
        })
        .await;
    }

    // Through a follower: forwarded to the leader, counted as such.
    let forwarded = |text: &str| {
        sample(
            text,
            "taskd_forwarded_requests_total",
            &[("node", &node(follower)), ("service", "TaskService")],
        )
    };
    let before = scrape(&http[&follower]).await;
    create(&members[&follower], 2, "forwarded").await;
    let after = scrape(&http[&follower]).await;
    assert!(
        forwarded(&after) >= forwarded(&before) + 2.0,
        "forwarded calls on node {follower}:\n{after}"
    );
    assert_eq!(
        sample(&after, "taskd_raft_is_leader", &[("node", &node(follower))]),
        0.0
    );

    // The follower alone: no leader, NOT_SERVING, /readyz 503; alive all along.
    for (id, process) in nodes.iter_mut() {
        if *id != follower {
            process.kill_9();
        }
    }
    let survivor = &http[&follower];
    eventually(&format!("node {follower} /readyz 503"), || async {
        (http_get(survivor, "/readyz").await?.0 == 503).then_some(())
    })
    .await;
    let (status, _) = http_get(survivor, "/healthz")
        .await
        .expect("/healthz answers");
    assert_eq!(status, 200, "/healthz of a node without a leader");
    let text = scrape(survivor).await;
    assert_eq!(
        sample(&text, "taskd_raft_is_leader", &[("node", &node(follower))]),
        0.0
    );
}

/// openraft gives an AppendEntries one heartbeat (50 ms) and logs WARN and
/// ERROR lines (replication, progress) when it takes longer: a real signal in production, but what a
/// busy test machine (two cores shared by builds) makes of any start.
fn slow_machine(entry: &serde_json::Value) -> bool {
    entry["target"]
        .as_str()
        .is_some_and(|t| t.starts_with("openraft::"))
        && entry["fields"]
            .to_string()
            .to_lowercase()
            .contains("timeout")
}

/// A healthy start logs no WARN or ERROR line: `taskd dev` (three nodes in
/// one process, JSON logs through the global `--log-format` flag given
/// before the subcommand) until every node serves and a write went through.
/// openraft's benign "message will be ignored because vote changed", which
/// every election used to print, stays quiet (see `taskd::logging`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_start_logs_no_warnings() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_port_run(3);
    let args: Vec<String> = [
        "--log-format",
        "json",
        "dev",
        "--base-port",
        &base.to_string(),
        "--data-dir",
        &dir.path().join("data").display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let dev = TaskdProcess::spawn(
        "taskd dev",
        &args,
        &dir.path().join("dev.stderr"),
        Stdio::null(),
    );
    let addrs: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", base + id as u16 - 1)))
        .collect();
    for addr in addrs.values() {
        wait_serving(addr).await;
    }
    wait_for_leader(&addrs).await;
    create(&addrs[&2], 1, "quiet").await;

    let stderr = dev.stderr();
    let mut lines = 0;
    for line in stderr.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        let level = entry["level"].as_str().expect("a level");
        assert!(
            !matches!(level, "WARN" | "ERROR") || slow_machine(&entry),
            "a healthy start logged: {line}"
        );
        lines += 1;
    }
    assert!(lines > 0, "taskd dev logged nothing at all");
    assert!(
        stderr.contains(r#""span":{"node":1"#),
        "log lines carry their node: {stderr}"
    );
}
