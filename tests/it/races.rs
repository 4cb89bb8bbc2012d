//! Behaviours under contention and at the edges of routing, on real
//! in-process clusters: concurrent unconditional updates, an update racing
//! a delete, the forwarding loop breaker, and health after the Raft core
//! stopped on a storage failure.

use std::collections::BTreeSet;

use taskd::api::route::{FORWARDED_HEADER, MAX_HOPS};
use taskd::proto::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest, ReadConsistency, Task,
    UpdateTaskRequest,
};
use taskd::store::Backend;
use tonic::Code;

use crate::on_both_backends;
use crate::process::is_serving;
use crate::support::{create_n, create_request, eventually, run_on, TestCluster};

const UPDATERS: u64 = 12;

fn retitle(id: &str, title: &str) -> UpdateTaskRequest {
    UpdateTaskRequest {
        task: Some(Task {
            id: id.into(),
            title: title.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["title".into()],
        }),
        expected_version: 0,
        request_id: String::new(),
    }
}

/// The task `id` as node `node` stores it (STALE: its own database), if any.
async fn stored(cluster: &TestCluster, node: u64, id: &str) -> Result<Task, tonic::Status> {
    let reply = cluster
        .client(node)
        .await
        .get_task(GetTaskRequest {
            id: id.into(),
            consistency: ReadConsistency::Stale as i32,
        })
        .await?;
    Ok(reply.into_inner().task.expect("task"))
}

/// Twelve unconditional updates of one task, all at once, through every
/// node: each succeeds with its own version (2 to 13, none lost, none
/// shared), and every node ends with version 13 and the title of the update
/// that got it.
async fn concurrent_unconditional_updates_all_apply(cluster: &mut TestCluster) {
    let id = create_n(cluster, 1, "contended", 1).await.remove(0);
    let nodes = cluster.running_ids();
    let mut updates = tokio::task::JoinSet::new();
    for u in 0..UPDATERS {
        let mut client = cluster.client(nodes[u as usize % nodes.len()]).await;
        let request = retitle(&id, &format!("update {u}"));
        updates.spawn(async move { client.update_task(request).await });
    }
    let mut versions = BTreeSet::new();
    let mut last_title = String::new();
    while let Some(joined) = updates.join_next().await {
        let task = joined
            .expect("update task")
            .expect("an unconditional update succeeds")
            .into_inner()
            .task
            .expect("task");
        if task.version == 1 + UPDATERS {
            last_title = task.title.clone();
        }
        assert!(
            versions.insert(task.version),
            "version {} twice",
            task.version
        );
    }
    assert_eq!(versions, (2..=1 + UPDATERS).collect::<BTreeSet<_>>());
    cluster.wait_converged().await;
    for node in cluster.running_ids() {
        let task = stored(cluster, node, &id).await.expect("stored");
        assert_eq!(task.version, 1 + UPDATERS, "node {node}");
        assert_eq!(
            task.title, last_title,
            "node {node}: the last update's title"
        );
    }
}

/// An unconditional update and a delete of the same task, sent at once
/// through two different nodes, ten times: the delete always succeeds, the
/// update either came first (version 2) or finds the task gone (NOT_FOUND),
/// and afterwards no node has the task (an update never brings it back).
async fn update_racing_delete(cluster: &mut TestCluster) {
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower().await;
    let ids = create_n(cluster, leader, "raced", 10).await;
    let (mut updated_first, mut deleted_first) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        let (via_update, via_delete) = match i % 2 {
            0 => (leader, follower),
            _ => (follower, leader),
        };
        let mut updater = cluster.client(via_update).await;
        let mut deleter = cluster.client(via_delete).await;
        let (update, delete) = tokio::join!(
            updater.update_task(retitle(id, "raced update")),
            deleter.delete_task(DeleteTaskRequest {
                id: id.clone(),
                expected_version: 0,
                request_id: String::new(),
            }),
        );
        delete.unwrap_or_else(|s| panic!("delete {id}: {s:?}"));
        match update {
            Ok(reply) => {
                assert_eq!(reply.into_inner().task.expect("task").version, 2);
                updated_first += 1;
            }
            Err(s) if s.code() == Code::NotFound => deleted_first += 1,
            Err(s) => panic!("update {id}: neither applied nor NOT_FOUND: {s:?}"),
        }
    }
    eprintln!("update first {updated_first} times, delete first {deleted_first} times");
    cluster.wait_converged().await;
    for node in cluster.running_ids() {
        for id in &ids {
            let found = stored(cluster, node, id).await;
            assert_eq!(
                found.map_err(|s| s.code()),
                Err(Code::NotFound),
                "node {node}: {id} stays deleted"
            );
        }
    }
}

