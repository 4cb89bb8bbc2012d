//! Real `taskd serve` processes for the crash-point tests: nodes started
//! with a `FAILPOINTS` setting, writers that record every create's outcome,
//! and the final check that every node converged with nothing lost or doubled.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::CreateTaskRequest;
use taskd::store::Backend;
use taskd_chaos::set::{self, Attempt};
use tokio::task::JoinSet;

use crate::process::{channel, cluster_status, wait_all_applied, wait_for_leader};
use crate::support::{eventually, mysql_server_url, unique_name};

const TASKD: &str = env!("CARGO_BIN_EXE_taskd");

/// One `taskd serve` process; dropping it kills it (and prints its stderr
/// tail while a test panics).
struct Node {
    child: Child,
    stderr: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!("---- {} ----\n{tail}\n----", self.stderr.display());
        }
    }
}

/// A cluster of real processes; `extra` flags go to every node.
pub struct Cluster {
    pub members: BTreeMap<u64, String>,
    urls: BTreeMap<u64, String>,
    extra: Vec<String>,
    nodes: BTreeMap<u64, Node>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes on `backend`, started with `failpoints[id]` where given.
    pub fn start(backend: Backend, extra: &[&str], failpoints: &BTreeMap<u64, String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let members: BTreeMap<u64, String> = (1..=3)
            .zip(&listeners)
            .map(|(id, l)| (id, l.local_addr().expect("addr").to_string()))
            .collect();
        drop(listeners);
        let urls = members
            .keys()
            .map(|id| {
                let url = match backend {
                    Backend::Sqlite => {
                        format!("sqlite://{}/node{id}/taskd.db", dir.path().display())
                    }
                    Backend::Mysql => {
                        format!("{}/{}", mysql_server_url(), unique_name("taskd_crash"))
                    }
                };
                (*id, url)
            })
            .collect();
        let mut cluster = Self {
            members,
            urls,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            nodes: BTreeMap::new(),
            dir,
        };
        for id in 1..=3 {
            cluster.spawn(id, failpoints.get(&id).map(String::as_str));
        }
        cluster
    }

    /// Starts node `id` (again), with `FAILPOINTS` set to `failpoints` if given.
    pub fn spawn(&mut self, id: u64, failpoints: Option<&str>) {
        let initial = self
            .members
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let stderr = self.dir.path().join(format!("node{id}.stderr"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .expect("stderr file");
        let mut command = Command::new(TASKD);
        command
            .args(["serve", "--node-id", &id.to_string(), "--listen"])
            .arg(&self.members[&id])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{id}")))
            .args(["--database-url", &self.urls[&id]])
            .args(["--initial-cluster", &initial])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .env("NO_COLOR", "1")
            .env_remove("FAILPOINTS");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TASKD_") {
                command.env_remove(key);
            }
        }
        if let Some(spec) = failpoints {
            command.env("FAILPOINTS", spec);
        }
        let child = command.spawn().expect("start taskd");
        self.nodes.insert(id, Node { child, stderr });
    }

    /// SIGKILL node `id`.
    pub fn kill(&mut self, id: u64) {
        let mut node = self.nodes.remove(&id).expect("running node");
        node.child.kill().expect("SIGKILL");
        node.child.wait().expect("reap");
    }

