//! A node joining a cluster that holds a big state: catch-up by snapshot,
//! bounded memory, and a far-behind voter that must not storm elections.

use std::time::Duration;

use taskd::cluster::join::JoinAs;
use taskd::proto;
use taskd::raft::SnapshotTuning;
use taskd::store::Backend;

use crate::support::{eventually, eventually_within, TestCluster};

/// The resident-set peak of this process, in KiB, since the last reset.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// A 4th node joins a cluster holding a big state (`TASKD_BIG_JOIN_TASKS`,
/// default 100,000 tasks, log compacted every 1,000 entries): it catches
/// up by snapshot, streamed in 1 MiB chunks from a file on each side, and
/// its tasks and request ids equal the others'. The peak memory growth of
/// this process (sender and receiver both live in it) is printed.
///
/// Node 3, a voter, is down while the state is written and comes back far
/// behind: it catches up by snapshot too. (Before snapshot receivers held
/// back their elections it never did: installing a state this big outlasts
/// the leader lease, and its candidacies deposed the leader again and again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_a_big_cluster_by_snapshot() {
    let tasks: usize = std::env::var("TASKD_BIG_JOIN_TASKS")
        .map(|v| v.parse().expect("TASKD_BIG_JOIN_TASKS: a number"))
        .unwrap_or(100_000);
    let snapshots = SnapshotTuning {
        every: 1_000,
        keep_logs: 100,
        ..SnapshotTuning::default()
    };
    let mut cluster = TestCluster::start_with(3, Backend::Sqlite, snapshots).await;
    cluster.stop_node(3).await;
    let started = std::time::Instant::now();
    let mut acked = crate::snapshot::create_many(&cluster, 1, tasks, 128).await;
    let written = started.elapsed();
    let leader = cluster.wait_for_leader().await;
    eventually("the leader compacted its log", || async {
        (cluster.status(leader).await?.last_purged_index > 0).then_some(())
    })
    .await;

    let restarted = std::time::Instant::now();
    cluster.restart_node(3).await;
    let patience = Duration::from_secs(60 + tasks as u64 / 1000);
    eventually_within(patience, "the lagging voter caught up", || async {
        let log = cluster.status(leader).await?.last_log_index;
        let applied = cluster.status(3).await?.last_applied_index;
        (applied >= log).then_some(())
    })
    .await;
    eprintln!(
        "node 3 (a voter far behind) caught up in {:.1?}",
        restarted.elapsed()
    );

    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let before = peak_rss_kib();
    let started = std::time::Instant::now();
    cluster.join_node(4, JoinAs::Learner).await;
    let added = cluster
        .raft_client(1)
        .await
        .add_learner(proto::AddLearnerRequest {
            node_id: 4,
            address: cluster.addr(4).to_string(),
            wait_timeout: Some(prost_types::Duration {
                seconds: 60 + tasks as i64 / 1000,
                nanos: 0,
            }),
        })
        .await
        .expect("add learner")
        .into_inner();
    assert!(added.caught_up, "node 4 caught up: {added:?}");
    let caught_up = started.elapsed();
    let growth_mib = (peak_rss_kib().saturating_sub(before)) as f64 / 1024.0;
    let status = cluster.status(4).await.expect("status");
    assert!(
        status.last_purged_index > 0,
        "node 4 installed a snapshot: {status:?}"
    );
    cluster.wait_converged().await;
    let snapshot_bytes: u64 = std::fs::read_dir(cluster.data_dir(leader).join("snapshots"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    eprintln!(
        "{tasks} tasks written in {written:.1?}; snapshot {:.1} MB; node 4 joined and caught up \
         by snapshot in {caught_up:.1?}; peak RSS growth of the process meanwhile \
         {growth_mib:.1} MiB",
        snapshot_bytes as f64 / 1e6
    );

    let mut dumps = Vec::new();
    for node in [1, 3, 4] {
        let store = cluster.open_store(node).await;
        let dump = store.export().await.expect("export");
        dumps.push((dump.tasks, dump.request_ids));
        store.close().await;
    }
    acked.sort();
    let ids: Vec<&String> = dumps[0].0.iter().map(|t| &t.id).collect();
    assert_eq!(
        ids,
        acked.iter().collect::<Vec<_>>(),
        "every acknowledged task"
    );
    assert!(dumps[0] == dumps[1], "node 3's state equals node 1's");
    assert!(dumps[0] == dumps[2], "node 4's state equals node 1's");
    cluster.shutdown().await;
}