on_both_backends!(
    concurrent_unconditional_updates_all_apply,
    update_racing_delete
);

fn with_hops(hops: u32, title: &str) -> tonic::Request<CreateTaskRequest> {
    let mut request = tonic::Request::new(create_request(title));
    request
        .metadata_mut()
        .insert(FORWARDED_HEADER, hops.to_string().parse().unwrap());
    request
}

/// The forwarding loop breaker: a call that has already been forwarded
/// `MAX_HOPS` times is not forwarded again (UNAVAILABLE, saying leadership is
/// changing, nothing created), while one hop fewer still reaches the leader,
/// and the leader serves a call at `MAX_HOPS` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_hops_stops_forwarding() {
    run_on(Backend::Sqlite, 3, async |cluster: &mut TestCluster| {
        let leader = cluster.wait_for_leader().await;
        let follower = cluster.follower().await;
        let refused = cluster
            .client(follower)
            .await
            .create_task(with_hops(MAX_HOPS, "looping"))
            .await
            .expect_err("a call forwarded MAX_HOPS times is not forwarded again");
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert!(
            refused.message().contains("forwarded"),
            "the message says why: {}",
            refused.message()
        );
        cluster
            .client(follower)
            .await
            .create_task(with_hops(MAX_HOPS - 1, "one hop left"))
            .await
            .expect("one hop fewer is forwarded to the leader");
        cluster
            .client(leader)
            .await
            .create_task(with_hops(MAX_HOPS, "at the leader"))
            .await
            .expect("the leader serves it without forwarding");
        let titles: Vec<String> = cluster
            .client(leader)
            .await
            .list_tasks(ListTasksRequest::default())
            .await
            .expect("list")
            .into_inner()
            .tasks
            .into_iter()
            .map(|t| t.title)
            .collect();
        assert_eq!(titles, ["one hop left", "at the leader"]);
    })
    .await
}

/// A follower whose MySQL database loses its log table (a storage failure
/// no retry can fix) stops its Raft core at the next replicated write, and
/// health says NOT_SERVING, while the other two nodes keep acknowledging
/// writes; the node then exits with `RaftStopped` (for its supervisor to
/// restart it), and once the table is back a restart makes it serve again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_failure_makes_health_not_serving() {
    run_on(Backend::Mysql, 3, async |cluster: &mut TestCluster| {
        let leader = cluster.wait_for_leader().await;
        let broken = cluster.follower().await;
        let addr = cluster.addr(broken).to_string();
        assert!(is_serving(&addr).await, "node {broken} serves at first");
        let url = cluster.database_url(broken).to_string();
        let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("connect to the node's database");
        sqlx::query("RENAME TABLE raft_log TO raft_log_lost")
            .execute(&mut conn)
            .await
            .expect("take the log table away");

        create_n(cluster, leader, "after the failure", 5).await;
        eventually(&format!("node {broken} health NOT_SERVING"), || async {
            (!is_serving(&addr).await).then_some(())
        })
        .await;
        create_n(cluster, leader, "still served", 5).await;
        // It does not linger: it stops on its own and says why.
        let stopped = cluster.wait_node_exit(broken).await;
        assert!(
            matches!(stopped, Err(taskd::server::ServerError::RaftStopped(_))),
            "{stopped:?}"
        );

        // The database is back: a restart is all the node needs.
        sqlx::query("RENAME TABLE raft_log_lost TO raft_log")
            .execute(&mut conn)
            .await
            .expect("restore the log table");
        cluster.restart_node(broken).await;
        cluster.wait_converged().await;
        eventually(&format!("node {broken} serves again"), || async {
            is_serving(&addr).await.then_some(())
        })
        .await;
    })
    .await
}
