//! Replication: what is written through any node is on every node, and the
//! nodes' databases end identical.

use taskd::proto::{GetTaskRequest, ReadConsistency, UpdateTaskRequest};

use crate::on_both_backends;
use crate::support::{create_n, TestCluster};

/// Writes through a follower are readable from every node (stale reads
/// after convergence), and all three databases hold identical task rows.
async fn follower_writes_reach_every_database(cluster: &mut TestCluster) {
    let follower = cluster.follower().await;
    let ids = create_n(cluster, follower, "task", 20).await;
    let mut client = cluster.client(follower).await;
    client
        .update_task(UpdateTaskRequest {
            task: Some(taskd::proto::Task {
                id: ids[3].clone(),
                assignee: "grace".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["assignee".into()],
            }),
            expected_version: 1,
            request_id: String::new(),
        })
        .await
        .expect("update");
    client
        .delete_task(taskd::proto::DeleteTaskRequest {
            id: ids[5].clone(),
            expected_version: 0,
            request_id: String::new(),
        })
        .await
        .expect("delete");

    cluster.wait_converged().await;
    for node in cluster.running_ids() {
        let mut client = cluster.client(node).await;
        let task = client
            .get_task(GetTaskRequest {
                id: ids[3].clone(),
                consistency: ReadConsistency::Stale as i32,
            })
            .await
            .expect("stale get")
            .into_inner()
            .task
            .expect("task");
        assert_eq!(task.assignee, "grace", "node {node}");
    }

    let mut dumps = Vec::new();
    for node in cluster.running_ids() {
        let store = cluster.open_store(node).await;
        let dump = store.export().await.expect("export");
        store.close().await;
        dumps.push((node, dump.tasks));
    }
    let (_, first) = &dumps[0];
    assert_eq!(first.len(), 19);
    for (node, tasks) in &dumps[1..] {
        assert_eq!(
            tasks, first,
            "node {node}'s tasks differ from node {}'s",
            dumps[0].0
        );
    }
}

on_both_backends!(follower_writes_reach_every_database);
