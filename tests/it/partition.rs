//! A leader cut off from its quorum must not answer linearizable reads from
//! its own state. Real `taskd serve` processes; a node is cut off by freezing
//! processes with SIGSTOP (its peers' sockets stay open but nothing answers),
//! which needs no network namespace.

use std::time::Duration;

use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::{
    CreateTaskRequest, GetTaskRequest, ListTasksRequest, ReadConsistency, Task, UpdateTaskRequest,
};
use taskd::store::Backend;
use tonic::Code;

use crate::proc_cluster::ProcessCluster;
use crate::process::channel;
use crate::support::eventually;

async fn get(addr: &str, id: &str, consistency: ReadConsistency) -> Result<Task, tonic::Status> {
    let mut request = tonic::Request::new(GetTaskRequest {
        id: id.into(),
        consistency: consistency as i32,
    });
    request.set_timeout(Duration::from_secs(5));
    let reply = TaskServiceClient::new(channel(addr))
        .get_task(request)
        .await?;
    Ok(reply.into_inner().task.expect("task"))
}

async fn create(addr: &str, title: &str) -> Task {
    TaskServiceClient::new(channel(addr))
        .create_task(CreateTaskRequest {
            title: title.into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task")
}

/// The leader alone (both followers frozen: a minority of one) refuses
/// linearizable GetTask and ListTasks with UNAVAILABLE or DEADLINE_EXCEEDED,
/// though it has the task, and still serves the task on a STALE read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_without_quorum_refuses_linearizable_reads() {
    let cluster = ProcessCluster::start(3, Backend::Sqlite).await;
    let leader = cluster.leader().await;
    let addr = cluster.members[&leader].clone();
    let task = create(&addr, "known").await;
    let followers: Vec<u64> = cluster
        .members
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    for id in &followers {
        cluster.pause(*id);
    }

    let refused = get(&addr, &task.id, ReadConsistency::Linearizable)
        .await
        .expect_err("no quorum confirms the leader: the read is refused");
    assert!(
        matches!(refused.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{refused:?}"
    );
    let mut list = tonic::Request::new(ListTasksRequest::default());
    list.set_timeout(Duration::from_secs(5));
    let refused = TaskServiceClient::new(channel(&addr))
        .list_tasks(list)
        .await
        .expect_err("the linearizable list is refused too");
    assert!(
        matches!(refused.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{refused:?}"
    );
    let stale = get(&addr, &task.id, ReadConsistency::Stale)
        .await
        .expect("a STALE read is served from the node's own data");
    assert_eq!(stale, task);

    for id in &followers {
        cluster.resume(*id);
    }
    cluster.shutdown().await;
}

/// A deposed leader never answers a linearizable read with what it knew:
/// the leader is frozen, the others elect a new leader that updates the
/// task, and linearizable reads are sent to the old leader while it is still
/// frozen (so they wait in its socket, and it still believes it leads when it
/// sees them). Once it runs again, each read is either refused or shows the
/// update; none shows the old version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_leader_never_serves_a_stale_linearizable_read() {
    let cluster = ProcessCluster::start(3, Backend::Sqlite).await;
    let old_leader = cluster.leader().await;
    let old_addr = cluster.members[&old_leader].clone();
    let task = create(&old_addr, "before").await;
    // The old leader has applied the create: its own data says version 1.
    eventually("the old leader applied the create", || async {
        get(&old_addr, &task.id, ReadConsistency::Stale).await.ok()
    })
    .await;

    cluster.pause(old_leader);
    let others: std::collections::BTreeMap<u64, String> = cluster
        .members
        .iter()
        .filter(|(id, _)| **id != old_leader)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let new_leader = crate::process::wait_for_leader(&others).await;
    let updated = TaskServiceClient::new(channel(&others[&new_leader]))
        .update_task(UpdateTaskRequest {
            task: Some(Task {
                id: task.id.clone(),
                title: "after".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
            expected_version: 0,
            request_id: String::new(),
        })
        .await
        .expect("the new leader updates the task")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(updated.version, 2);

    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (addr, id) = (old_addr.clone(), task.id.clone());
        reads.spawn(async move { get(&addr, &id, ReadConsistency::Linearizable).await });
    }
    // A frozen node answers nothing; the half second also lets the reads
    // reach its socket before it runs again.
    let early = tokio::time::timeout(Duration::from_millis(500), reads.join_next()).await;
    assert!(early.is_err(), "a frozen node answered a read: {early:?}");
    cluster.resume(old_leader);

    while let Some(read) = reads.join_next().await {
        match read.expect("read task") {
            Ok(seen) => assert_eq!(
                seen, updated,
                "a linearizable read on the deposed leader shows the update"
            ),
            Err(s) => assert!(
                matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded),
                "refused, with a retryable code: {s:?}"
            ),
        }
    }
    cluster.shutdown().await;
}
