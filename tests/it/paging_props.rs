//! Property: a ListTasks walk, with random filters, order and page size, and
//! random creates and deletes between its pages, returns every task that
//! existed for the whole walk and matches the filters exactly once, returns
//! nothing that does not match, and keeps the requested order.
//!
//! One real node (SQLite) serves every case, emptied before each; a model of
//! the tasks it holds (every create and delete the test made) is the oracle.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost_types::Timestamp;
use taskd::proto::{CreateTaskRequest, DeleteTaskRequest, ListTasksRequest, Task, TaskOrder};
use taskd::store::Backend;

use crate::support::TestCluster;

const BASE_SECONDS: i64 = 2_000_000_000;
const ASSIGNEES: [&str; 3] = ["", "ada", "bob"];
const LABELS: [&str; 3] = ["x", "y", "z"];

/// A task to create: status 1..=4, assignee and labels from small sets so
/// that filters match some and miss others, a deadline in minutes or none.
#[derive(Debug, Clone)]
struct NewTask {
    status: i32,
    assignee: usize,
    labels: Vec<usize>,
    deadline: Option<i64>,
}

#[derive(Debug, Clone)]
struct Filter {
    status: i32,
    assignee: Option<usize>,
    label: Option<usize>,
    before: Option<i64>,
    after: Option<i64>,
    by_deadline: bool,
    page_size: i32,
}

/// What happens between two pages.
#[derive(Debug, Clone)]
enum Write {
    Create(NewTask),
    /// Deletes the n-th (mod len) task the node holds.
    Delete(usize),
}

#[derive(Debug, Clone)]
struct Case {
    initial: Vec<NewTask>,
    filter: Filter,
    between_pages: Vec<Vec<Write>>,
}

fn new_task() -> impl Strategy<Value = NewTask> {
    (
        0..=4i32,
        0..ASSIGNEES.len(),
        proptest::sample::subsequence((0..LABELS.len()).collect::<Vec<_>>(), 0..=2),
        proptest::option::of(0..20i64),
    )
        .prop_map(|(status, assignee, labels, deadline)| NewTask {
            status,
            assignee,
            labels,
            deadline,
        })
}

fn case() -> impl Strategy<Value = Case> {
    let filter = (
        0..=4i32,
        // (an empty assignee filter means "any": filter on the others)
        proptest::option::of(1..ASSIGNEES.len()),
        proptest::option::of(0..LABELS.len()),
        proptest::option::weighted(0.3, 0..20i64),
        proptest::option::weighted(0.3, 0..20i64),
        any::<bool>(),
        1..=6i32,
    )
        .prop_map(
            |(status, assignee, label, before, after, by_deadline, page_size)| Filter {
                status,
                assignee,
                label,
                before,
                after,
                by_deadline,
                page_size,
            },
        );
    let write = prop_oneof![
        new_task().prop_map(Write::Create),
        any::<usize>().prop_map(Write::Delete),
    ];
    (
        proptest::collection::vec(new_task(), 0..20),
        filter,
        proptest::collection::vec(proptest::collection::vec(write, 0..4), 0..8),
    )
        .prop_map(|(initial, filter, between_pages)| Case {
            initial,
            filter,
            between_pages,
        })
}

fn deadline(minutes: i64) -> Timestamp {
    Timestamp {
        seconds: BASE_SECONDS + minutes * 60,
        nanos: 0,
    }
}

fn matches(filter: &Filter, task: &Task) -> bool {
    let minutes = task.deadline.map(|d| (d.seconds - BASE_SECONDS) / 60);
    (filter.status == 0 || task.status == filter.status)
        && filter
            .assignee
            .is_none_or(|a| task.assignee == ASSIGNEES[a])
        && filter
            .label
            .is_none_or(|l| task.labels.iter().any(|t| t == LABELS[l]))
        && filter.before.is_none_or(|b| minutes.is_some_and(|m| m < b))
        && filter.after.is_none_or(|a| minutes.is_some_and(|m| m > a))
}

/// The sort key the API documents: (deadline, no deadline last | create time), then id.
fn key(filter: &Filter, task: &Task) -> (i64, i32, String) {
    let ts = if filter.by_deadline {
        task.deadline.unwrap_or(Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        })
    } else {
        task.create_time.expect("create_time")
    };
    (ts.seconds, ts.nanos, task.id.clone())
}

struct World {
    cluster: TestCluster,
    /// Every task the node holds, by id.
    tasks: HashMap<String, Task>,
}

impl World {
    async fn create(&mut self, new: &NewTask) -> Result<(), TestCaseError> {
        let req = CreateTaskRequest {
            title: "prop".into(),
            status: new.status,
            assignee: ASSIGNEES[new.assignee].into(),
            labels: new.labels.iter().map(|l| LABELS[*l].to_string()).collect(),
            deadline: new.deadline.map(deadline),
            ..Default::default()
        };
        let mut client = self.cluster.client(1).await;
        let reply = client.create_task(req).await;
        let task = reply.map_err(|s| TestCaseError::fail(format!("create: {s}")))?;
        let task = task.into_inner().task.expect("task");
        self.tasks.insert(task.id.clone(), task);
        Ok(())
    }

