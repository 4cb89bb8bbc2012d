//! Crashes while the write path is busy: real `taskd serve` processes,
//! killed with SIGKILL while batched entries are in flight.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::{CreateTaskRequest, ListTasksRequest, ReadConsistency};
use taskd_chaos::set::{self, Attempt};

use crate::process::{channel, spawn_cluster, spawn_node, wait_all_applied, wait_for_leader};
use crate::support::{eventually, init_tracing};

/// Sixteen writers keep creating (each with its own request_id, one call in
/// flight each, over every node) while the leader is killed with SIGKILL.
/// After a new leader, more acknowledged writes, and the killed node's
/// restart, every node holds every acknowledged task exactly once under the
/// acknowledged id, every create whose outcome was unknown at most once,
/// and nothing that was never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_with_batches_in_flight_keeps_every_acknowledged_write() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let (members, mut nodes) = spawn_cluster(dir.path(), 3);
    let leader = wait_for_leader(&members).await;

    let outcomes: Arc<Mutex<BTreeMap<String, Attempt>>> = Arc::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let addrs: Vec<String> = members.values().cloned().collect();
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (outcomes, acked, stop) = (outcomes.clone(), acked.clone(), stop.clone());
        let addrs = addrs.clone();
        writers.spawn(async move {
            let clients: Vec<_> = addrs
                .iter()
                .map(|a| TaskServiceClient::new(channel(a)))
                .collect();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let title = format!("writer {w} write {n}");
                let mut request = tonic::Request::new(CreateTaskRequest {
                    title: title.clone(),
                    request_id: format!("rid-{w}-{n}"),
                    ..Default::default()
                });
                request.set_timeout(Duration::from_secs(2));
                let mut client = clients[(w + n) % clients.len()].clone();
                let result = client.create_task(request).await;
                let mut o = outcomes.lock().unwrap();
                match result {
                    Ok(reply) => {
                        let id = reply.into_inner().task.expect("task").id;
                        o.insert(title, Attempt::Acknowledged(id));
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        o.insert(title, Attempt::Unknown);
                    }
                }
                n += 1;
            }
        });
    }

    let wait_acked = |at_least: usize| {
        let acked = acked.clone();
        async move {
            eventually(&format!("{at_least} acknowledged creates"), || async {
                (acked.load(Ordering::Relaxed) >= at_least).then_some(())
            })
            .await
        }
    };
    wait_acked(300).await;
    let status = nodes.get_mut(&leader).expect("leader process").kill_9();
    assert_eq!(
        status.signal(),
        Some(9),
        "node {leader} died of SIGKILL: {status}"
    );
    let at_kill = acked.load(Ordering::Relaxed);
    wait_acked(at_kill + 300).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = writers.join_next().await {
        joined.expect("writer");
    }

    nodes.insert(leader, spawn_node(dir.path(), leader, &members));
    wait_all_applied(&members).await;

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    for (node, addr) in &members {
        let mut client = TaskServiceClient::new(channel(addr));
        let mut found = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_tasks(ListTasksRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    consistency: ReadConsistency::Stale as i32,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("ListTasks at node {node}: {s:?}"))
                .into_inner();
            for task in page.tasks {
                found.push((task.title, task.id));
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        if let Err(violations) = set::check(&outcomes, &found) {
            panic!("node {node}: {violations:?}");
        }
    }
}
