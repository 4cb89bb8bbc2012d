//! The checks after a run: the register histories (linearizability, with
//! [`crate::checker`]), the set (with [`crate::set`]), the STALE reads
//! (with [`crate::stale`]), and the replicas against each other.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use taskd_client::pb;

use crate::checker::{self, Call, Operation, Outcome, State};
use crate::cluster::{list_all, Cluster};
use crate::history::{Kind, Op, Seen, Status};
use crate::set::{self, Attempt, SetViolation};
use crate::stale;

fn state(s: &Seen) -> State {
    State::new(&s.value, s.version)
}

/// One register's history in the checker's terms.
pub fn register_history(id: &str, ops: &[Op]) -> Vec<Operation> {
    let mut history = Vec::new();
    for op in ops.iter().filter(|o| o.task.as_deref() == Some(id)) {
        let call = match op.kind {
            Kind::Read => Call::Read,
            Kind::Write => Call::Write {
                value: op.value.clone().unwrap_or_default(),
            },
            Kind::Cas => Call::Cas {
                expected_version: op.expected_version.unwrap_or_default(),
                value: op.value.clone().unwrap_or_default(),
            },
            Kind::Create | Kind::StaleRead => continue,
        };
        let known =
            |outcome| Operation::known(call.clone(), op.invoked_us, op.completed_us, outcome);
        match (op.status, &op.seen) {
            (Status::Ok, Some(seen)) => history.push(known(Outcome::Ok(state(seen)))),
            (Status::Fail, _) if op.rejected => history.push(known(Outcome::Rejected)),
            (Status::Unknown, _) if op.kind != Kind::Read => {
                history.push(Operation::unknown(call.clone(), op.invoked_us))
            }
            // Failed calls, and reads that never answered, changed nothing.
            _ => {}
        }
    }
    history
}

/// The registers' verdict.
#[derive(Debug, Default)]
pub struct Registers {
    /// Tasks whose history is not linearizable.
    pub violations: Vec<String>,
    /// Tasks whose search did not finish within the budget.
    pub unchecked: Vec<String>,
}

/// Checks each register on a thread of its own, within `budget` in all.
pub fn check_registers(keys: &[(String, Seen)], ops: &[Op], budget: Duration) -> Registers {
    let (tx, rx) = mpsc::channel();
    let mut pending: HashSet<String> = HashSet::new();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let jobs: Vec<(String, State, Vec<Operation>)> = keys
        .iter()
        .map(|(id, initial)| (id.clone(), state(initial), register_history(id, ops)))
        .filter(|(_, _, h)| !h.is_empty())
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(jobs));
    for (id, _, _) in queue.lock().unwrap().iter() {
        pending.insert(id.clone());
    }
    for _ in 0..workers {
        let (queue, tx) = (queue.clone(), tx.clone());
        std::thread::spawn(move || loop {
            let job = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some((id, initial, history)) = job else {
                return;
            };
            let ok = checker::check(&initial, &history).is_ok();
            if tx.send((id, ok)).is_err() {
                return;
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + budget;
    let mut verdict = Registers::default();
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((id, ok)) => {
                pending.remove(&id);
                if !ok {
                    verdict.violations.push(id);
                }
            }
            Err(_) => break,
        }
    }
    verdict.unchecked = pending.into_iter().collect();
    verdict.violations.sort();
    verdict.unchecked.sort();
    verdict
}

/// What the set check found, counted the way the summary reports it.
#[derive(Debug, Default)]
pub struct SetVerdict {
    pub lost: usize,
    pub duplicated: usize,
    /// Never attempted, or present under another id than acknowledged.
    pub phantom: usize,
    pub details: Vec<String>,
}

/// The set's attempts, from the creates in the history.
pub fn set_attempts(ops: &[Op]) -> BTreeMap<String, Attempt> {
    let mut attempts: BTreeMap<String, Attempt> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.kind == Kind::Create) {
        let Some(value) = &op.value else { continue };
        match (op.status, &op.task) {
            (Status::Ok, Some(id)) => {
                attempts.insert(value.clone(), Attempt::Acknowledged(id.clone()));
            }
            (Status::Unknown, _) => {
                attempts.entry(value.clone()).or_insert(Attempt::Unknown);
            }
            _ => {}
        }
    }
    attempts
}

pub fn check_set(ops: &[Op], found: &[(String, String)]) -> SetVerdict {
    let mut verdict = SetVerdict::default();
    if let Err(violations) = set::check(&set_attempts(ops), found) {
        for v in violations {
            match &v {
                SetViolation::Lost { .. } => verdict.lost += 1,
                SetViolation::Duplicated { .. } => verdict.duplicated += 1,
                SetViolation::WrongId { .. } | SetViolation::NeverAttempted { .. } => {
                    verdict.phantom += 1
                }
            }
            verdict.details.push(format!("{v:?}"));
        }
    }
    verdict
}

