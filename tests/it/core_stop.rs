//! A node whose Raft core stops on a storage failure does not linger
//! NOT_SERVING forever: it exits non-zero, so that its supervisor restarts
//! it, and once its store answers again the restarted node catches up.

use sqlx::{Connection, SqliteConnection};
use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::{CreateTaskRequest, ListTasksRequest, ReadConsistency};

use std::collections::BTreeMap;

use crate::process::{channel, free_ports, spawn_node, wait_all_applied, wait_for_leader};
use crate::support::{eventually, init_tracing};

async fn create(addr: &str, title: &str) -> String {
    let client = TaskServiceClient::new(channel(addr));
    let request = CreateTaskRequest {
        title: title.into(),
        request_id: format!("core-stop-{title}"),
        ..Default::default()
    };
    eventually(&format!("create {title:?}"), || {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            Some(
                client
                    .create_task(request)
                    .await
                    .ok()?
                    .into_inner()
                    .task?
                    .id,
            )
        }
    })
    .await
}

async fn stale_ids(addr: &str) -> Vec<String> {
    let mut client = TaskServiceClient::new(channel(addr));
    let request = ListTasksRequest {
        page_size: 1000,
        consistency: ReadConsistency::Stale as i32,
        ..Default::default()
    };
    let tasks = client
        .list_tasks(request)
        .await
        .expect("list")
        .into_inner()
        .tasks;
    tasks.into_iter().map(|t| t.id).collect()
}

/// A follower's log appends fail as on a full disk (a trigger refuses every
/// raft_log insert): its core stops, and the process exits non-zero
/// (before the fix it stayed up, NOT_SERVING, until an operator came). The
/// failure is then cleared and the node restarted, as a supervisor would:
/// it converges on every task, those written while it was down included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_store_fails_exits_and_recovers_on_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let members: BTreeMap<u64, String> = (1..=3)
        .zip(free_ports(3))
        .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
        .collect();
    let mut nodes: BTreeMap<u64, _> = members
        .keys()
        .map(|id| (*id, spawn_node(dir.path(), *id, &members)))
        .collect();
    let leader = wait_for_leader(&members).await;
    let follower = *members.keys().find(|id| **id != leader).unwrap();
    let mut acked = vec![create(&members[&leader], "before").await];
    wait_all_applied(&members).await;

    let db = dir.path().join(format!("node{follower}/taskd.db"));
    let url = format!("sqlite://{}", db.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER disk_full BEFORE INSERT ON raft_log \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    // The leader and the other follower still commit.
    for i in 0..5 {
        acked.push(create(&members[&leader], &format!("while failing {i}")).await);
    }
    let status = nodes.get_mut(&follower).unwrap().wait_exit().await;
    assert!(!status.success(), "exits non-zero: {status:?}");

    sqlx::query("DROP TRIGGER disk_full")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    nodes.insert(follower, spawn_node(dir.path(), follower, &members));
    acked.push(create(&members[&leader], "after").await);
    wait_all_applied(&members).await;
    let mut ids = stale_ids(&members[&follower]).await;
    ids.sort();
    acked.sort();
    assert_eq!(ids, acked, "the restarted node has every task, once");
}
