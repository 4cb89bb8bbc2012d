//! Optimistic concurrency: version checks happen at apply, in log order.

use taskd::proto::{GetTaskRequest, UpdateTaskRequest};
use tonic::Code;

use crate::on_both_backends;
use crate::support::{create_request, TestCluster};

/// Eight concurrent updates of one task, all expecting version 1, sent
/// through different nodes: exactly one succeeds, the rest are ABORTED,
/// and the task ends at version 2 with the winner's title.
async fn concurrent_updates_with_same_version(cluster: &mut TestCluster) {
    let mut client = cluster.client(1).await;
    let task = client
        .create_task(create_request("contended"))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task");
    let nodes = cluster.running_ids();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut client = cluster.client(nodes[i % nodes.len()]).await;
        let id = task.id.clone();
        calls.spawn(async move {
            let result = client
                .update_task(UpdateTaskRequest {
                    task: Some(taskd::proto::Task {
                        id,
                        title: format!("writer {i}"),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["title".into()],
                    }),
                    expected_version: 1,
                    request_id: String::new(),
                })
                .await;
            (i, result)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let (i, result) = joined.expect("join");
        match result {
            Ok(reply) => winners.push((i, reply.into_inner().task.expect("task"))),
            Err(status) => assert_eq!(status.code(), Code::Aborted, "writer {i}: {status:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let (i, won) = &winners[0];
    assert_eq!(won.version, 2);
    let now = client
        .get_task(GetTaskRequest {
            id: task.id.clone(),
            consistency: 0,
        })
        .await
        .expect("get")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(now.version, 2);
    assert_eq!(now.title, format!("writer {i}"));
}

on_both_backends!(concurrent_updates_with_same_version);
