//! Upgrades across formats (issue 8 §8): a cluster of the previous release
//! (`scripts/prev_release.sh`: the commit before the newest format change,
//! built once and cached under `target/prev-release/`) is upgraded node by
//! node to this build while writes flow; and a node that meets a format it
//! does not know refuses it and stops, on its log and on the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sqlx::{Connection, Row, SqliteConnection};
use taskd::proto::raft_service_client::RaftServiceClient;
use taskd::proto::AppendEntriesRequest;
use taskd::raft::codec::{self, Format};
use taskd::store::Backend;

use crate::proc_cluster::ProcessCluster;
use crate::process::{
    channel, cluster_status, create_acknowledged, free_ports, spawn_node, spawn_release_on,
    wait_for_leader, wait_serving, TASKD,
};
use crate::support::{eventually, init_tracing, mysql_server_url};
use crate::writers::{assert_every_node_consistent, stored_tasks, Via, Writers};

/// The previous release's `taskd`, built by `scripts/prev_release.sh` if
/// it is not cached yet (minutes, once; the script holds a lock, so
/// parallel tests wait for one build).
async fn previous_release() -> PathBuf {
    tokio::task::spawn_blocking(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/prev_release.sh");
        let output = std::process::Command::new(script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {script}: {e}"));
        assert!(
            output.status.success(),
            "{script} failed: {}",
            output.status
        );
        PathBuf::from(String::from_utf8(output.stdout).expect("a path").trim())
    })
    .await
    .expect("prev_release.sh")
}

/// Moves leadership to one of `wanted` (the other nodes) if it is not
/// there, so that the replication the test wants (old → new, new → old)
/// does happen: the leader is frozen (SIGSTOP) until they elect one of
/// theirs, then let go. (Restarting it would not do: a leader restarted at
/// once finds its own committed vote and leads on.)
async fn lead_from(cluster: &ProcessCluster, wanted: &[u64]) {
    let leader = cluster.leader().await;
    if wanted.contains(&leader) {
        return;
    }
    let others: BTreeMap<u64, String> = wanted
        .iter()
        .map(|id| (*id, cluster.members[id].clone()))
        .collect();
    cluster.pause(leader);
    wait_for_leader(&others).await;
    cluster.resume(leader);
    let now = cluster.leader().await;
    assert!(
        wanted.contains(&now),
        "node {now} leads, not one of {wanted:?}"
    );
}

/// Waits until node `id` has applied every entry the leader had a moment
/// ago, and the writers have had `more` further creates acknowledged.
async fn writes_flow_through(cluster: &ProcessCluster, writers: &Writers, id: u64, more: usize) {
    let leader = cluster.leader().await;
    let target = cluster_status(&cluster.members[&leader])
        .await
        .expect("leader status")
        .last_log_index;
    writers.wait_acked(writers.acked() + more).await;
    let addr = &cluster.members[&id];
    eventually(&format!("node {id} applied past {target}"), || async {
        (cluster_status(addr).await?.last_applied_index >= target).then_some(())
    })
    .await;
}

/// Three nodes of the previous release take writes; each is stopped with
/// SIGTERM and started again as this build on the same data, one by one,
/// while four writers keep creating tasks. On the way the leader is, in
/// turn, a previous-release node replicating to an upgraded one and an
/// upgraded node replicating to a previous-release one. In the end every
/// acknowledged write is on every node exactly once, the cluster takes new
/// writes, and the logs hold both the untagged rows the previous release
/// wrote (read by this build at its restarts) and this build's tagged rows.
async fn rolling_upgrade_loses_nothing(backend: Backend) {
    let previous = previous_release().await;
    let current = Path::new(TASKD);
    let mut cluster =
        ProcessCluster::start_release(&previous, 3, backend, &mysql_server_url()).await;
    let writers = Writers::start(
        "upgrade ",
        4,
        Via::Grpc {
            addrs: cluster.addrs(),
            request_ids: true,
        },
    );
    writers.wait_acked(30).await;

    // Node 1 upgraded, a previous-release leader replicates to it.
    cluster.replace(1, current).await;
    lead_from(&cluster, &[2, 3]).await;
    writes_flow_through(&cluster, &writers, 1, 30).await;

    // Node 2 upgraded, an upgraded leader replicates to previous-release node 3.
    cluster.replace(2, current).await;
    lead_from(&cluster, &[1, 2]).await;
    writes_flow_through(&cluster, &writers, 3, 30).await;

    // The last one.
    cluster.replace(3, current).await;
    writes_flow_through(&cluster, &writers, 3, 30).await;

    let seen = writers.stop().await;
    cluster.wait_all_applied().await;
    assert_every_node_consistent(&cluster.members, &seen.outcomes).await;

    let leader = cluster.leader().await;
    let id = create_acknowledged(&cluster.members[&leader], "after the upgrade").await;
    cluster.wait_all_applied().await;
    for addr in cluster.members.values() {
        let ids: BTreeSet<String> = stored_tasks(addr).await.into_iter().map(|t| t.1).collect();
        assert!(
            ids.contains(&id),
            "{addr} has the write made after the upgrade"
        );
    }

    if backend == Backend::Sqlite {
        let (legacy, tagged) = log_formats(&cluster.sqlite_path(3)).await;
        assert!(
            legacy > 0 && tagged > 0,
            "node 3's log holds rows of the previous release ({legacy}) and tagged ones ({tagged})"
        );
    }
    cluster.shutdown().await;
}

