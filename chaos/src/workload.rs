//! The clients: register workers (read, write, CAS on a few tasks at a
//! time), set workers (creates with request_ids), and one STALE reader per
//! node. Every call goes to a node picked at random, with a short deadline,
//! and lands in the [`Recorder`]. Every write carries a unique value.
//!
//! Registers rotate: a task is used for a few seconds, or until it has
//! gathered a handful of unknown outcomes, then a fresh one takes its
//! place. That keeps each task's history small enough for the
//! linearizability search (unknown writes are what make it expensive).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taskd_client::pb;

use crate::cluster::{NodeClient, SlotIds};
use crate::history::{describe, is_version_mismatch, write_error_status, Kind, Op, Recorder};
use crate::history::{Seen, Status};

const READ_DEADLINE: Duration = Duration::from_secs(1);
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// Registers in use at once.
const ACTIVE_KEYS: usize = 3;
const KEY_MAX_AGE: Duration = Duration::from_secs(3);
const KEY_MAX_OPS: u32 = 120;
const KEY_MAX_UNKNOWN: u32 = 5;
/// Pacing of each worker between calls (a rate, not a synchronisation).
const PACE: Duration = Duration::from_millis(5);

/// A register task.
#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    pub initial: Seen,
    opened: Option<Instant>,
    ops: u32,
    unknowns: u32,
    /// The newest version any client saw: what a CAS expects.
    version_hint: u64,
}

/// The register tasks, and which are in use.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<Key>,
    active: Vec<usize>,
    next: usize,
}

impl KeyRing {
    pub fn new(keys: Vec<(String, Seen)>) -> Self {
        let keys: Vec<Key> = keys
            .into_iter()
            .map(|(id, initial)| Key {
                version_hint: initial.version,
                id,
                initial,
                opened: None,
                ops: 0,
                unknowns: 0,
            })
            .collect();
        let mut ring = KeyRing {
            keys,
            active: Vec::new(),
            next: 0,
        };
        while ring.active.len() < ACTIVE_KEYS && ring.next < ring.keys.len() {
            let k = ring.open();
            ring.active.push(k);
        }
        ring
    }

    fn open(&mut self) -> usize {
        let k = self.next;
        self.next += 1;
        self.keys[k].opened = Some(Instant::now());
        k
    }

    /// A task in use: (index, id, version a CAS should expect, whether it
    /// may still be written: a worn task with no fresh one left only reads,
    /// so that its history stays small enough to check).
    fn pick(&mut self, rng: &mut fastrand::Rng) -> (usize, String, u64, bool) {
        let slot = rng.usize(..self.active.len());
        let k = self.active[slot];
        let key = &self.keys[k];
        let worn = key.ops >= KEY_MAX_OPS
            || key.unknowns >= KEY_MAX_UNKNOWN
            || key.opened.is_some_and(|t| t.elapsed() >= KEY_MAX_AGE);
        let (k, writable) = if !worn {
            (k, true)
        } else if self.next < self.keys.len() {
            let fresh = self.open();
            self.active[slot] = fresh;
            (fresh, true)
        } else {
            (k, false)
        };
        let key = &mut self.keys[k];
        key.ops += 1;
        (k, key.id.clone(), key.version_hint, writable)
    }

    fn note(&mut self, k: usize, status: Status, seen: Option<u64>) {
        let key = &mut self.keys[k];
        if status == Status::Unknown {
            key.unknowns += 1;
        }
        if let Some(v) = seen {
            key.version_hint = key.version_hint.max(v);
        }
    }

    /// A task that has been in use (for the STALE readers).
    fn any_opened(&self, rng: &mut fastrand::Rng) -> Option<String> {
        (self.next > 0).then(|| self.keys[rng.usize(..self.next)].id.clone())
    }

    /// Every register task with its initial state.
    pub fn keys(&self) -> Vec<(String, Seen)> {
        self.keys
            .iter()
            .map(|k| (k.id.clone(), k.initial.clone()))
            .collect()
    }
}

/// What every worker shares.
#[derive(Debug, Clone)]
pub struct Shared {
    pub clients: Vec<NodeClient>,
    /// Which node runs in each slot of `clients`.
    pub ids: Arc<SlotIds>,
    pub recorder: Arc<Recorder>,
    pub keys: Arc<Mutex<KeyRing>>,
    pub stop: Arc<AtomicBool>,
    pub seed: u64,
}

