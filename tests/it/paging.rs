//! Keyset paging: stable while tasks are inserted between pages, including
//! before the cursor, and while tasks are deleted; page tokens bound to the
//! request they were made for.

use std::collections::HashSet;

use prost_types::Timestamp;
use taskd::proto::{
    CreateTaskRequest, DeleteTaskRequest, ListTasksRequest, Task, TaskOrder, TaskStatus,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both_backends;
use crate::support::{create_request, TestCluster};

async fn page_through(cluster: &TestCluster, order: TaskOrder) {
    let mut client = cluster.client(2).await;
    let mut before = HashSet::new();
    for i in 0..25 {
        let mut req = create_request(&format!("existing {i}"));
        // Deadlines out of creation order, some missing.
        if i % 4 != 0 {
            req.deadline = Some(prost_types::Timestamp {
                seconds: 2_000_000_000 - (i * 7919 % 25) * 60,
                nanos: 0,
            });
        }
        let task = client
            .create_task(req)
            .await
            .expect("create")
            .into_inner()
            .task
            .expect("task");
        before.insert(task.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_tasks(ListTasksRequest {
                page_size: 7,
                page_token: token.clone(),
                order_by: order as i32,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        assert!(page.tasks.len() <= 7);
        seen.extend(page.tasks);
        // Inserts between pages: they may or may not show up, but must not
        // make an existing task appear twice or vanish.
        for j in 0..3 {
            client
                .create_task(create_request(&format!("inserted {pages}.{j}")))
                .await
                .expect("create");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 100, "paging does not end");
    }
    let ids: Vec<&str> = seen.iter().map(|t| t.id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a task was returned twice");
    for id in &before {
        assert!(unique.contains(id.as_str()), "task {id} was skipped");
    }
    // The pages are in the requested order.
    let key = |t: &taskd::proto::Task| match order {
        TaskOrder::Deadline => (
            t.deadline.as_ref().map_or(i64::MAX, |d| d.seconds),
            t.id.clone(),
        ),
        _ => {
            let c = t.create_time.as_ref().expect("create_time");
            (c.seconds * 1_000_000_000 + i64::from(c.nanos), t.id.clone())
        }
    };
    assert!(
        seen.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "pages out of order"
    );
}

/// Paging by create time over more tasks than a page, inserting between pages.
async fn keyset_paging_by_create_time(cluster: &mut TestCluster) {
    page_through(cluster, TaskOrder::CreateTime).await;
}

/// The same by deadline, where tasks without a deadline come last.
async fn keyset_paging_by_deadline(cluster: &mut TestCluster) {
    page_through(cluster, TaskOrder::Deadline).await;
}

fn deadline(minutes: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: 2_000_000_000 + minutes * 60,
        nanos: 0,
    })
}

/// By deadline, with page size 3, between pages: a task inserted with a
/// deadline before the cursor, or a task already returned deleted, and a task
/// not yet returned deleted (it must not show up). Every task that lived
/// through the whole walk is returned exactly once, in order: OFFSET paging
/// fails this.
async fn paging_survives_writes_on_both_sides_of_the_cursor(cluster: &mut TestCluster) {
    let mut client = cluster.client(1).await;
    let walk_task = |title: String, minutes: i64| CreateTaskRequest {
        deadline: deadline(minutes),
        labels: vec!["walk".into()],
        ..create_request(&title)
    };
    // Deadlines 10, 20, …: room before each for inserts.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let req = walk_task(format!("existing {i}"), 10 * (i + 1));
        let task = client.create_task(req).await.expect("create").into_inner();
        tasks.push(task.task.expect("task"));
    }
    let list = |token: String| ListTasksRequest {
        page_size: 3,
        page_token: token,
        label: "walk".into(),
        order_by: TaskOrder::Deadline as i32,
        ..Default::default()
    };
    let mut seen: Vec<Task> = Vec::new();
    let (mut deleted_behind, mut deleted_ahead) = (HashSet::new(), HashSet::new());
    let mut token = String::new();
    for page_no in 0.. {
        assert!(page_no < 50, "paging does not end");
        let page = client.list_tasks(list(token)).await.expect("list");
        let page = page.into_inner();
        seen.extend(page.tasks);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        let cursor = seen
            .last()
            .expect("a full page")
            .deadline
            .expect("deadline");
        let cursor_minutes = (cursor.seconds - 2_000_000_000) / 60;
        // Alternately, a task that sorts before the cursor (OFFSET paging
        // would return a task twice) and the deletion of one already
        // returned (OFFSET would skip one); both at once would cancel out.
        let behind = if page_no % 2 == 0 {
            let before = walk_task(
                format!("inserted before cursor {page_no}"),
                cursor_minutes - 1,
            );
            client
                .create_task(before)
                .await
                .expect("create before cursor");
            None
        } else {
            seen.iter()
                .map(|t| t.id.clone())
                .find(|id| !deleted_behind.contains(id))
        };
        // And always one still ahead of the cursor.
        let ahead = tasks
            .iter()
            .map(|t| t.id.clone())
            .find(|id| !deleted_ahead.contains(id) && !seen.iter().any(|s| &s.id == id));
        if let Some(id) = &behind {
            deleted_behind.insert(id.clone());
        }
        if let Some(id) = &ahead {
            deleted_ahead.insert(id.clone());
        }
        for id in [behind, ahead].into_iter().flatten() {
            let req = DeleteTaskRequest {
                id,
                ..Default::default()
            };
            client.delete_task(req).await.expect("delete");
        }
    }
    assert!(!deleted_behind.is_empty() && !deleted_ahead.is_empty());
    let ids: Vec<&str> = seen.iter().map(|t| t.id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "a task was returned twice: {ids:?}"
    );
    for task in &tasks {
        let returned = unique.contains(task.id.as_str());
        if deleted_ahead.contains(&task.id) {
            assert!(
                !returned,
                "{:?} was deleted ahead of the cursor and returned",
                task.title
            );
        } else {
            assert!(
                returned,
                "{:?} lived through the walk and was skipped",
                task.title
            );
        }
    }
    for task in &seen {
        assert!(
            !task.title.starts_with("inserted before cursor"),
            "a task inserted before the cursor came back: {:?}",
            task.title
        );
    }
    let key = |t: &Task| (t.deadline.expect("deadline").seconds, t.id.clone());
    assert!(
        seen.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "pages out of order"
    );
}

/// A page token resumes only the request it was made for: the same token
/// with any other filter or order is INVALID_ARGUMENT naming `page_token`,
/// while a different page size is fine.
async fn page_token_is_bound_to_every_filter_and_the_order(cluster: &mut TestCluster) {
    let mut client = cluster.client(1).await;
    for i in 0..3 {
        client
            .create_task(CreateTaskRequest {
                assignee: "ada".into(),
                labels: vec!["bound".into()],
                deadline: deadline(i),
                ..create_request(&format!("bound {i}"))
            })
            .await
            .expect("create");
    }
    let first = ListTasksRequest {
        page_size: 1,
        status: TaskStatus::Todo as i32,
        assignee: "ada".into(),
        label: "bound".into(),
        deadline_before: deadline(100),
        deadline_after: deadline(-100),
        order_by: TaskOrder::Deadline as i32,
        ..Default::default()
    };
    let page = client
        .list_tasks(first.clone())
        .await
        .expect("first page")
        .into_inner();
    assert_eq!(page.tasks.len(), 1);
    assert!(!page.next_page_token.is_empty());
    let next = ListTasksRequest {
        page_token: page.next_page_token,
        ..first.clone()
    };
    let resized = ListTasksRequest {
        page_size: 5,
        ..next.clone()
    };
    let rest = client.list_tasks(resized).await.expect("resized page");
    assert_eq!(
        rest.into_inner().tasks.len(),
        2,
        "the token resumes after the first task"
    );

    let variants = [
        (
            "status",
            ListTasksRequest {
                status: TaskStatus::Done as i32,
                ..next.clone()
            },
        ),
        (
            "status unset",
            ListTasksRequest {
                status: 0,
                ..next.clone()
            },
        ),
        (
            "assignee",
            ListTasksRequest {
                assignee: "bob".into(),
                ..next.clone()
            },
        ),
        (
            "assignee unset",
            ListTasksRequest {
                assignee: String::new(),
                ..next.clone()
            },
        ),
        (
            "label",
            ListTasksRequest {
                label: "other".into(),
                ..next.clone()
            },
        ),
        (
            "deadline_before",
            ListTasksRequest {
                deadline_before: deadline(99),
                ..next.clone()
            },
        ),
        (
            "deadline_before unset",
            ListTasksRequest {
                deadline_before: None,
                ..next.clone()
            },
        ),
        (
            "deadline_after",
            ListTasksRequest {
                deadline_after: deadline(-99),
                ..next.clone()
            },
        ),
        (
            "order_by",
            ListTasksRequest {
                order_by: TaskOrder::CreateTime as i32,
                ..next.clone()
            },
        ),
    ];
    for (what, req) in variants {
        let status = client
            .list_tasks(req)
            .await
            .expect_err(&format!("a token reused with another {what} is refused"));
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        let fields: Vec<String> = status
            .get_details_bad_request()
            .expect("BadRequest details")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["page_token"], "{what}");
    }
}

on_both_backends!(
    keyset_paging_by_create_time,
    keyset_paging_by_deadline,
    paging_survives_writes_on_both_sides_of_the_cursor,
    page_token_is_bound_to_every_filter_and_the_order
);
