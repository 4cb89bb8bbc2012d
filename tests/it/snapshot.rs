//! Log compaction: a follower that missed more than the leader kept in its
//! log catches up through InstallSnapshot, and ends identical.

use taskd::raft::SnapshotTuning;
use taskd::store::Backend;

use crate::support::{create_n, eventually, eventually_within, TestCluster};

async fn catch_up_from_snapshot(backend: Backend) {
    let snapshots = SnapshotTuning {
        every: 20,
        keep_logs: 0,
        ..Default::default()
    };
    let mut cluster = TestCluster::start_with(3, backend, snapshots).await;
    let leader = cluster.wait_for_leader().await;
    let lagging = cluster.follower().await;
    cluster.stop_node(lagging).await;
    let acked = create_n(&cluster, leader, "while away", 100).await;
    // The leader has compacted its log past what the stopped node has.
    eventually("the leader purged its log", || async {
        (cluster.status(leader).await?.last_purged_index > 10).then_some(())
    })
    .await;

    cluster.restart_node(lagging).await;
    cluster.wait_converged().await;
    let status = cluster.status(lagging).await.expect("status");
    assert!(
        status.last_purged_index > 0,
        "the lagging node holds a snapshot: {status:?}"
    );

    let mut dumps = Vec::new();
    for node in cluster.running_ids() {
        let store = cluster.open_store(node).await;
        dumps.push((node, store.export().await.expect("export").tasks));
        store.close().await;
    }
    let ids: Vec<&String> = dumps[0].1.iter().map(|t| &t.id).collect();
    assert_eq!(
        ids,
        acked.iter().collect::<Vec<_>>(),
        "every acknowledged task, in order"
    );
    for (node, tasks) in &dumps[1..] {
        assert_eq!(
            tasks, &dumps[0].1,
            "node {node} differs from node {}",
            dumps[0].0
        );
    }
    cluster.shutdown().await;
}

/// On SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_from_snapshot_sqlite() {
    catch_up_from_snapshot(Backend::Sqlite).await;
}

/// On MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_from_snapshot_mysql() {
    catch_up_from_snapshot(Backend::Mysql).await;
}

/// `InstallSnapshot` never trusts the chunk offset from the network: after a
/// first chunk at offset 0 (under the current leader's vote, so openraft
/// takes it and starts receiving), a second one that claims to sit a
/// terabyte into the same snapshot is refused with INVALID_ARGUMENT instead
/// of sizing a terabyte buffer, and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_snapshot_refuses_an_offset_past_the_maximum() {
    use openraft::raft::InstallSnapshotRequest;
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, Vote};
    use taskd::raft::{codec, TypeConfig};

    let cluster = TestCluster::start(3, Backend::Sqlite).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower().await;
    let status = cluster.status(follower).await.expect("status");
    let mut chunk = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(status.term, leader),
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(
                CommittedLeaderId::new(status.term, leader),
                status.last_log_index + 1_000,
            )),
            last_membership: Default::default(),
            snapshot_id: "forged".into(),
        },
        offset: 0,
        data: vec![7; 16],
        done: false,
    };
    let payload = codec::encode(&chunk).expect("encode");
    cluster
        .raft_client(follower)
        .await
        .install_snapshot(taskd::proto::InstallSnapshotRequest { payload })
        .await
        .expect("the first chunk of a snapshot");
    chunk.offset = 1 << 40;
    let payload = codec::encode(&chunk).expect("encode");
    let refused = cluster
        .raft_client(follower)
        .await
        .install_snapshot(taskd::proto::InstallSnapshotRequest { payload })
        .await
        .expect_err("a chunk a terabyte into the snapshot");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("--max-snapshot-bytes"),
        "the message names the limit: {refused:?}"
    );
    create_n(&cluster, follower, "after the forged chunk", 3).await;
    cluster.shutdown().await;
}

