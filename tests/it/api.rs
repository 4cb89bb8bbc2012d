//! Each TaskService RPC's success path, and every kind of bad input: the
//! right status code, a message naming the problem, and no change.

use taskd::proto::{
    self, CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest, ReadConsistency,
    TaskPriority, TaskStatus, UpdateTaskRequest,
};
use taskd::store::Backend;
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both_backends;
use crate::support::{create_request, run_on, TestCluster};

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// Create, get (both consistencies), update by mask, versioned delete: each
/// through a follower, with the results the API documents.
async fn crud_round_trip(cluster: &mut TestCluster) {
    let follower = cluster.follower().await;
    let mut client = cluster.client(follower).await;
    let deadline = prost_types::Timestamp {
        seconds: 1_900_000_000,
        nanos: 123_456_000,
    };
    let created = client
        .create_task(CreateTaskRequest {
            title: "write the design".into(),
            description: "all of it".into(),
            priority: TaskPriority::High as i32,
            deadline: Some(deadline),
            assignee: "ada".into(),
            labels: vec!["docs".into(), "q4".into()],
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner()
        .task
        .expect("task");
    assert!(!created.id.is_empty());
    assert_eq!(
        created.status,
        TaskStatus::Todo as i32,
        "no status means TODO"
    );
    assert_eq!(created.version, 1);
    assert_eq!(created.deadline, Some(deadline));
    assert_eq!(created.labels, ["docs", "q4"]);
    assert!(created.create_time.is_some());
    assert_eq!(created.create_time, created.update_time);

    let got = client
        .get_task(GetTaskRequest {
            id: created.id.clone(),
            consistency: ReadConsistency::Unspecified as i32,
        })
        .await
        .expect("get")
        .into_inner()
        .task;
    assert_eq!(got.as_ref(), Some(&created));

    let updated = client
        .update_task(UpdateTaskRequest {
            task: Some(proto::Task {
                id: created.id.clone(),
                title: "write the design doc".into(),
                status: TaskStatus::InProgress as i32,
                description: "ignored: not in the mask".into(),
                ..Default::default()
            }),
            update_mask: mask(&["title", "status", "deadline"]),
            expected_version: 1,
            request_id: String::new(),
        })
        .await
        .expect("update")
        .into_inner()
        .task
        .expect("task");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.title, "write the design doc");
    assert_eq!(updated.status, TaskStatus::InProgress as i32);
    assert_eq!(
        updated.description, "all of it",
        "fields outside the mask stay"
    );
    assert_eq!(
        updated.deadline, None,
        "a masked, unset deadline is cleared"
    );
    assert_eq!(updated.create_time, created.create_time);

    // A stale read on every node sees the update once it is applied there.
    cluster.wait_converged().await;
    for id in cluster.running_ids() {
        let stale = cluster
            .client(id)
            .await
            .get_task(GetTaskRequest {
                id: created.id.clone(),
                consistency: ReadConsistency::Stale as i32,
            })
            .await
            .expect("stale get")
            .into_inner()
            .task;
        assert_eq!(stale.as_ref(), Some(&updated), "node {id}");
    }

    let err = client
        .delete_task(DeleteTaskRequest {
            id: created.id.clone(),
            expected_version: 1,
            request_id: String::new(),
        })
        .await
        .expect_err("stale version");
    assert_eq!(err.code(), Code::Aborted);
    let info = err.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.metadata["current_version"], "2");

    client
        .delete_task(DeleteTaskRequest {
            id: created.id.clone(),
            expected_version: 2,
            request_id: String::new(),
        })
        .await
        .expect("delete");
    let err = client
        .get_task(GetTaskRequest {
            id: created.id.clone(),
            consistency: 0,
        })
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .delete_task(DeleteTaskRequest {
            id: created.id.clone(),
            expected_version: 0,
            request_id: String::new(),
        })
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
}

/// Every documented filter of ListTasks, and ordering by deadline.
async fn list_filters(cluster: &mut TestCluster) {
    let mut client = cluster.client(1).await;
    let at = |s: i64| {
        Some(prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        })
    };
    let specs = [
        ("a", TaskStatus::Todo, "ada", vec!["x"], at(300)),
        ("b", TaskStatus::Done, "bob", vec!["x", "y"], at(100)),
        ("c", TaskStatus::Todo, "bob", vec![], None),
        ("d", TaskStatus::InProgress, "", vec!["y"], at(200)),
    ];
    for (title, status, assignee, labels, deadline) in specs {
        client
            .create_task(CreateTaskRequest {
                title: title.into(),
                status: status as i32,
                assignee: assignee.into(),
                labels: labels.into_iter().map(String::from).collect(),
                deadline,
                ..Default::default()
            })
            .await
            .expect("create");
    }
    let titles = |req: ListTasksRequest| {
        let mut client = client.clone();
        async move {
            let tasks = client
                .list_tasks(req)
                .await
                .expect("list")
                .into_inner()
                .tasks;
            tasks
                .into_iter()
                .map(|t| t.title)
                .collect::<Vec<_>>()
                .join("")
        }
    };
    let all = ListTasksRequest::default();
    assert_eq!(titles(all.clone()).await, "abcd");
    let q = ListTasksRequest {
        status: TaskStatus::Todo as i32,
        ..all.clone()
    };
    assert_eq!(titles(q).await, "ac");
    let q = ListTasksRequest {
        assignee: "bob".into(),
        ..all.clone()
    };
    assert_eq!(titles(q).await, "bc");
    let q = ListTasksRequest {
        label: "y".into(),
        ..all.clone()
    };
    assert_eq!(titles(q).await, "bd");
    let q = ListTasksRequest {
        deadline_before: at(250),
        ..all.clone()
    };
    assert_eq!(titles(q).await, "bd");
    let q = ListTasksRequest {
        deadline_after: at(150),
        ..all.clone()
    };
    assert_eq!(titles(q).await, "ad");
    let q = ListTasksRequest {
        order_by: proto::TaskOrder::Deadline as i32,
        ..all.clone()
    };
    assert_eq!(
        titles(q).await,
        "bdac",
        "earliest deadline first, none last"
    );
    let q = ListTasksRequest {
        label: "x".into(),
        status: TaskStatus::Done as i32,
        consistency: ReadConsistency::Stale as i32,
        ..all.clone()
    };
    assert_eq!(titles(q).await, "b");
}

