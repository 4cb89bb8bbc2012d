//! The set workload that the crash tests share: several writers, each with
//! one create in flight at all times, spread over every node, and the check
//! of every node's final contents against what the writers saw
//! ([`taskd_chaos::set::check`]: acknowledged exactly once under the
//! acknowledged id, unknown at most once, nothing never sent).
//!
//! A writer retries a create that failed (the failure may have been an answer
//! lost after the write was applied) on the next node, with the same
//! request_id, until it is acknowledged or [`MAX_ATTEMPTS`] ran out; that is
//! what makes a kill in the middle of the run exercise the server's
//! deduplication. Run without request_ids, the same retries duplicate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::{CreateTaskRequest, ListTasksRequest, ReadConsistency};
use taskd_chaos::set::{self, Attempt, SetViolation};

use crate::process::channel;
use crate::support::eventually;

/// Attempts of one create before the writer gives up (and records it unknown).
const MAX_ATTEMPTS: usize = 30;

/// How the writers reach the cluster.
#[derive(Clone)]
pub(crate) enum Via {
    /// Raw gRPC, each attempt at the next node; `request_ids: false` sends
    /// none (a client that gives the server no way to deduplicate a retry).
    Grpc {
        addrs: Vec<String>,
        request_ids: bool,
    },
    /// The Rust client, which retries by itself with its own request_id.
    RustClient(taskd_client::TaskClient),
}

#[derive(Default)]
struct Shared {
    outcomes: Mutex<BTreeMap<String, Attempt>>,
    acked: AtomicUsize,
    /// Attempts that followed a failed attempt of the same create.
    retries: AtomicUsize,
    /// Creates whose retry failed too (a retry-once client would have failed).
    failed_twice: AtomicUsize,
    stop: AtomicBool,
}

/// Writers running in the background until [`Writers::stop`].
pub(crate) struct Writers {
    shared: Arc<Shared>,
    tasks: tokio::task::JoinSet<()>,
}

/// What the writers saw, once stopped.
pub(crate) struct Seen {
    pub outcomes: BTreeMap<String, Attempt>,
    pub retries: usize,
    /// Creates that failed on a first retry as well.
    pub failed_twice: usize,
}

impl Writers {
    /// Starts `n` writers; writer `w`'s creates are titled
    /// "{prefix}writer {w} write {i}" (a prefix keeps runs apart).
    pub(crate) fn start(prefix: &str, n: usize, via: Via) -> Self {
        let shared = Arc::new(Shared::default());
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..n {
            tasks.spawn(write_until_stopped(
                format!("{prefix}writer {w}"),
                w,
                via.clone(),
                shared.clone(),
            ));
        }
        Self { shared, tasks }
    }

    /// How many creates were acknowledged so far.
    pub(crate) fn acked(&self) -> usize {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` creates were acknowledged in all.
    pub(crate) async fn wait_acked(&self, n: usize) {
        eventually(&format!("{n} acknowledged creates"), || async {
            (self.acked() >= n).then_some(())
        })
        .await
    }

    /// Stops every writer (each finishes its current create) and returns what they saw.
    pub(crate) async fn stop(mut self) -> Seen {
        self.shared.stop.store(true, Ordering::Relaxed);
        while let Some(joined) = self.tasks.join_next().await {
            joined.expect("writer task");
        }
        Seen {
            outcomes: std::mem::take(&mut *self.shared.outcomes.lock().unwrap()),
            retries: self.shared.retries.load(Ordering::Relaxed),
            failed_twice: self.shared.failed_twice.load(Ordering::Relaxed),
        }
    }
}

async fn write_until_stopped(name: String, w: usize, via: Via, shared: Arc<Shared>) {
    let clients: Vec<_> = match &via {
        Via::Grpc { addrs, .. } => addrs
            .iter()
            .map(|a| TaskServiceClient::new(channel(a)))
            .collect(),
        Via::RustClient(_) => Vec::new(),
    };
    let mut i = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        let title = format!("{name} write {i}");
        let outcome = match &via {
            Via::Grpc { request_ids, .. } => {
                let request_id = match request_ids {
                    true => format!("rid {title}"),
                    false => String::new(),
                };
                create_with_retries(&clients, w + i, &title, &request_id, &shared).await
            }
            Via::RustClient(client) => {
                let request = taskd_client::pb::CreateTaskRequest {
                    title: title.clone(),
                    ..Default::default()
                };
                match client.create_task(request).await {
                    Ok(task) => Attempt::Acknowledged(task.id),
                    Err(_) => Attempt::Unknown,
                }
            }
        };
        if matches!(outcome, Attempt::Acknowledged(_)) {
            shared.acked.fetch_add(1, Ordering::Relaxed);
        }
        shared.outcomes.lock().unwrap().insert(title, outcome);
        i += 1;
    }
}

/// One create, retried on the next node after any failure (every failure is
/// treated as ambiguous: the write may or may not have been applied).
async fn create_with_retries(
    clients: &[TaskServiceClient<tonic::transport::Channel>],
    first: usize,
    title: &str,
    request_id: &str,
    shared: &Shared,
) -> Attempt {
    for attempt in 0..MAX_ATTEMPTS {
        if attempt == 2 {
            shared.failed_twice.fetch_add(1, Ordering::Relaxed);
        }
        if attempt > 0 {
            shared.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await; // a client's backoff
        }
        let mut request = tonic::Request::new(CreateTaskRequest {
            title: title.into(),
            request_id: request_id.into(),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(2));
        let mut client = clients[(first + attempt) % clients.len()].clone();
        if let Ok(reply) = client.create_task(request).await {
            return Attempt::Acknowledged(reply.into_inner().task.expect("task").id);
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
    }
    Attempt::Unknown
}

/// Every task on the node at `addr`, read from its own database (STALE),
/// as (title, id) pairs, following every page.
pub(crate) async fn stored_tasks(addr: &str) -> Vec<(String, String)> {
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
            .unwrap_or_else(|s| panic!("ListTasks at {addr}: {s:?}"))
            .into_inner();
        found.extend(page.tasks.into_iter().map(|t| (t.title, t.id)));
        if page.next_page_token.is_empty() {
            return found;
        }
        page_token = page.next_page_token;
    }
}

/// [`set::check`] of every node of `members` against `seen`: the violations
/// found, by node (empty when every node is right).
pub(crate) async fn violations(
    members: &BTreeMap<u64, String>,
    seen: &BTreeMap<String, Attempt>,
) -> BTreeMap<u64, Vec<SetViolation>> {
    let mut by_node = BTreeMap::new();
    for (node, addr) in members {
        if let Err(v) = set::check(seen, &stored_tasks(addr).await) {
            by_node.insert(*node, v);
        }
    }
    by_node
}

/// Panics unless every node of `members` passes [`set::check`] against `seen`.
pub(crate) async fn assert_every_node_consistent(
    members: &BTreeMap<u64, String>,
    seen: &BTreeMap<String, Attempt>,
) {
    let violations = violations(members, seen).await;
    assert!(violations.is_empty(), "set violations: {violations:?}");
}