/// Checks every node's STALE reads of every register.
pub fn check_stale(keys: &[(String, Seen)], ops: &[Op]) -> Vec<String> {
    let mut written: HashMap<&str, HashSet<String>> = HashMap::new();
    for (id, initial) in keys {
        written.entry(id).or_default().insert(initial.value.clone());
    }
    // Per node id, not per slot: a new node in an old slot starts empty.
    let mut reads: BTreeMap<(u64, &str), Vec<State>> = BTreeMap::new();
    for op in ops {
        let Some(id) = op.task.as_deref() else {
            continue;
        };
        match (op.kind, &op.value, &op.seen) {
            (Kind::Write | Kind::Cas, Some(v), _) => {
                written.entry(id).or_default().insert(v.clone());
            }
            (Kind::StaleRead, _, Some(seen)) if op.status == Status::Ok => {
                reads.entry((op.node_id, id)).or_default().push(state(seen));
            }
            _ => {}
        }
    }
    let empty = HashSet::new();
    let mut problems = Vec::new();
    for ((node, id), seen) in reads {
        let written = written.get(id).unwrap_or(&empty);
        if let Err(v) = stale::check(written, &seen) {
            problems.push(format!("node {node}, task {id}: {v:?}"));
        }
    }
    problems
}

/// The final read of the set: every task, linearizably, from whichever node
/// answers first; (title, id) of the set workload's tasks.
pub async fn final_set(
    cluster: &Cluster,
    within: Duration,
) -> Result<Vec<(String, String)>, String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        for c in &cluster.clients {
            match list_all(c, pb::ReadConsistency::Unspecified).await {
                Ok(tasks) => {
                    return Ok(tasks
                        .into_iter()
                        .filter(|t| t.title.starts_with('s'))
                        .map(|t| (t.title, t.id))
                        .collect())
                }
                Err(e) => last = crate::history::describe(&e),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "no node answered the final read within {within:?}: {last}"
    ))
}

/// Waits until every node reports the same applied index, twice in a row,
/// and the leader's members are exactly the nodes the slots run (removed
/// nodes are gone, new ones in); then compares every replica's tasks (read
/// STALE from each node).
pub async fn compare_replicas(cluster: &Cluster, within: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + within;
    let mut previous: Option<u64> = None;
    let ids = cluster.ids.all();
    let want: BTreeSet<u64> = ids.iter().copied().collect();
    let applied = loop {
        let statuses = cluster.statuses().await;
        let indexes: Vec<Option<u64>> = statuses
            .iter()
            .zip(&ids)
            // An answer from another node than the slot should run is none.
            .map(|(s, id)| s.as_ref().filter(|s| s.node_id == *id))
            .map(|s| s.map(|s| s.last_applied_index))
            .collect();
        let members: Vec<BTreeSet<u64>> = statuses
            .iter()
            .flatten()
            .filter(|s| s.role == pb::NodeRole::Leader as i32)
            .map(|s| s.members.iter().map(|m| m.node_id).collect())
            .collect();
        let first = indexes[0];
        let same =
            first.is_some() && indexes.iter().all(|i| *i == first) && members.contains(&want);
        match (same, previous) {
            (true, Some(p)) if Some(p) == first => break p,
            (true, _) => previous = first,
            _ => previous = None,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the nodes {ids:?} did not reach the same applied index with members {want:?} \
                 within {within:?}: applied {indexes:?}, leader's members {members:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut reference: Option<Vec<String>> = None;
    for (i, c) in cluster.clients.iter().enumerate() {
        let mut tasks = list_all(c, pb::ReadConsistency::Stale)
            .await
            .map_err(|e| format!("node {}: {}", ids[i], crate::history::describe(&e)))?;
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        let rows: Vec<String> = tasks.iter().map(|t| format!("{t:?}")).collect();
        match &reference {
            None => reference = Some(rows),
            Some(r) if *r != rows => {
                let diff = r.iter().zip(&rows).find(|(a, b)| a != b);
                return Err(format!(
                    "node {} differs from node {} ({} vs {} tasks); first difference: {diff:?}",
                    ids[i],
                    ids[0],
                    rows.len(),
                    r.len()
                ));
            }
            Some(_) => {}
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stale_read(node_id: u64, value: &str, version: u64) -> Op {
        Op {
            process: 9,
            kind: Kind::StaleRead,
            node: 1,
            node_id,
            task: Some("t".into()),
            value: None,
            expected_version: None,
            request_id: None,
            invoked_us: 0,
            completed_us: 0,
            status: Status::Ok,
            rejected: false,
            seen: Some(Seen {
                value: value.into(),
                version,
            }),
            error: None,
        }
    }

    /// A new node in an old slot starts behind the node it replaced: that
    /// is no going back. The same node going back still is.
    #[test]
    fn stale_reads_go_by_node_id_not_by_slot() {
        let keys = vec![(
            "t".to_string(),
            Seen {
                value: "a".into(),
                version: 1,
            },
        )];
        let mut write = stale_read(1, "b", 0);
        (write.kind, write.value, write.seen) = (Kind::Write, Some("b".into()), None);
        let replaced = [write.clone(), stale_read(1, "b", 2), stale_read(4, "a", 1)];
        assert!(check_stale(&keys, &replaced).is_empty());
        let went_back = [write, stale_read(4, "b", 2), stale_read(4, "a", 1)];
        assert_eq!(check_stale(&keys, &went_back).len(), 1);
    }
}
