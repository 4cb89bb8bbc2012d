//! Keyset paging: stable while tasks are inserted between pages.

use std::collections::HashSet;

use taskd::proto::{ListTasksRequest, TaskOrder};

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

on_both_backends!(keyset_paging_by_create_time, keyset_paging_by_deadline);
