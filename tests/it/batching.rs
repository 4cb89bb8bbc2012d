//! The write path batched end to end, and linearizable reads served by
//! followers, on real 3-node clusters.

use taskd::domain::Command;
use taskd::proto::{CreateTaskRequest, GetTaskRequest, ReadConsistency, Task, UpdateTaskRequest};
use taskd::raft::{codec, Entry};
use tonic::Code;

use crate::on_both_backends;
use crate::support::{create_request, TestCluster};

fn retitle(id: &str, title: &str, expected_version: u64) -> UpdateTaskRequest {
    UpdateTaskRequest {
        task: Some(Task {
            id: id.into(),
            title: title.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["title".into()],
        }),
        expected_version,
        request_id: String::new(),
    }
}

/// The writes of every normal entry in `node`'s log, entry by entry.
async fn logged_batches(cluster: &TestCluster, node: u64) -> Vec<Vec<Command>> {
    let store = cluster.open_store(node).await;
    let rows = store
        .read_log(0, u64::MAX)
        .await
        .expect("read the raft log");
    store.close().await;
    rows.iter()
        .filter_map(|row| {
            let entry: Entry = codec::decode_entry(&row.payload).expect("decode a log entry");
            match entry.payload {
                openraft::EntryPayload::Normal(batch) => Some(batch.writes),
                _ => None,
            }
        })
        .collect()
}

/// Concurrent writes on the leader share Raft entries and each keeps its own
/// result: of 16 updates of one task that all expect version 1, exactly one
/// wins and 15 are ABORTED although they travel in shared entries (the log
/// holds an entry with several of them); 16 creates retrying one request_id
/// at once, and one more later (another entry), all get the same task; 16
/// plain creates all succeed.
async fn concurrent_writes_share_entries_and_keep_their_own_results(cluster: &mut TestCluster) {
    let leader = cluster.wait_for_leader().await;
    let mut client = cluster.client(leader).await;
    let contended = client
        .create_task(create_request("contended"))
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task");

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..16 {
        let mut c = client.clone();
        let id = contended.id.clone();
        calls.spawn(async move {
            let r = c.update_task(retitle(&id, &format!("writer {i}"), 1)).await;
            ("update", r.map(|r| r.into_inner().task.expect("task")))
        });
        let mut c = client.clone();
        calls.spawn(async move {
            let request = CreateTaskRequest {
                title: "one request, many tries".into(),
                request_id: "shared-request-id".into(),
                ..Default::default()
            };
            let r = c.create_task(request).await;
            ("retry", r.map(|r| r.into_inner().task.expect("task")))
        });
        let mut c = client.clone();
        calls.spawn(async move {
            let r = c.create_task(create_request(&format!("plain {i}"))).await;
            ("plain", r.map(|r| r.into_inner().task.expect("task")))
        });
    }
    let (mut winners, mut aborted, mut retried, mut plain) = (vec![], 0, vec![], 0);
    while let Some(joined) = calls.join_next().await {
        match joined.expect("join") {
            ("update", Ok(task)) => winners.push(task),
            ("update", Err(s)) => {
                assert_eq!(s.code(), Code::Aborted, "{s:?}");
                aborted += 1;
            }
            ("retry", result) => retried.push(result.expect("a retried create succeeds").id),
            (_, result) => {
                result.expect("a plain create succeeds");
                plain += 1;
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins: {winners:?}");
    assert_eq!((winners[0].version, aborted, plain), (2, 15, 16));
    retried.dedup();
    assert_eq!(retried.len(), 1, "every try of one request_id got one task");

    // Across entries: the same request_id later still names the same task.
    let again = client
        .create_task(CreateTaskRequest {
            title: "one request, many tries".into(),
            request_id: "shared-request-id".into(),
            ..Default::default()
        })
        .await
        .expect("retry in a later entry")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(again.id, retried[0]);

    let batches = logged_batches(cluster, leader).await;
    let shared_updates = batches
        .iter()
        .map(|writes| {
            writes
                .iter()
                .filter(|w| matches!(w, Command::UpdateTask { id, .. } if *id == contended.id))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        shared_updates >= 2,
        "some entry carries several of the contended updates: {:?}",
        batches.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let writes: usize = batches.iter().map(Vec::len).sum();
    assert_eq!(writes, 1 + 16 * 3 + 1, "every write is logged exactly once");
}

/// A linearizable read on a follower sees a write that another node
/// acknowledged just before: create and update through one node, read
/// straight away through each of the others, twenty times over.
async fn follower_reads_see_writes_acknowledged_elsewhere(cluster: &mut TestCluster) {
    let nodes = cluster.running_ids();
    let mut clients = Vec::new();
    for id in &nodes {
        clients.push(cluster.client(*id).await);
    }
    for round in 0..20 {
        let writer = round % nodes.len();
        let created = clients[writer]
            .create_task(create_request(&format!("seen {round}")))
            .await
            .expect("create")
            .into_inner()
            .task
            .expect("task");
        let updated = clients[writer]
            .update_task(retitle(&created.id, &format!("seen {round} v2"), 1))
            .await
            .expect("update")
            .into_inner()
            .task
            .expect("task");
        for (reader, client) in clients.iter_mut().enumerate() {
            if reader == writer {
                continue;
            }
            let read = client
                .get_task(GetTaskRequest {
                    id: created.id.clone(),
                    consistency: ReadConsistency::Linearizable as i32,
                })
                .await
                .unwrap_or_else(|s| panic!("round {round}: node {} read: {s:?}", nodes[reader]))
                .into_inner()
                .task
                .expect("task");
            assert_eq!(read, updated, "round {round}: node {} read", nodes[reader]);
        }
    }
}

on_both_backends!(
    concurrent_writes_share_entries_and_keep_their_own_results,
    follower_reads_see_writes_acknowledged_elsewhere
);