on_both_backends!(crud_round_trip, list_filters);

fn assert_invalid(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status
        .get_details_bad_request()
        .expect("BadRequest details");
    assert!(
        bad.field_violations.iter().any(|v| v.field == field),
        "expected a violation of {field}, got {bad:?}"
    );
    assert!(
        status.message().contains(field),
        "message names {field}: {}",
        status.message()
    );
}

/// Bad input of every kind: INVALID_ARGUMENT naming the field (or
/// NOT_FOUND / ABORTED where documented), never INTERNAL, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_rejected_and_changes_nothing() {
    run_on(Backend::Sqlite, 3, async |cluster: &mut TestCluster| {
        let mut client = cluster.client(cluster.follower().await).await;
        let original = client
            .create_task(create_request("keep me"))
            .await
            .expect("create")
            .into_inner()
            .task
            .expect("task");

        let bad_creates: Vec<(CreateTaskRequest, &str)> = vec![
            (create_request(""), "title"),
            (create_request("   "), "title"),
            (create_request(&"t".repeat(257)), "title"),
            (
                CreateTaskRequest {
                    description: "d".repeat(8193),
                    ..create_request("t")
                },
                "description",
            ),
            (
                CreateTaskRequest {
                    assignee: "a".repeat(257),
                    ..create_request("t")
                },
                "assignee",
            ),
            (
                CreateTaskRequest {
                    labels: (0..33).map(|i| format!("l{i}")).collect(),
                    ..create_request("t")
                },
                "labels",
            ),
            (
                CreateTaskRequest {
                    labels: vec!["l".repeat(65)],
                    ..create_request("t")
                },
                "labels[0]",
            ),
            (
                CreateTaskRequest {
                    labels: vec!["ok".into(), "".into()],
                    ..create_request("t")
                },
                "labels[1]",
            ),
            (
                CreateTaskRequest {
                    labels: vec!["a b".into()],
                    ..create_request("t")
                },
                "labels[0]",
            ),
            (
                CreateTaskRequest {
                    labels: vec!["x".into(), "x".into()],
                    ..create_request("t")
                },
                "labels[1]",
            ),
            (
                CreateTaskRequest {
                    status: 99,
                    ..create_request("t")
                },
                "status",
            ),
            (
                CreateTaskRequest {
                    priority: -1,
                    ..create_request("t")
                },
                "priority",
            ),
            (
                CreateTaskRequest {
                    deadline: Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: 1_000_000_000,
                    }),
                    ..create_request("t")
                },
                "deadline",
            ),
            (
                CreateTaskRequest {
                    request_id: "r".repeat(129),
                    ..create_request("t")
                },
                "request_id",
            ),
        ];
        for (req, field) in bad_creates {
            let err = client.create_task(req).await.expect_err("bad create");
            assert_invalid(&err, field);
        }

        let update =
            |task: Option<proto::Task>, paths: &[&str], expected_version| UpdateTaskRequest {
                task,
                update_mask: mask(paths),
                expected_version,
                request_id: String::new(),
            };
        let with_id = |id: &str| {
            Some(proto::Task {
                id: id.into(),
                title: "new".into(),
                ..Default::default()
            })
        };
        let bad_updates = vec![
            (update(None, &["title"], 0), "task"),
            (update(with_id(""), &["title"], 0), "task.id"),
            (update(with_id(&original.id), &[], 0), "update_mask"),
            (
                UpdateTaskRequest {
                    update_mask: None,
                    ..update(with_id(&original.id), &[], 0)
                },
                "update_mask",
            ),
            (
                update(with_id(&original.id), &["nope"], 0),
                "update_mask.paths[0]",
            ),
            (
                update(with_id(&original.id), &["title", "version"], 0),
                "update_mask.paths[1]",
            ),
            (update(with_id(&original.id), &["status"], 0), "task.status"),
            (
                update(
                    Some(proto::Task {
                        id: original.id.clone(),
                        ..Default::default()
                    }),
                    &["title"],
                    0,
                ),
                "task.title",
            ),
        ];
        for (req, field) in bad_updates {
            let err = client.update_task(req).await.expect_err("bad update");
            assert_invalid(&err, field);
        }
        let err = client
            .update_task(update(with_id("no-such-task"), &["title"], 0))
            .await
            .expect_err("unknown id");
        assert_eq!(err.code(), Code::NotFound);
        let err = client
            .update_task(update(with_id(&original.id), &["title"], 7))
            .await
            .expect_err("version mismatch");
        assert_eq!(err.code(), Code::Aborted);

        for (req, field) in [
            (
                GetTaskRequest {
                    id: String::new(),
                    consistency: 0,
                },
                "id",
            ),
            (
                GetTaskRequest {
                    id: original.id.clone(),
                    consistency: 9,
                },
                "consistency",
            ),
        ] {
            assert_invalid(&client.get_task(req).await.expect_err("bad get"), field);
        }
        let err = client
            .get_task(GetTaskRequest {
                id: "no-such-task".into(),
                consistency: 0,
            })
            .await
            .expect_err("unknown id");
        assert_eq!(err.code(), Code::NotFound);
        let err = client
            .delete_task(DeleteTaskRequest {
                id: String::new(),
                expected_version: 0,
                request_id: String::new(),
            })
            .await
            .expect_err("empty id");
        assert_invalid(&err, "id");

        let bad_lists = vec![
            (
                ListTasksRequest {
                    page_size: 1001,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                ListTasksRequest {
                    page_size: -5,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                ListTasksRequest {
                    page_token: "not-ours".into(),
                    ..Default::default()
                },
                "page_token",
            ),
            (
                ListTasksRequest {
                    status: 17,
                    ..Default::default()
                },
                "status",
            ),
            (
                ListTasksRequest {
                    order_by: 5,
                    ..Default::default()
                },
                "order_by",
            ),
            (
                ListTasksRequest {
                    consistency: 5,
                    ..Default::default()
                },
                "consistency",
            ),
        ];
        for (req, field) in bad_lists {
            assert_invalid(&client.list_tasks(req).await.expect_err("bad list"), field);
        }
        // Nothing changed: still exactly the one task, at version 1.
        let tasks = client
            .list_tasks(ListTasksRequest::default())
            .await
            .expect("list")
            .into_inner()
            .tasks;
        assert_eq!(tasks, vec![original]);
    })
    .await
}

