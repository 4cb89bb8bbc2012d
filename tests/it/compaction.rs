//! Log compaction: snapshots every `--snapshot-every` entries bound the
//! `raft_log` table, and a node restarted after compaction recovers from
//! its snapshot (its state tables) plus the log tail.

use taskd::raft::SnapshotTuning;
use taskd::store::Backend;

use crate::support::{create_n, eventually, TestCluster};

const EVERY: u64 = 20;
const KEEP: u64 = 5;

/// The rows of node `id`'s `raft_log` table.
async fn log_rows(cluster: &TestCluster, id: u64) -> usize {
    let store = cluster.open_store(id).await;
    let rows = store.read_log(0, u64::MAX).await.expect("read log").len();
    store.close().await;
    rows
}

/// Waits until every running node's log holds at most the trailing window
/// plus the entries since its last snapshot plus what it has not applied.
async fn wait_log_bounded(cluster: &TestCluster) {
    for id in cluster.running_ids() {
        eventually("the log is compacted to the trailing window", || async {
            let status = cluster.status(id).await?;
            let unapplied = status.last_log_index - status.last_applied_index;
            let rows = log_rows(cluster, id).await as u64;
            (status.last_purged_index > 0 && rows <= KEEP + EVERY + unapplied).then_some(())
        })
        .await;
    }
}

async fn compaction(backend: Backend) {
    let snapshots = SnapshotTuning {
        every: EVERY,
        keep_logs: KEEP,
        ..Default::default()
    };
    let mut cluster = TestCluster::start_with(3, backend, snapshots).await;
    let leader = cluster.wait_for_leader().await;
    // Sequential creates: one entry each, so 3 × EVERY entries at least.
    let mut acked = create_n(&cluster, leader, "first", 3 * EVERY as usize).await;
    cluster.wait_converged().await;
    wait_log_bounded(&cluster).await;

    // A follower stops, more is written, it restarts: its state tables are
    // its snapshot, the leader's log covers its tail (KEEP is enough for the
    // few entries written meanwhile only if it catches up by log; either
    // way it must end identical).
    let follower = cluster.follower().await;
    cluster.stop_node(follower).await;
    acked.extend(create_n(&cluster, leader, "while away", 3).await);
    cluster.restart_node(follower).await;
    acked.extend(create_n(&cluster, leader, "after", EVERY as usize).await);
    cluster.wait_converged().await;
    wait_log_bounded(&cluster).await;

    let mut tasks = Vec::new();
    for id in cluster.running_ids() {
        let store = cluster.open_store(id).await;
        tasks.push(store.export().await.expect("export").tasks);
        store.close().await;
    }
    let ids: Vec<&String> = tasks[0].iter().map(|t| &t.id).collect();
    let mut expected: Vec<&String> = acked.iter().collect();
    expected.sort();
    assert_eq!(ids, expected, "every acknowledged task, once");
    assert!(tasks.iter().all(|t| *t == tasks[0]), "the nodes differ");
    cluster.shutdown().await;
}

/// After 3 × `--snapshot-every` writes, every node's `raft_log` holds at
/// most `--snapshot-keep-logs` + the entries since its last snapshot +
/// what it has not applied; a follower restarted after compaction comes
/// back with every task and the log stays bounded (SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_bounds_the_log_sqlite() {
    compaction(Backend::Sqlite).await;
}

/// The same on MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_bounds_the_log_mysql() {
    compaction(Backend::Mysql).await;
}