fn pick_node(rng: &mut fastrand::Rng, n: usize) -> usize {
    rng.usize(1..=n)
}

/// One register client: reads, writes and CASes on the keys in use.
pub async fn register_worker(shared: Shared, process: usize) {
    let mut rng = fastrand::Rng::with_seed(shared.seed ^ (0x5eed_0000 + process as u64));
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        seq += 1;
        let (k, id, hint, writable) = shared
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pick(&mut rng);
        let node = pick_node(&mut rng, shared.clients.len());
        let client = &shared.clients[node - 1];
        let roll = if writable { rng.u8(..10) } else { 0 };
        let mut op = Op {
            process,
            kind: Kind::Read,
            node,
            node_id: shared.ids.get(node),
            task: Some(id.clone()),
            value: None,
            expected_version: None,
            request_id: None,
            invoked_us: shared.recorder.now_us(),
            completed_us: 0,
            status: Status::Ok,
            rejected: false,
            seen: None,
            error: None,
        };
        if roll < 4 {
            let mut request = tonic::Request::new(pb::GetTaskRequest {
                id: id.clone(),
                consistency: pb::ReadConsistency::Unspecified as i32,
            });
            request.set_timeout(READ_DEADLINE);
            let result =
                tokio::time::timeout(READ_DEADLINE, client.task.clone().get_task(request)).await;
            match result {
                Ok(Ok(r)) => op.seen = r.into_inner().task.map(seen),
                // A read changes nothing: whatever went wrong, it did not happen.
                Ok(Err(e)) => (op.status, op.error) = (Status::Fail, Some(describe(&e))),
                Err(_) => (op.status, op.error) = (Status::Fail, Some("client deadline".into())),
            }
        } else {
            let value = format!("r{process}-{seq}");
            let cas = roll >= 7;
            op.kind = if cas { Kind::Cas } else { Kind::Write };
            op.value = Some(value.clone());
            op.expected_version = cas.then_some(hint);
            // Fields the contract may add later (a request_id) stay at their defaults.
            #[allow(clippy::needless_update)]
            let update = pb::UpdateTaskRequest {
                task: Some(pb::Task {
                    id: id.clone(),
                    title: value,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into()],
                }),
                expected_version: if cas { hint } else { 0 },
                ..Default::default()
            };
            let mut request = tonic::Request::new(update);
            request.set_timeout(WRITE_DEADLINE);
            let result =
                tokio::time::timeout(WRITE_DEADLINE, client.task.clone().update_task(request))
                    .await;
            match result {
                Ok(Ok(r)) => op.seen = r.into_inner().task.map(seen),
                Ok(Err(e)) => {
                    op.status = write_error_status(&e);
                    op.rejected = cas && is_version_mismatch(&e);
                    op.error = Some(describe(&e));
                }
                Err(_) => (op.status, op.error) = (Status::Unknown, Some("client deadline".into())),
            }
        }
        op.completed_us = shared.recorder.now_us();
        shared.keys.lock().unwrap_or_else(|e| e.into_inner()).note(
            k,
            op.status,
            op.seen.as_ref().map(|s| s.version),
        );
        let backoff = op.status != Status::Ok && !op.rejected;
        shared.recorder.record(op);
        pace(&mut rng, backoff).await;
    }
}

/// Waits between calls; longer after a failure, as a real client backs off
/// (and so that a dead cluster is not asked thousands of times a second).
async fn pace(rng: &mut fastrand::Rng, after_failure: bool) {
    let wait = if after_failure {
        Duration::from_millis(rng.u64(50..150))
    } else {
        PACE
    };
    tokio::time::sleep(wait).await;
}

fn seen(task: pb::Task) -> Seen {
    Seen {
        value: task.title,
        version: task.version,
    }
}