/// Every node reports SERVING on grpc.health.v1 once the cluster has a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_is_serving_on_every_node() {
    run_on(Backend::Sqlite, 3, async |cluster: &mut TestCluster| {
        for id in cluster.running_ids() {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://{}", cluster.addr(id)))
                    .unwrap()
                    .connect_lazy();
            let health = tonic_health::pb::health_client::HealthClient::new(channel);
            crate::support::eventually("SERVING", || {
                let mut health = health.clone();
                async move {
                    let reply = health
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: "taskd.v1.TaskService".into(),
                        })
                        .await
                        .ok()?;
                    (reply.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                        .then_some(())
                }
            })
            .await;
        }
    })
    .await
}

/// Updates and deletes take a request_id: a retry through another node gets
/// the first result (the version moved once; the delete succeeds again),
/// and the key reused for a different request is INVALID_ARGUMENT with
/// ErrorInfo reason REQUEST_ID_REUSED, changing nothing.
async fn write_request_ids(cluster: &mut TestCluster) {
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.follower().await;
    let mut via_leader = cluster.client(leader).await;
    let mut via_follower = cluster.client(follower).await;
    let task = via_leader
        .create_task(create_request("keyed"))
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let update = UpdateTaskRequest {
        task: Some(proto::Task {
            id: task.id.clone(),
            title: "keyed, v2".into(),
            ..Default::default()
        }),
        update_mask: mask(&["title"]),
        expected_version: 0,
        request_id: "update-once".into(),
    };
    let first = via_leader
        .update_task(update.clone())
        .await
        .unwrap()
        .into_inner();
    let again = via_follower
        .update_task(update.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first, "the retry answers the first result");
    assert_eq!(first.task.as_ref().unwrap().version, 2);

    let mut reused = update.clone();
    reused.task.as_mut().unwrap().title = "something else".into();
    let err = via_follower.update_task(reused).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let info = err.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "REQUEST_ID_REUSED");

    let delete = DeleteTaskRequest {
        id: task.id.clone(),
        expected_version: 2,
        request_id: "delete-once".into(),
    };
    via_follower.delete_task(delete.clone()).await.unwrap();
    via_leader
        .delete_task(delete)
        .await
        .expect("a retried delete succeeds again, not NOT_FOUND");
    let err = via_leader
        .create_task(CreateTaskRequest {
            request_id: "update-once".into(),
            ..create_request("keyed")
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "another kind of write: {err:?}"
    );
    let gone = via_leader
        .get_task(GetTaskRequest {
            id: task.id,
            consistency: ReadConsistency::Linearizable as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

on_both_backends!(write_request_ids);