    /// Waits until node `id` died of SIGABRT (its failpoint fired).
    pub async fn wait_aborted(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        let status = eventually(&format!("node {id} to abort at its failpoint"), || {
            let status = node.child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        assert_eq!(
            status.signal(),
            Some(libc::SIGABRT),
            "node {id} aborted (a crash at its failpoint), not otherwise: {status}"
        );
        let stderr = std::fs::read_to_string(&node.stderr).unwrap_or_default();
        assert!(
            stderr.contains("failpoint "),
            "node {id} aborted at a failpoint"
        );
    }

    /// Waits until node `id` reports that it reached failpoint `name`.
    pub async fn wait_reached(&self, id: u64, name: &str) {
        let line = format!("failpoint {name} reached");
        let stderr = &self.nodes[&id].stderr;
        eventually(&format!("node {id} at failpoint {name}"), || async {
            let text = std::fs::read_to_string(stderr).unwrap_or_default();
            text.contains(&line).then_some(())
        })
        .await
    }

    /// Every node applied the whole log; all hold the same tasks and applied
    /// index, and every acknowledged create is there exactly once (unknown
    /// ones at most once, nothing never sent).
    pub async fn check_converged(&self, outcomes: &BTreeMap<String, Attempt>) {
        wait_all_applied(&self.members).await;
        let mut applied = BTreeMap::new();
        let mut tasks = BTreeMap::new();
        for (id, addr) in &self.members {
            let status = cluster_status(addr).await.expect("status");
            applied.insert(*id, status.last_applied_index);
            let found = crate::writers::stored_tasks(addr).await;
            if let Err(violations) = set::check(outcomes, &found) {
                panic!("node {id}: {violations:?}");
            }
            tasks.insert(*id, found);
        }
        let first = applied[&1];
        assert!(
            applied.values().all(|a| *a == first),
            "applied indexes differ: {applied:?}"
        );
        for (id, found) in &tasks {
            assert!(
                found == &tasks[&1],
                "node {id}'s tasks differ from node 1's"
            );
        }
        let acked = outcomes
            .values()
            .filter(|a| matches!(a, Attempt::Acknowledged(_)))
            .count();
        assert!(acked > 0, "some creates were acknowledged");
    }

    pub async fn leader(&self) -> u64 {
        let running: BTreeMap<u64, String> = self
            .members
            .iter()
            .filter(|(id, _)| self.nodes.contains_key(id))
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        wait_for_leader(&running).await
    }

    /// Drops MySQL databases (best effort: the test's verdict is already in).
    pub async fn remove(mut self) {
        self.nodes.clear();
        for url in self.urls.values() {
            if url.starts_with("mysql:") {
                let _ = sqlx::MySql::drop_database(url).await;
            }
        }
    }
}

/// Concurrent writers: each creates tasks (own request_id, a description of
/// `description_bytes`) over the given nodes, one call in flight each.
pub struct Writers {
    outcomes: Arc<Mutex<BTreeMap<String, Attempt>>>,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl Writers {
    pub fn start(addrs: Vec<String>, writers: usize, description_bytes: usize) -> Self {
        let outcomes: Arc<Mutex<BTreeMap<String, Attempt>>> = Arc::default();
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for w in 0..writers {
            let (outcomes, acked, stop, addrs) =
                (outcomes.clone(), acked.clone(), stop.clone(), addrs.clone());
            tasks.spawn(async move {
                let clients: Vec<_> = addrs
                    .iter()
                    .map(|a| TaskServiceClient::new(channel(a)))
                    .collect();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let title = format!("writer {w} write {n}");
                    let mut request = tonic::Request::new(CreateTaskRequest {
                        title: title.clone(),
                        description: "d".repeat(description_bytes),
                        request_id: format!("rid-{w}-{n}"),
                        ..Default::default()
                    });
                    request.set_timeout(Duration::from_secs(2));
                    let mut client = clients[(w + n) % clients.len()].clone();
                    let attempt = match client.create_task(request).await {
                        Ok(reply) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                            Attempt::Acknowledged(reply.into_inner().task.expect("task").id)
                        }
                        Err(_) => Attempt::Unknown,
                    };
                    outcomes.lock().unwrap().insert(title, attempt);
                    n += 1;
                }
            });
        }
        Self {
            outcomes,
            acked,
            stop,
            tasks,
        }
    }

    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` further creates were acknowledged.
    pub async fn wait_more(&self, more: usize) {
        let target = self.acked() + more;
        eventually(&format!("{target} acknowledged creates"), || async {
            (self.acked() >= target).then_some(())
        })
        .await
    }

    /// Stops the writers; returns every attempt's outcome by title.
    pub async fn stop(mut self) -> BTreeMap<String, Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(joined) = self.tasks.join_next().await {
            joined.expect("writer");
        }
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}
