//! Every `TaskClient` call against a live in-process 3-node cluster, and the
//! typed errors the server's failures decode into.

mod common;

use std::time::Duration;

use common::{closed_port, eventually, start_cluster, Endpoints};
use taskd_client::{pb, ClientOptions, Error, TaskClient};

fn new_task(title: &str) -> pb::CreateTaskRequest {
    pb::CreateTaskRequest {
        title: title.into(),
        ..Default::default()
    }
}

/// Create, get (linearizable and stale), list (one page and all pages),
/// update and delete each do what the proto says, through the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_round_trips() {
    let cluster = start_cluster().await;
    let client = TaskClient::connect(cluster.endpoints()).unwrap();

    let deadline: prost_types::Timestamp = "2030-01-02T03:04:05Z".parse().unwrap();
    let created = client
        .create_task(pb::CreateTaskRequest {
            title: "first".into(),
            description: "the one".into(),
            priority: pb::TaskPriority::High.into(),
            deadline: Some(deadline),
            assignee: "ann".into(),
            labels: vec!["round-trip".into()],
            ..Default::default()
        })
        .await
        .expect("create");
    assert!(!created.id.is_empty());
    assert_eq!(created.version, 1);
    assert_eq!(created.status(), pb::TaskStatus::Todo);
    assert_eq!(created.deadline, Some(deadline));

    assert_eq!(client.get_task(&created.id).await.expect("get"), created);
    // A stale read may lag: it catches up without a new write.
    let stale = eventually("the stale read to see the task", || async {
        client
            .get_task_with(&created.id, pb::ReadConsistency::Stale)
            .await
            .ok()
    })
    .await;
    assert_eq!(stale, created);

    for i in 0..4 {
        let mut request = new_task(&format!("more {i}"));
        request.labels = vec!["round-trip".into()];
        client.create_task(request).await.expect("create more");
    }
    let filter = pb::ListTasksRequest {
        label: "round-trip".into(),
        page_size: 2,
        ..Default::default()
    };
    let first_page = client.list_tasks(filter.clone()).await.expect("list page");
    assert_eq!(first_page.tasks.len(), 2);
    assert!(!first_page.next_page_token.is_empty());
    let all = client.list_all_tasks(filter).await.expect("list all");
    let titles: Vec<_> = all.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, ["first", "more 0", "more 1", "more 2", "more 3"]);

    let changed = pb::Task {
        title: "first, renamed".into(),
        status: pb::TaskStatus::InProgress.into(),
        description: "ignored: not in the mask".into(),
        ..created.clone()
    };
    let updated = client
        .update_task(changed, ["title", "status"], 1)
        .await
        .expect("update");
    assert_eq!(updated.title, "first, renamed");
    assert_eq!(updated.status(), pb::TaskStatus::InProgress);
    assert_eq!(updated.description, "the one");
    assert_eq!(updated.version, 2);

    client
        .delete_task(&created.id, 2)
        .await
        .expect("delete at version");
    assert!(matches!(
        client.get_task(&created.id).await,
        Err(Error::NotFound { .. })
    ));
    cluster.shutdown().await;
}

/// A create repeated with the same request_id returns the first task, not a
/// second one; after that task is deleted the key is ALREADY_EXISTS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_id_makes_creates_idempotent() {
    let cluster = start_cluster().await;
    let client = TaskClient::connect(cluster.endpoints()).unwrap();
    let mut request = new_task("once");
    request.request_id = "fixed-key".into();

    let first = client.create_task(request.clone()).await.expect("create");
    let again = client.create_task(request.clone()).await.expect("repeat");
    assert_eq!(first.id, again.id);
    let all = client
        .list_all_tasks(pb::ListTasksRequest::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 1);

    client.delete_task(&first.id, 0).await.expect("delete");
    let reused = client.create_task(request).await;
    assert!(
        matches!(reused, Err(Error::AlreadyExists { .. })),
        "{reused:?}"
    );
    cluster.shutdown().await;
}

/// NOT_FOUND, INVALID_ARGUMENT (with every bad field named) and a version
/// conflict (with the current version) come back as their own variants.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_are_typed() {
    let cluster = start_cluster().await;
    let client = TaskClient::connect(cluster.endpoints()).unwrap();

    for result in [
        client.get_task("no-such-task").await.map(drop),
        client.delete_task("no-such-task", 0).await,
    ] {
        let Err(Error::NotFound { message }) = result else {
            panic!("expected NotFound, got {result:?}");
        };
        assert!(message.contains("no-such-task"), "{message}");
    }

    let mut bad = new_task(" ");
    bad.labels = vec!["has space".into()];
    let result = client.create_task(bad).await;
    let Err(Error::InvalidArgument {
        field_violations, ..
    }) = &result
    else {
        panic!("expected InvalidArgument, got {result:?}");
    };
    let fields: Vec<_> = field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["title", "labels[0]"]);
    assert!(result
        .unwrap_err()
        .to_string()
        .starts_with("invalid argument: title: "));

    let task = client.create_task(new_task("versioned")).await.unwrap();
    let task = client
        .update_task(
            pb::Task {
                title: "v2".into(),
                ..task
            },
            ["title"],
            1,
        )
        .await
        .unwrap();
    let stale_update = client.update_task(task.clone(), ["title"], 1).await;
    assert!(
        matches!(
            stale_update,
            Err(Error::Conflict {
                current_version: Some(2),
                ..
            })
        ),
        "{stale_update:?}"
    );
    let stale_delete = client.delete_task(&task.id, 1).await;
    assert!(
        matches!(
            stale_delete,
            Err(Error::Conflict {
                current_version: Some(2),
                ..
            })
        ),
        "{stale_delete:?}"
    );
    cluster.shutdown().await;
}

/// Dead endpoints in the list are skipped: calls go on through a live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_endpoints_are_skipped() {
    let cluster = start_cluster().await;
    let endpoints = [
        closed_port().await,
        closed_port().await,
        cluster.addr(2).to_string(),
    ];
    let client = TaskClient::connect(endpoints).unwrap();
    let task = client
        .create_task(new_task("through node 2"))
        .await
        .expect("create");
    assert_eq!(client.get_task(&task.id).await.expect("get").id, task.id);
    assert!(client.current_endpoint().ends_with(cluster.addr(2)));
    cluster.shutdown().await;
}

/// With no endpoint listening, a call ends in `Unavailable` within its
/// deadline instead of retrying forever.
#[tokio::test]
async fn unavailable_when_nothing_answers() {
    let options = ClientOptions::default()
        .timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(10), Duration::from_millis(100));
    let client =
        TaskClient::connect_with([closed_port().await, closed_port().await], options).unwrap();
    let started = std::time::Instant::now();
    let result = client.get_task("x").await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}