/// One set client: creates with unique titles and request_ids; a create
/// with an unknown outcome is retried (same request_id) on another node.
pub async fn set_worker(shared: Shared, process: usize) {
    let mut rng = fastrand::Rng::with_seed(shared.seed ^ (0x5e7_0000 + process as u64));
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        seq += 1;
        let value = format!("s{process}-{seq}");
        let request_id = format!("chaos-{}-{value}", shared.seed);
        for _try in 0..3 {
            let node = pick_node(&mut rng, shared.clients.len());
            let mut request = tonic::Request::new(pb::CreateTaskRequest {
                title: value.clone(),
                request_id: request_id.clone(),
                ..Default::default()
            });
            request.set_timeout(WRITE_DEADLINE);
            let invoked_us = shared.recorder.now_us();
            let mut client = shared.clients[node - 1].task.clone();
            let result = tokio::time::timeout(WRITE_DEADLINE, client.create_task(request)).await;
            let (status, task, error) = match result {
                Ok(Ok(r)) => (Status::Ok, r.into_inner().task.map(|t| t.id), None),
                Ok(Err(e)) => (write_error_status(&e), None, Some(describe(&e))),
                Err(_) => (Status::Unknown, None, Some("client deadline".into())),
            };
            shared.recorder.record(Op {
                process,
                kind: Kind::Create,
                node,
                node_id: shared.ids.get(node),
                task,
                value: Some(value.clone()),
                expected_version: None,
                request_id: Some(request_id.clone()),
                invoked_us,
                completed_us: shared.recorder.now_us(),
                status,
                rejected: false,
                seen: None,
                error,
            });
            if status == Status::Ok {
                break;
            }
            pace(&mut rng, true).await;
            if status == Status::Fail || shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        pace(&mut rng, false).await;
    }
}

/// Node `node`'s STALE reader: one call at a time, so that the order of
/// completion is the order the node served them in.
pub async fn stale_reader(shared: Shared, process: usize, node: usize) {
    let mut rng = fastrand::Rng::with_seed(shared.seed ^ (0x57a1_0000 + process as u64));
    while !shared.stop.load(Ordering::Relaxed) {
        let id = shared
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .any_opened(&mut rng);
        let Some(id) = id else { break };
        let node_id = shared.ids.get(node);
        if node_id == 0 {
            // The slot is changing hands: no node to attribute a read to.
            pace(&mut rng, true).await;
            continue;
        }
        let mut request = tonic::Request::new(pb::GetTaskRequest {
            id: id.clone(),
            consistency: pb::ReadConsistency::Stale as i32,
        });
        request.set_timeout(READ_DEADLINE);
        let invoked_us = shared.recorder.now_us();
        let mut client = shared.clients[node - 1].task.clone();
        let call = tokio::time::timeout(READ_DEADLINE, client.get_task(request));
        let (mut status, mut seen_now, mut error) = match call.await {
            Ok(Ok(r)) => (Status::Ok, r.into_inner().task.map(seen), None),
            Ok(Err(e)) => (Status::Fail, None, Some(describe(&e))),
            Err(_) => (Status::Fail, None, Some("client deadline".into())),
        };
        // The slot's id is set to 0 before its old node is killed and to
        // the new id before the new node starts: an answer that finds the
        // same id as at the call came from that node; any other answer may
        // be either node's, so it checks nothing.
        if shared.ids.get(node) != node_id && status == Status::Ok {
            (status, seen_now) = (Status::Fail, None);
            error = Some("slot changed hands during the read".into());
        }
        shared.recorder.record(Op {
            process,
            kind: Kind::StaleRead,
            node,
            node_id,
            task: Some(id),
            value: None,
            expected_version: None,
            request_id: None,
            invoked_us,
            completed_us: shared.recorder.now_us(),
            status,
            rejected: false,
            seen: seen_now,
            error,
        });
        pace(&mut rng, status != Status::Ok).await;
    }
}

/// Creates `count` register tasks before the run (retrying through the
/// start-up's elections), several at a time.
pub async fn create_keys(
    clients: &[NodeClient],
    count: usize,
    seed: u64,
) -> Result<Vec<(String, Seen)>, String> {
    let mut keys = Vec::with_capacity(count);
    let deadline = Instant::now() + Duration::from_secs(60 + count as u64 / 20);
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        let mut handles = Vec::new();
        for &i in chunk {
            let client = clients[i % clients.len()].clone();
            let title = format!("k{i}-initial");
            let request_id = format!("chaos-{seed}-key-{i}");
            handles.push(tokio::spawn(async move {
                loop {
                    let mut request = tonic::Request::new(pb::CreateTaskRequest {
                        title: title.clone(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    });
                    request.set_timeout(WRITE_DEADLINE);
                    match client.task.clone().create_task(request).await {
                        Ok(r) => return r.into_inner().task.map(|t| (t.id.clone(), seen(t))),
                        Err(_) if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(100)).await
                        }
                        Err(_) => return None,
                    }
                }
            }));
        }
        for h in handles {
            match h.await {
                Ok(Some(key)) => keys.push(key),
                _ => return Err("could not create the register tasks before the run".into()),
            }
        }
    }
    Ok(keys)
}