    async fn delete(&mut self, n: usize) -> Result<Option<String>, TestCaseError> {
        if self.tasks.is_empty() {
            return Ok(None);
        }
        let mut ids: Vec<&String> = self.tasks.keys().collect();
        ids.sort();
        let id = ids[n % ids.len()].clone();
        let mut client = self.cluster.client(1).await;
        let req = DeleteTaskRequest {
            id: id.clone(),
            ..Default::default()
        };
        client
            .delete_task(req)
            .await
            .map_err(|s| TestCaseError::fail(format!("delete: {s}")))?;
        self.tasks.remove(&id);
        Ok(Some(id))
    }

    /// Deletes every task, so that each case starts from an empty node (and
    /// walks stay short); concurrently, which the proposer batches.
    async fn clear(&mut self) -> Result<(), TestCaseError> {
        let deletes = self.tasks.keys().map(|id| {
            let cluster = &self.cluster;
            let id = id.clone();
            async move {
                let req = DeleteTaskRequest {
                    id,
                    ..Default::default()
                };
                cluster.client(1).await.delete_task(req).await
            }
        });
        for result in futures::future::join_all(deletes).await {
            result.map_err(|s| TestCaseError::fail(format!("delete: {s}")))?;
        }
        self.tasks.clear();
        Ok(())
    }

    async fn walk(&mut self, case: &Case) -> Result<(), TestCaseError> {
        self.clear().await?;
        for new in &case.initial {
            self.create(new).await?;
        }
        let f = &case.filter;
        let lived_before: HashSet<String> = self.tasks.keys().cloned().collect();
        let mut deleted = HashSet::new();
        let mut created_during = HashSet::new();
        let mut seen: Vec<Task> = Vec::new();
        let mut token = String::new();
        let mut client = self.cluster.client(1).await;
        for page_no in 0.. {
            prop_assert!(page_no < 1000, "paging does not end");
            let req = ListTasksRequest {
                page_size: f.page_size,
                page_token: token,
                status: f.status,
                assignee: f.assignee.map(|a| ASSIGNEES[a].into()).unwrap_or_default(),
                label: f.label.map(|l| LABELS[l].into()).unwrap_or_default(),
                deadline_before: f.before.map(deadline),
                deadline_after: f.after.map(deadline),
                order_by: if f.by_deadline {
                    TaskOrder::Deadline
                } else {
                    TaskOrder::CreateTime
                } as i32,
                ..Default::default()
            };
            let page = client
                .list_tasks(req)
                .await
                .map_err(|s| TestCaseError::fail(format!("list: {s}")))?
                .into_inner();
            prop_assert!(page.tasks.len() <= f.page_size as usize);
            seen.extend(page.tasks);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
            for write in case.between_pages.get(page_no).into_iter().flatten() {
                match write {
                    Write::Create(new) => {
                        let before: HashSet<String> = self.tasks.keys().cloned().collect();
                        self.create(new).await?;
                        created_during.extend(
                            self.tasks
                                .keys()
                                .filter(|id| !before.contains(*id))
                                .cloned(),
                        );
                    }
                    Write::Delete(n) => deleted.extend(self.delete(*n).await?),
                }
            }
        }
        let mut unique = HashSet::new();
        for task in &seen {
            prop_assert!(unique.insert(task.id.clone()), "{} returned twice", task.id);
            prop_assert!(matches(f, task), "{task:?} does not match {f:?}");
            prop_assert!(
                lived_before.contains(&task.id) || created_during.contains(&task.id),
                "{} was never created",
                task.id
            );
        }
        for id in lived_before.difference(&deleted) {
            let task = &self.tasks[id];
            if matches(f, task) {
                prop_assert!(unique.contains(id), "{task:?} was skipped");
            }
        }
        prop_assert!(
            seen.windows(2).all(|w| key(f, &w[0]) < key(f, &w[1])),
            "out of order"
        );
        Ok(())
    }
}

/// Random walks against one real node: never a skip, a repeat, a stray
/// task or a task out of order.
fn never_skips_or_repeats(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = runtime.block_on(TestCluster::start(1, backend));
    let world = std::cell::RefCell::new(World {
        cluster,
        tasks: HashMap::new(),
    });
    let config = Config {
        // About a second per 20 cases on SQLite; PROPTEST_CASES overrides.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64),
        // No regression files written next to the sources from CI; a failure
        // prints its minimal case, which a unit test can then pin.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        runtime.block_on(world.borrow_mut().walk(&case))
    });
    let world = world.into_inner();
    runtime.block_on(world.cluster.shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
}

mod list_paging_never_skips_or_repeats {
    use taskd::store::Backend;

    #[test]
    fn sqlite() {
        super::never_skips_or_repeats(Backend::Sqlite);
    }

    #[test]
    fn mysql() {
        super::never_skips_or_repeats(Backend::Mysql);
    }
}
