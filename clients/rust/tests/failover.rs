//! The node a client talks to stops in the middle of a run of creates.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{eventually, start_cluster, Endpoints};
use taskd_client::{pb, Error, TaskClient};

const CREATES: usize = 60;
const STOP_AFTER: usize = 20;

/// The client's first endpoint is the leader; it stops after 20 of 60
/// sequential creates were acknowledged. Every create returns a task or a
/// typed error, the client carries on through the other nodes, and no create
/// made two tasks: the titles (unique per create) are never repeated and every
/// acknowledged one is in the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_survive_losing_the_connected_node() {
    let mut cluster = start_cluster().await;
    let leader = cluster.wait_for_leader().await;
    let mut endpoints = vec![cluster.addr(leader).to_string()];
    endpoints.extend(
        cluster
            .endpoints()
            .into_iter()
            .filter(|e| e != cluster.addr(leader)),
    );
    let client = TaskClient::connect(endpoints).unwrap();

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let creator = tokio::spawn({
        let client = client.clone();
        let acknowledged = acknowledged.clone();
        async move {
            let mut results = Vec::new();
            for i in 0..CREATES {
                let title = format!("failover {i:02}");
                let request = pb::CreateTaskRequest {
                    title: title.clone(),
                    ..Default::default()
                };
                let result = client.create_task(request).await;
                if result.is_ok() {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                results.push((title, result));
            }
            results
        }
    });

    eventually("20 creates acknowledged", || async {
        (acknowledged.load(Ordering::SeqCst) >= STOP_AFTER).then_some(())
    })
    .await;
    cluster.stop_node(leader).await;
    let results = creator.await.expect("creator task");

    for (title, result) in &results {
        if let Err(error) = result {
            assert!(
                !matches!(error, Error::Other { .. }),
                "{title}: untyped failure {error:?}"
            );
        }
    }
    assert!(
        results.last().expect("results").1.is_ok(),
        "the client recovers on the remaining nodes: {:?}",
        results.last()
    );

    let survivor = TaskClient::connect(cluster.endpoints()).unwrap();
    let tasks = survivor
        .list_all_tasks(pb::ListTasksRequest::default())
        .await
        .expect("list on the remaining nodes");
    let mut seen = HashSet::new();
    for task in &tasks {
        assert!(
            seen.insert(task.title.as_str()),
            "{:?} was created twice",
            task.title
        );
    }
    let ok: Vec<&pb::Task> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    for task in &ok {
        assert!(
            tasks
                .iter()
                .any(|t| t.id == task.id && t.title == task.title),
            "acknowledged {:?} is missing",
            task.title
        );
    }
    let failed = results.len() - ok.len();
    assert!(tasks.len() >= ok.len() && tasks.len() <= ok.len() + failed);
    eprintln!(
        "{} creates acknowledged, {failed} failed with typed errors, {} tasks stored",
        ok.len(),
        tasks.len()
    );
    cluster.shutdown().await;
}