/// Creates `n` tasks through `node`, `parallel` calls at a time (so the
/// proposer batches them); every acknowledged id.
pub(crate) async fn create_many(
    cluster: &TestCluster,
    node: u64,
    n: usize,
    parallel: usize,
) -> Vec<String> {
    use futures::StreamExt;
    let client = cluster.client(node).await;
    futures::stream::iter(0..n)
        .map(|i| {
            let mut client = client.clone();
            async move {
                let mut request = crate::support::create_request(&format!("big state {i}"));
                request.description = "d".repeat(100);
                client
                    .create_task(request)
                    .await
                    .expect("create")
                    .into_inner()
                    .task
                    .expect("task")
                    .id
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await
}

/// A follower stopped while a big state is written (`TASKD_SNAPSHOT_LAG_TASKS`,
/// default 20000 tasks, with a snapshot every 200 entries) comes back to
/// a leader that purged its log far past it, catches up by one snapshot
/// (sent in 1 MiB chunks), and its tasks and request ids equal the others'.
async fn big_state_catch_up(backend: Backend) {
    let tasks: usize = std::env::var("TASKD_SNAPSHOT_LAG_TASKS")
        .map(|v| v.parse().expect("TASKD_SNAPSHOT_LAG_TASKS: a number"))
        .unwrap_or(20_000);
    let snapshots = SnapshotTuning {
        every: 200,
        keep_logs: 50,
        ..Default::default()
    };
    let mut cluster = TestCluster::start_with(3, backend, snapshots).await;
    let leader = cluster.wait_for_leader().await;
    let lagging = cluster.follower().await;
    cluster.stop_node(lagging).await;
    let started = std::time::Instant::now();
    let mut acked = create_many(&cluster, leader, tasks, 64).await;
    let written = started.elapsed();
    let now = cluster.status(leader).await.expect("status").last_log_index;
    eventually(
        "the leader compacted past its last entry of now",
        || async {
            (cluster.status(leader).await?.last_purged_index >= now.saturating_sub(200))
                .then_some(())
        },
    )
    .await;

    let started = std::time::Instant::now();
    cluster.restart_node(lagging).await;
    // A big state takes longer than `eventually`'s deadline to install in
    // a debug build: wait up to a second per 1000 tasks more.
    let patience = std::time::Duration::from_secs(30 + tasks as u64 / 1000);
    eventually_within(patience, "the lagging node caught up", || async {
        let log = cluster.status(leader).await?.last_log_index;
        let applied = cluster.status(lagging).await?.last_applied_index;
        (applied >= log).then_some(())
    })
    .await;
    cluster.wait_converged().await;
    let caught_up = started.elapsed();
    let status = cluster.status(lagging).await.expect("status");
    assert!(
        status.last_purged_index > 0,
        "the lagging node installed a snapshot: {status:?}"
    );
    eprintln!(
        "{tasks} tasks ({backend:?}): written in {written:.1?}, the lagging node caught up in \
         {caught_up:.1?}"
    );

    let mut dumps = Vec::new();
    for node in cluster.running_ids() {
        let store = cluster.open_store(node).await;
        let dump = store.export().await.expect("export");
        dumps.push((node, dump.tasks, dump.request_ids));
        store.close().await;
    }
    acked.sort();
    let ids: Vec<&String> = dumps[0].1.iter().map(|t| &t.id).collect();
    assert_eq!(
        ids,
        acked.iter().collect::<Vec<_>>(),
        "every acknowledged task"
    );
    for (node, tasks, request_ids) in &dumps[1..] {
        assert!(
            (tasks, request_ids) == (&dumps[0].1, &dumps[0].2),
            "node {node} differs from node {}",
            dumps[0].0
        );
    }
    cluster.shutdown().await;
}

/// On SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_on_a_big_state_sqlite() {
    big_state_catch_up(Backend::Sqlite).await;
}

/// On MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_on_a_big_state_mysql() {
    big_state_catch_up(Backend::Mysql).await;
}
