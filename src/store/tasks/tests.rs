use crate::domain::{Command, NewTask, Task, TaskPriority, TaskStatus};

use super::super::testutil::{apply, create, each_backend};
use super::super::{Cursor, ListOrder, ListQuery, Store};
use super::list_stmt;

const STATUSES: [TaskStatus; 3] = [TaskStatus::Todo, TaskStatus::InProgress, TaskStatus::Done];

/// 40 tasks with ties on create_time and deadline, ids whose byte order
/// differs from a case-insensitive or accent-folding order, and every mix of
/// filters.
fn fixture() -> Vec<Command> {
    let ids = ["A", "B", "a", "b", "é", "z", "Z", "0"];
    (0..40)
        .map(|i| {
            let id = format!("{}{:02}", ids[i % ids.len()], i / ids.len());
            let task = NewTask {
                title: format!("task {i} ✓"),
                description: "d".repeat(i),
                status: STATUSES[i % 3],
                priority: TaskPriority::from_i32((i % 5) as i32).unwrap(),
                deadline: (i % 4 != 0).then_some(1_000 + (i as i64 % 7) * 10),
                assignee: ["", "ann", "Ann", "bob"][i % 4].to_owned(),
                labels: match i % 3 {
                    0 => vec![],
                    1 => vec!["x".into(), "bug".into()],
                    _ => vec!["bug".into(), "bug".into(), "Bug".into()],
                },
            };
            // Five tasks share each create_time.
            create(&id, None, 100 + (i as i64 / 5), task)
        })
        .collect()
}

fn oracle(all: &[Task], query: &ListQuery) -> Vec<Task> {
    let mut out: Vec<Task> = all
        .iter()
        .filter(|t| query.status.is_none_or(|s| t.status == s))
        .filter(|t| query.assignee.as_ref().is_none_or(|a| &t.assignee == a))
        .filter(|t| query.label.as_ref().is_none_or(|l| t.labels.contains(l)))
        .filter(|t| {
            query
                .deadline_before
                .is_none_or(|b| t.deadline.is_some_and(|d| d < b))
        })
        .filter(|t| {
            query
                .deadline_after
                .is_none_or(|a| t.deadline.is_some_and(|d| d > a))
        })
        .cloned()
        .collect();
    out.sort_by_key(|t| (query.cursor_of(t).key, t.id.clone()));
    out
}

/// Pages through `query` `limit` at a time, resuming from each page's cursor.
async fn all_pages(store: &Store, mut query: ListQuery) -> Vec<Task> {
    let mut out = Vec::new();
    loop {
        let page = store.list_tasks(&query).await.unwrap();
        assert!(page.len() <= query.limit as usize);
        let Some(last) = page.last() else {
            return out;
        };
        query.after = Some(query.cursor_of(last));
        out.extend(page);
    }
}

fn query(order: ListOrder) -> ListQuery {
    ListQuery {
        status: None,
        assignee: None,
        label: None,
        deadline_before: None,
        deadline_after: None,
        order,
        after: None,
        limit: 3,
    }
}

/// Every filter, alone and combined, in both orders, paged three at a time:
/// exactly the tasks an in-memory filter and sort give — none twice, none
/// skipped.
#[tokio::test]
async fn list_filters_orders_and_keyset_paging() {
    each_backend(async |store: Store| {
        let created = apply(&store, &fixture()).await;
        let all = store.export().await.unwrap().tasks;
        assert_eq!(all.len(), created.len());
        for order in [ListOrder::CreateTime, ListOrder::Deadline] {
            let mut queries = vec![query(order)];
            for status in STATUSES {
                queries.push(ListQuery {
                    status: Some(status),
                    ..query(order)
                });
            }
            for assignee in ["ann", "Ann", "", "nobody"] {
                queries.push(ListQuery {
                    assignee: Some(assignee.into()),
                    ..query(order)
                });
            }
            for label in ["bug", "Bug", "x", "none"] {
                queries.push(ListQuery {
                    label: Some(label.into()),
                    ..query(order)
                });
            }
            queries.push(ListQuery {
                deadline_before: Some(1_030),
                ..query(order)
            });
            queries.push(ListQuery {
                deadline_after: Some(1_030),
                ..query(order)
            });
            queries.push(ListQuery {
                deadline_after: Some(i64::MIN),
                ..query(order)
            });
            queries.push(ListQuery {
                status: Some(TaskStatus::Todo),
                assignee: Some("bob".into()),
                label: Some("bug".into()),
                deadline_after: Some(1_000),
                deadline_before: Some(1_060),
                ..query(order)
            });
            queries.push(ListQuery {
                limit: 1,
                ..query(order)
            });
            queries.push(ListQuery {
                limit: 1000,
                ..query(order)
            });
            for q in queries {
                let expected = oracle(&all, &q);
                assert_eq!(all_pages(&store, q.clone()).await, expected, "{q:?}");
            }
        }
    })
    .await;
}

/// A cursor resumes strictly after its task, also across ties on the key,
/// and a cursor for a task since deleted still resumes at the right place.
#[tokio::test]
async fn list_resumes_after_cursor() {
    each_backend(async |store: Store| {
        apply(&store, &fixture()).await;
        let all = store.export().await.unwrap().tasks;
        let by_time = oracle(&all, &query(ListOrder::CreateTime));
        let q = ListQuery {
            after: Some(Cursor {
                key: by_time[6].create_time,
                id: by_time[6].id.clone(),
            }),
            limit: 4,
            ..query(ListOrder::CreateTime)
        };
        assert_eq!(store.list_tasks(&q).await.unwrap(), by_time[7..11].to_vec());

        let ghost = ListQuery {
            after: Some(Cursor {
                key: by_time[6].create_time,
                id: format!("{}~", by_time[6].id),
            }),
            ..q.clone()
        };
        let resumed = store.list_tasks(&ghost).await.unwrap();
        assert!(resumed
            .iter()
            .all(|t| (t.create_time, &t.id) > (by_time[6].create_time, &by_time[6].id)));

        let none = ListQuery { limit: 0, ..q };
        assert!(store.list_tasks(&none).await.unwrap().is_empty());
        assert_eq!(store.get_task("missing").await.unwrap(), None);
    })
    .await;
}

#[test]
fn list_sql_is_keyset_not_offset() {
    let q = ListQuery {
        label: Some("bug".into()),
        after: Some(Cursor {
            key: 5,
            id: "a".into(),
        }),
        ..query(ListOrder::Deadline)
    };
    let stmt = list_stmt(&q);
    assert!(
        stmt.sql
            .contains("(deadline > ? OR (deadline = ? AND id > ?))"),
        "{}",
        stmt.sql
    );
    assert!(
        stmt.sql.ends_with("ORDER BY deadline, id LIMIT ?"),
        "{}",
        stmt.sql
    );
    assert!(!stmt.sql.contains("OFFSET"));
    assert_eq!(stmt.args.len(), 5);
}
