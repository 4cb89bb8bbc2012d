//! Crash-point tests: a real `taskd serve` process aborts (SIGABRT) at a
//! named failpoint on a durability boundary (`src/failpoint.rs`), is
//! restarted without it, and must converge: the same applied index and the
//! same tasks as the others, every acknowledged create exactly once.
//! Needs `--features taskd/failpoints` (scripts/test.sh passes it).

mod harness;

use std::collections::BTreeMap;

use taskd::failpoint as fp;
use taskd::store::Backend;

use harness::{Cluster, Writers};

/// Snapshots after 30 entries, no log kept behind them: a follower that
/// was away a little must install a snapshot.
const SMALL_SNAPSHOTS: &[&str] = &["--snapshot-every", "30", "--snapshot-keep-logs", "0"];

/// Node `victim` carries `spec` from its start while eight writers create
/// tasks (with `description_bytes` each) on every node; once it aborted,
/// the others keep acknowledging, it restarts without failpoints, and the
/// cluster converges. (Node 1 initializes the cluster: until its first
/// entry is replicated, the others cannot go on without it.)
async fn crash_under_writes(
    backend: Backend,
    victim: u64,
    spec: &str,
    extra: &[&str],
    description_bytes: usize,
) {
    crate::support::init_tracing();
    let failpoints = BTreeMap::from([(victim, spec.to_string())]);
    let mut cluster = Cluster::start(backend, extra, &failpoints);
    let writers = Writers::start(
        cluster.members.values().cloned().collect(),
        8,
        description_bytes,
    );
    cluster.wait_aborted(victim).await;
    writers.wait_more(50).await;
    cluster.spawn(victim, None);
    writers.wait_more(50).await;
    let outcomes = writers.stop().await;
    cluster.check_converged(&outcomes).await;
    cluster.remove().await;
}

/// A follower away long enough that the leader compacted past it comes back
/// with `spec`, aborts while catching up from the leader's snapshot, and
/// restarts without failpoints; writes go on throughout.
async fn crash_while_installing(backend: Backend, spec: &str) {
    crate::support::init_tracing();
    let mut cluster = Cluster::start(backend, SMALL_SNAPSHOTS, &BTreeMap::new());
    let leader = cluster.leader().await;
    let lagging = *cluster
        .members
        .keys()
        .find(|id| **id != leader)
        .expect("follower");
    cluster.kill(lagging);
    let alive = cluster
        .members
        .iter()
        .filter(|(id, _)| **id != lagging)
        .map(|(_, a)| a.clone())
        .collect();
    // 300 × 4 KiB: a snapshot of more than one 1 MiB chunk.
    let writers = Writers::start(alive, 8, 4096);
    writers.wait_more(300).await;
    wait_purged_past_now(&cluster.members[&leader]).await;
    cluster.spawn(lagging, Some(spec));
    cluster.wait_aborted(lagging).await;
    writers.wait_more(30).await;
    cluster.spawn(lagging, None);
    writers.wait_more(30).await;
    let outcomes = writers.stop().await;
    cluster.check_converged(&outcomes).await;
    cluster.remove().await;
}

/// Waits until the leader at `addr` compacted its log past its last entry
/// of now: its snapshot then holds everything acknowledged so far.
async fn wait_purged_past_now(addr: &str) {
    let status = crate::process::cluster_status(addr).await.expect("status");
    let now = status.last_log_index;
    crate::support::eventually("the leader purged its log behind a snapshot", || async {
        let status = crate::process::cluster_status(addr).await?;
        (status.last_purged_index >= now).then_some(())
    })
    .await;
}

/// Aborts at the hit after `after` passing hits.
fn abort_at(name: &str, after: usize) -> String {
    match after {
        0 => format!("{name}=return"),
        n => format!("{name}={n}*off->return"),
    }
}

/// After a group of log appends committed, before openraft heard of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_log_append_commits_sqlite() {
    crash_under_writes(
        Backend::Sqlite,
        1,
        &abort_at(fp::LOG_APPEND_COMMITTED, 40),
        &[],
        16,
    )
    .await;
}

/// The same on MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_log_append_commits_mysql() {
    crash_under_writes(
        Backend::Mysql,
        1,
        &abort_at(fp::LOG_APPEND_COMMITTED, 40),
        &[],
        16,
    )
    .await;
}

/// Inside the apply transaction, before its COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_before_apply_commits_sqlite() {
    crash_under_writes(
        Backend::Sqlite,
        1,
        &abort_at(fp::APPLY_BEFORE_COMMIT, 40),
        &[],
        16,
    )
    .await;
}

/// The same on MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_before_apply_commits_mysql() {
    crash_under_writes(
        Backend::Mysql,
        1,
        &abort_at(fp::APPLY_BEFORE_COMMIT, 40),
        &[],
        16,
    )
    .await;
}

/// Before the vote is written (node 2's first: granting the first election).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_before_save_vote_sqlite() {
    crash_under_writes(
        Backend::Sqlite,
        2,
        &abort_at(fp::SAVE_VOTE_BEFORE, 0),
        &[],
        16,
    )
    .await;
}

/// After the vote is durable, before `save_vote` returns (node 2's first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_save_vote_sqlite() {
    crash_under_writes(
        Backend::Sqlite,
        2,
        &abort_at(fp::SAVE_VOTE_AFTER, 0),
        &[],
        16,
    )
    .await;
}

