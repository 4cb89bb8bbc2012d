//! Failover: losing the leader loses no acknowledged write, and a restarted
//! node catches up from its own data.

use std::collections::HashSet;
use std::time::Duration;

use taskd::proto::{self, CreateTaskRequest, ListTasksRequest, ReadConsistency};
use taskd::store::Backend;
use tonic::Code;

use crate::on_both_backends;
use crate::support::{create_n, create_request, run_on, TestCluster};

/// Stop the leader: a new one is elected, writes go on through the
/// survivors (10 acknowledged after the stop); the old leader restarts from its data dir and catches up, with
/// every acknowledged task on every node exactly once. (`crash.rs`
/// `kill_9_leader_process_loses_no_acknowledged_write` is the SIGKILL
/// variant, with writes in flight.)
async fn leader_loss_and_catch_up(cluster: &mut TestCluster) {
    let old_leader = cluster.wait_for_leader().await;
    let mut acked = create_n(cluster, old_leader, "before", 10).await;
    cluster.stop_node(old_leader).await;

    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, old_leader);
    let survivor = cluster.follower().await;
    acked.extend(create_n(cluster, survivor, "after", 10).await);

    cluster.restart_node(old_leader).await;
    cluster.wait_for_leader().await;
    cluster.wait_converged().await;
    for node in cluster.running_ids() {
        let tasks = cluster
            .client(node)
            .await
            .list_tasks(ListTasksRequest {
                page_size: 1000,
                consistency: ReadConsistency::Stale as i32,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .tasks;
        let ids: Vec<String> = tasks.into_iter().map(|t| t.id).collect();
        assert_eq!(
            ids, acked,
            "node {node} has exactly the acknowledged tasks, in order"
        );
    }
}

/// A create retried with the same request_id after the leader stopped
/// returns the first call's task: exactly one task exists, beside the one the
/// new leader acknowledged after the stop. (`crash.rs`
/// `request_id_survives_leader_crash` is the SIGKILL variant.)
async fn request_id_survives_leader_change(cluster: &mut TestCluster) {
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower().await;
    let request = CreateTaskRequest {
        request_id: "order-42".into(),
        ..create_request("exactly once")
    };
    let first = cluster
        .client(follower)
        .await
        .create_task(request.clone())
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task");
    cluster.stop_node(leader).await;
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    // Work goes on after the fault: the new leader acknowledges a new create.
    let after = create_n(cluster, follower, "after the stop", 1).await;
    let mut ids = HashSet::new();
    for node in cluster.running_ids() {
        let again = cluster
            .client(node)
            .await
            .create_task(request.clone())
            .await
            .expect("retry")
            .into_inner()
            .task
            .expect("task");
        assert_eq!(
            again, first,
            "the retry through node {node} returns the first task"
        );
        ids.insert(again.id);
    }
    let tasks = cluster
        .client(follower)
        .await
        .list_tasks(ListTasksRequest::default())
        .await
        .expect("list")
        .into_inner()
        .tasks;
    let stored: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        stored,
        [first.id.as_str(), after[0].as_str()],
        "the first task once, then the one created after the stop"
    );
    assert_eq!(ids.len(), 1);
    cluster.restart_node(leader).await;
}

on_both_backends!(leader_loss_and_catch_up, request_id_survives_leader_change);

/// With a majority down, a write that was proposed but could not commit
/// is answered as an unknown outcome (UNKNOWN, or DEADLINE_EXCEEDED within
/// the client's deadline, each with ErrorInfo reason OUTCOME_UNKNOWN), never
/// UNAVAILABLE, which clients read as "nothing happened": once the majority
/// is back the write does apply. A retry with the same request_id then
/// returns that task, and the two unknown attempts made one task.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_quorum_write_is_an_unknown_outcome() {
    run_on(Backend::Sqlite, 3, async |cluster: &mut TestCluster| {
        let leader = cluster.wait_for_leader().await;
        let followers: Vec<u64> = cluster
            .running_ids()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        for id in &followers {
            cluster.stop_node(*id).await;
        }
        let request = proto::CreateTaskRequest {
            request_id: "no-quorum-1".into(),
            ..create_request("no quorum")
        };
        let mut client = cluster.client(leader).await;
        let started = std::time::Instant::now();
        let err = client
            .create_task(request.clone())
            .await
            .expect_err("no quorum");
        assert_eq!(err.code(), Code::Unknown, "{err:?}");
        assert_outcome_unknown(&err);
        assert!(
            err.message().contains("quorum"),
            "says why: {}",
            err.message()
        );
        assert!(started.elapsed() < Duration::from_secs(20), "bounded wait");

        let mut with_deadline = tonic::Request::new(request.clone());
        with_deadline.set_timeout(Duration::from_secs(1));
        let err = client
            .create_task(with_deadline)
            .await
            .expect_err("no quorum");
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
        assert_outcome_unknown(&err);

        for id in followers {
            cluster.restart_node(id).await;
        }
        let leader = cluster.wait_for_leader().await;
        let task = cluster
            .client(leader)
            .await
            .create_task(request)
            .await
            .expect("the retry")
            .into_inner()
            .task
            .unwrap();
        let tasks = cluster
            .client(leader)
            .await
            .list_tasks(ListTasksRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .tasks;
        let same: Vec<_> = tasks.iter().filter(|t| t.title == "no quorum").collect();
        assert_eq!(same.len(), 1, "one task from three attempts: {same:?}");
        assert_eq!(same[0].id, task.id);
    })
    .await
}

fn assert_outcome_unknown(status: &tonic::Status) {
    use tonic_types::StatusExt;
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.reason, "OUTCOME_UNKNOWN", "{status:?}");
}