/// How many rows of the SQLite log at `db` are untagged, and how many tagged.
async fn log_formats(db: &Path) -> (i64, i64) {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the node's database");
    let row = sqlx::query(
        "SELECT SUM(substr(payload, 1, 1) <> x'C1'), SUM(substr(payload, 1, 1) = x'C1') \
         FROM raft_log",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count log rows");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_from_previous_release_sqlite() {
    rolling_upgrade_loses_nothing(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_from_previous_release_mysql() {
    rolling_upgrade_loses_nothing(Backend::Mysql).await
}

/// A node answers a peer's Raft payload in the format the peer advertised
/// reading, and refuses what a newer release would write. A Raft payload in a
/// format from the future is answered FAILED_PRECONDITION naming both
/// versions (its body would decode: the tag alone decides). A log row in
/// such a format, planted as the newest entry, stops the node at its next
/// start: it exits non-zero and says which format it found and which it
/// reads, instead of serving a log it cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_an_unknown_format() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let members: BTreeMap<u64, String> = [(1, format!("127.0.0.1:{}", free_ports(1)[0]))].into();
    let addr = &members[&1];
    let mut node = spawn_node(dir.path(), 1, &members);
    wait_serving(addr).await;
    create_acknowledged(addr, "before the future").await;

    let heartbeat = openraft::raft::AppendEntriesRequest::<taskd::raft::TypeConfig> {
        // A stale vote from node 2: answered "higher vote", nothing changes.
        // (One claiming the node's own leadership makes openraft 0.9.25 panic.)
        vote: openraft::Vote::new(0, 2),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    // Answers come in the format the caller advertised: legacy to a caller
    // that names none (an older release), tagged to one that reads format 1.
    let legacy = codec::encode(&heartbeat).expect("encode");
    for (advertised, tagged) in [(None, false), (Some("1"), true)] {
        let mut request = tonic::Request::new(AppendEntriesRequest {
            payload: legacy.clone(),
        });
        if let Some(v) = advertised {
            request
                .metadata_mut()
                .insert(codec::FORMAT_HEADER, v.parse().unwrap());
        }
        let reply = RaftServiceClient::new(channel(addr))
            .append_entries(request)
            .await
            .expect("a heartbeat is answered");
        assert_eq!(
            reply
                .metadata()
                .get(codec::FORMAT_HEADER)
                .map(|v| v.to_str().unwrap()),
            Some("1"),
            "the node advertises format 1"
        );
        let payload = &reply.get_ref().payload;
        assert_eq!(
            payload[0] == 0xC1,
            tagged,
            "answer to {advertised:?}: {payload:?}"
        );
    }

    let mut payload = codec::encode_as(&heartbeat, Format::V1).expect("encode");
    payload[1] = 9;
    let status = RaftServiceClient::new(channel(addr))
        .append_entries(AppendEntriesRequest { payload })
        .await
        .expect_err("a payload of format 9 is refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("format 9") && status.message().contains("up to 1"),
        "{status:?}"
    );

    node.signal("TERM");
    assert!(node.wait_exit().await.success());
    let db = dir.path().join("node1/taskd.db");
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the node's database");
    let last = sqlx::query(
        "SELECT log_index, term, payload FROM raft_log ORDER BY log_index DESC LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .expect("the newest log row");
    let (index, term, mut payload): (i64, i64, Vec<u8>) = (last.get(0), last.get(1), last.get(2));
    assert_eq!(&payload[..2], &[0xC1, 1], "this build writes tagged rows");
    payload[1] = 9;
    sqlx::query("INSERT INTO raft_log (log_index, term, payload) VALUES (?, ?, ?)")
        .bind(index + 1)
        .bind(term)
        .bind(payload)
        .execute(&mut conn)
        .await
        .expect("plant a row of format 9");
    conn.close().await.expect("close");

    // Only what the restarted node says counts (the refused RPC was logged before).
    let stderr = dir.path().join("node1.stderr");
    let before = std::fs::read(&stderr).expect("stderr file").len();
    let mut node = spawn_node(dir.path(), 1, &members);
    let status = node.wait_exit().await;
    assert!(!status.success(), "the node stops: {status}");
    let said = String::from_utf8_lossy(&std::fs::read(&stderr).expect("stderr file")[before..])
        .into_owned();
    assert!(
        said.contains("format 9") && said.contains("up to 1"),
        "the node says which format it met and which it reads: {said}"
    );
}

/// Rolling a node back is not possible once it has run this build, and
/// fails safe: the previous release, started on a data directory this
/// build wrote (tagged log rows), refuses it and exits non-zero rather
/// than serve a log it misreads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_release_refuses_data_this_build_wrote() {
    init_tracing();
    let previous = previous_release().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let members: BTreeMap<u64, String> = [(1, format!("127.0.0.1:{}", free_ports(1)[0]))].into();
    let mut node = spawn_node(dir.path(), 1, &members);
    wait_serving(&members[&1]).await;
    create_acknowledged(&members[&1], "written by this build").await;
    node.signal("TERM");
    assert!(node.wait_exit().await.success());

    let stderr = dir.path().join("node1.stderr");
    let before = std::fs::read(&stderr).expect("stderr file").len();
    let mut old = spawn_release_on(&previous, dir.path(), 1, &members, None);
    let status = old.wait_exit().await;
    assert!(!status.success(), "the previous release stops: {status}");
    let said = String::from_utf8_lossy(&std::fs::read(&stderr).expect("stderr file")[before..])
        .into_owned();
    assert!(
        said.contains("LogIndex") && said.to_lowercase().contains("marker"),
        "it says it cannot read the log: {said}"
    );
}