/// Between two stored chunks of a snapshot node 1 built itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_between_stored_snapshot_chunks_sqlite() {
    let spec = abort_at(fp::SNAPSHOT_CHUNK_STORED, 0);
    crash_under_writes(Backend::Sqlite, 1, &spec, SMALL_SNAPSHOTS, 4096).await;
}

/// Between two received chunks of a snapshot being installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_between_received_snapshot_chunks_sqlite() {
    crash_while_installing(Backend::Sqlite, &abort_at(fp::SNAPSHOT_CHUNK_RECEIVED, 0)).await;
}

/// Before an installed snapshot's import commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_before_snapshot_import_commits_sqlite() {
    crash_while_installing(Backend::Sqlite, &abort_at(fp::SNAPSHOT_IMPORT, 0)).await;
}

/// Inside the import's one transaction, after a batch of the snapshot's
/// records was written and before the COMMIT: the old state must be what
/// the node restarts with, and it then installs the snapshot again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_between_imported_snapshot_batches_sqlite() {
    crash_while_installing(Backend::Sqlite, &abort_at(fp::SNAPSHOT_IMPORT_BATCH, 0)).await;
}

/// The same on MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_between_imported_snapshot_batches_mysql() {
    crash_while_installing(Backend::Mysql, &abort_at(fp::SNAPSHOT_IMPORT_BATCH, 0)).await;
}

/// Issue 7.1: openraft purges the log right after handing the snapshot to
/// the state machine. With the import held back, the node aborts right
/// after that purge: it must not have recorded a purge past what it
/// installed, or it could never re-apply its log again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_purge_before_snapshot_import_sqlite() {
    let spec = format!(
        "{}=sleep(2000);{}",
        fp::SNAPSHOT_IMPORT,
        abort_at(fp::PURGE_COMMITTED, 0)
    );
    crash_while_installing(Backend::Sqlite, &spec).await;
}

/// The same on MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_purge_before_snapshot_import_mysql() {
    let spec = format!(
        "{}=sleep(2000);{}",
        fp::SNAPSHOT_IMPORT,
        abort_at(fp::PURGE_COMMITTED, 0)
    );
    crash_while_installing(Backend::Mysql, &spec).await;
}

/// Between two sent chunks of a snapshot: every node may abort there; the
/// follower that was away comes back without it. The leader aborts sending
/// it the snapshot, so does the next leader; both restart without
/// failpoints, and the follower installs the snapshot in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_between_sent_snapshot_chunks_sqlite() {
    crate::support::init_tracing();
    let spec = abort_at(fp::SNAPSHOT_CHUNK_SEND, 0);
    let failpoints = (1..=3).map(|id| (id, spec.clone())).collect();
    let mut cluster = Cluster::start(Backend::Sqlite, SMALL_SNAPSHOTS, &failpoints);
    let leader = cluster.leader().await;
    let ids: Vec<u64> = cluster.members.keys().copied().collect();
    let lagging = *ids.iter().find(|id| **id != leader).expect("follower");
    let other = *ids
        .iter()
        .find(|id| ![leader, lagging].contains(id))
        .expect("third");
    cluster.kill(lagging);
    // 300 × 4 KiB: a snapshot of more than one 1 MiB chunk.
    let writers = Writers::start(cluster.members.values().cloned().collect(), 8, 4096);
    writers.wait_more(300).await;
    wait_purged_past_now(&cluster.members[&leader]).await;
    cluster.spawn(lagging, None);
    cluster.wait_aborted(leader).await;
    cluster.wait_aborted(other).await;
    cluster.spawn(leader, None);
    cluster.spawn(other, None);
    writers.wait_more(30).await;
    let outcomes = writers.stop().await;
    cluster.check_converged(&outcomes).await;
    cluster.remove().await;
}

/// Issue 7.9: storing a big snapshot must not hold the database's one
/// SQLite write connection, or the leader can neither append nor apply.
/// Every node stops for a minute (longer than any wait here) between two
/// stored chunks of its first snapshot of more than one chunk; once the
/// leader is there, writes must still be acknowledged, under the same
/// leader and term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_a_big_snapshot_keeps_appends_and_the_leader() {
    crate::support::init_tracing();
    let spec = format!("{}=1*sleep(60000)", fp::SNAPSHOT_CHUNK_STORED);
    let failpoints = (1..=3).map(|id| (id, spec.clone())).collect();
    let extra = ["--snapshot-every", "40", "--snapshot-keep-logs", "0"];
    let cluster = Cluster::start(Backend::Sqlite, &extra, &failpoints);
    let leader = cluster.leader().await;
    let leader_addr = cluster.members[&leader].clone();
    let before = crate::process::cluster_status(&leader_addr)
        .await
        .expect("status");
    // 4 KiB tasks: after about 250 the snapshots have more than one chunk.
    let writers = Writers::start(cluster.members.values().cloned().collect(), 8, 4096);
    cluster
        .wait_reached(leader, fp::SNAPSHOT_CHUNK_STORED)
        .await;
    writers.wait_more(100).await;
    let after = crate::process::cluster_status(&leader_addr)
        .await
        .expect("status");
    assert_eq!(
        (after.leader_id, after.term),
        (leader, before.term),
        "leadership changed while a snapshot was stored"
    );
    let outcomes = writers.stop().await;
    cluster.check_converged(&outcomes).await;
    cluster.remove().await;
}
