//! The node a client talks to stops in the middle of a run of creates.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{eventually, start_cluster, Endpoints};
use taskd_client::{pb, Error, TaskClient};

/// Creates acknowledged before the stop, and again after it.
const ACKS_AROUND_THE_STOP: usize = 20;
/// A bound on the run, should creates after the stop never succeed.
const MAX_CREATES: usize = 500;

/// The client's first endpoint is the leader; it stops after 20 sequential
/// creates were acknowledged, and creates go on until 20 more that started
/// after the stop were acknowledged (the client carries on through the other
/// nodes). Every create returns a task or a typed error, and no create made
/// two tasks: the titles (unique per create) are never repeated and every
/// acknowledged one is in the cluster. (The server's `crash.rs`
/// `rust_client_survives_kill_9_of_its_node` is the SIGKILL variant, with
/// creates in flight.)
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
    let stopped = Arc::new(AtomicBool::new(false));
    let creator = tokio::spawn({
        let client = client.clone();
        let acknowledged = acknowledged.clone();
        let stopped = stopped.clone();
        async move {
            let mut results = Vec::new();
            let mut acked_after_stop = 0;
            for i in 0..MAX_CREATES {
                let title = format!("failover {i:03}");
                let request = pb::CreateTaskRequest {
                    title: title.clone(),
                    ..Default::default()
                };
                let after_stop = stopped.load(Ordering::SeqCst);
                let result = client.create_task(request).await;
                if result.is_ok() {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    acked_after_stop += usize::from(after_stop);
                }
                results.push((title, result));
                if acked_after_stop == ACKS_AROUND_THE_STOP {
                    break;
                }
            }
            (results, acked_after_stop)
        }
    });

    eventually("20 creates acknowledged", || async {
        (acknowledged.load(Ordering::SeqCst) >= ACKS_AROUND_THE_STOP).then_some(())
    })
    .await;
    cluster.stop_node(leader).await;
    stopped.store(true, Ordering::SeqCst);
    let (results, acked_after_stop) = creator.await.expect("creator task");
    assert_eq!(
        acked_after_stop, ACKS_AROUND_THE_STOP,
        "creates that started after the stop were acknowledged"
    );

    for (title, result) in &results {
        if let Err(error) = result {
            assert!(
                !matches!(error, Error::Other { .. }),
                "{title}: untyped failure {error:?}"
            );
        }
    }

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
