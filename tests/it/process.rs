//! The real `taskd` binary as separate processes: killed with SIGKILL,
//! stopped with SIGTERM, `taskd dev` stopped with Ctrl-C (SIGINT). Each
//! process writes its stderr to a file in the test's temporary directory; a
//! failing test prints the tail of every file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use taskd::proto::raft_service_client::RaftServiceClient;
use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::{
    CreateTaskRequest, GetClusterStatusRequest, GetClusterStatusResponse, GetTaskRequest,
    ReadConsistency, Task,
};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::{eventually, init_tracing, DEADLINE};

/// This build's `taskd`.
pub(crate) const TASKD: &str = env!("CARGO_BIN_EXE_taskd");

/// A running `taskd` process. Dropping it kills (SIGKILL) and reaps the
/// process if it still runs, so a panicking test leaves nothing behind; while
/// panicking it also prints the tail of the process's stderr.
pub(crate) struct TaskdProcess {
    name: String,
    child: Child,
    stderr_path: PathBuf,
}

impl TaskdProcess {
    /// Starts `taskd ARGS`, stderr appended to `stderr_path` (so a restart
    /// keeps the earlier run's log), stdout as given. `TASKD_…` variables of
    /// the test's environment are not passed on: only the flags count.
    pub(crate) fn spawn(name: &str, args: &[String], stderr_path: &Path, stdout: Stdio) -> Self {
        Self::spawn_program(Path::new(TASKD), name, args, stderr_path, stdout)
    }

    /// [`TaskdProcess::spawn`] of the `taskd` binary at `program` (another
    /// release's, say).
    pub(crate) fn spawn_program(
        program: &Path,
        name: &str,
        args: &[String],
        stderr_path: &Path,
        stdout: Stdio,
    ) -> Self {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr_path)
            .expect("open stderr file");
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Plain text in the stderr files that failing tests print.
            .env("NO_COLOR", "1");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TASKD_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {args:?}: {e}", program.display()));
        Self {
            name: name.to_string(),
            child,
            stderr_path: stderr_path.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, …) with kill(1).
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// SIGKILL, then reap it.
    pub(crate) fn kill_9(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait for the killed process")
    }

    /// Whether the process has exited (it is then reaped).
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls until the process has exited; panics after [`DEADLINE`].
    pub(crate) async fn wait_exit(&mut self) -> ExitStatus {
        let what = format!("{} to exit", self.name);
        let child = &mut self.child;
        eventually(&what, || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }

    /// Everything the process wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub(crate) fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for TaskdProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} (pid {}) stderr, last lines of {} ----\n{}\n----",
                self.name,
                self.pid(),
                self.stderr_path.display(),
                self.stderr_tail(40)
            );
        }
    }
}

/// `n` distinct loopback ports that were free a moment ago.
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A base port B in 20000..60000 with B..B+n free a moment ago.
pub(crate) fn free_port_run(n: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut seed = u64::from(nanos) ^ (u64::from(std::process::id()) << 32);
    for _ in 0..20 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let base = 20_000 + ((seed >> 33) % 40_000) as u16;
        let bound: Result<Vec<TcpListener>, _> = (0..n)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if bound.is_ok() {
            return base;
        }
    }
    panic!("found no {n} consecutive free ports in 20000..60000");
}

pub(crate) fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

pub(crate) async fn cluster_status(addr: &str) -> Option<GetClusterStatusResponse> {
    RaftServiceClient::new(channel(addr))
        .get_cluster_status(GetClusterStatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

pub(crate) async fn is_serving(addr: &str) -> bool {
    let request = HealthCheckRequest { service: "".into() };
    match HealthClient::new(channel(addr)).check(request).await {
        Ok(response) => response.into_inner().status == ServingStatus::Serving as i32,
        Err(_) => false,
    }
}

pub(crate) async fn wait_serving(addr: &str) {
    eventually(&format!("{addr} health SERVING"), || async {
        is_serving(addr).await.then_some(())
    })
    .await
}

/// Waits until every node of `nodes` (id → address) names the same leader,
/// itself one of `nodes`; returns its id.
pub(crate) async fn wait_for_leader(nodes: &BTreeMap<u64, String>) -> u64 {
    let what = format!("one leader among nodes {:?}", nodes.keys());
    eventually(&what, || async {
        let mut leaders = BTreeSet::new();
        for addr in nodes.values() {
            leaders.insert(cluster_status(addr).await?.leader_id);
        }
        let leader = *leaders.first()?;
        (leaders.len() == 1 && nodes.contains_key(&leader)).then_some(leader)
    })
    .await
}

/// Waits until every node of `nodes` has applied the leader's whole log.
pub(crate) async fn wait_all_applied(nodes: &BTreeMap<u64, String>) {
    eventually("every node applied the leader's whole log", || async {
        let current = wait_for_leader(nodes).await;
        let target = cluster_status(&nodes[&current]).await?.last_log_index;
        for addr in nodes.values() {
            if cluster_status(addr).await?.last_applied_index < target {
                return None;
            }
        }
        Some(())
    })
    .await
}

/// Creates a task through `addr` and returns the id the server acknowledged.
/// Retries (with the same request_id, so never twice) only while the cluster
/// says it is UNAVAILABLE or the call timed out; any other error fails.
pub(crate) async fn create_acknowledged(addr: &str, title: &str) -> String {
    let client = TaskServiceClient::new(channel(addr));
    let request = CreateTaskRequest {
        title: title.into(),
        request_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };
    eventually(&format!("CreateTask {title:?} through {addr}"), || {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            match client.create_task(request).await {
                Ok(response) => Some(response.into_inner().task.expect("created task").id),
                Err(s) if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) => None,
                Err(s) => panic!("CreateTask {title:?} through {addr}: {s:?}"),
            }
        }
    })
    .await
}

pub(crate) async fn get_task(addr: &str, id: &str, consistency: ReadConsistency) -> Task {
    TaskServiceClient::new(channel(addr))
        .get_task(GetTaskRequest {
            id: id.into(),
            consistency: consistency as i32,
        })
        .await
        .unwrap_or_else(|s| panic!("GetTask {id} at {addr} ({consistency:?}): {s:?}"))
        .into_inner()
        .task
        .expect("task in GetTaskResponse")
}

/// `taskd serve` arguments of one node of a SQLite cluster under `dir`.
fn serve_args(dir: &Path, id: u64, members: &BTreeMap<u64, String>) -> Vec<String> {
    let initial_cluster = members
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "serve".into(),
        "--node-id".into(),
        id.to_string(),
        "--listen".into(),
        members[&id].clone(),
        "--data-dir".into(),
        dir.join(format!("node{id}")).display().to_string(),
        "--initial-cluster".into(),
        initial_cluster,
    ]
}

pub(crate) fn spawn_node(dir: &Path, id: u64, members: &BTreeMap<u64, String>) -> TaskdProcess {
    spawn_node_on(dir, id, members, None)
}

/// [`spawn_node`] with `extra` flags after the usual ones.
pub(crate) fn spawn_node_with(
    dir: &Path,
    id: u64,
    members: &BTreeMap<u64, String>,
    extra: &[String],
) -> TaskdProcess {
    let mut args = serve_args(dir, id, members);
    args.extend_from_slice(extra);
    TaskdProcess::spawn(
        &format!("node {id}"),
        &args,
        &dir.join(format!("node{id}.stderr")),
        Stdio::null(),
    )
}

/// [`spawn_node`] with `--database-url database_url` when one is given
/// (a MySQL database, say), else the SQLite default under `dir`.
pub(crate) fn spawn_node_on(
    dir: &Path,
    id: u64,
    members: &BTreeMap<u64, String>,
    database_url: Option<&str>,
) -> TaskdProcess {
    spawn_release_on(Path::new(TASKD), dir, id, members, database_url)
}

/// [`spawn_node_on`] of the `taskd` binary at `program`.
pub(crate) fn spawn_release_on(
    program: &Path,
    dir: &Path,
    id: u64,
    members: &BTreeMap<u64, String>,
    database_url: Option<&str>,
) -> TaskdProcess {
    let mut args = serve_args(dir, id, members);
    if let Some(url) = database_url {
        args.extend(["--database-url".into(), url.into()]);
    }
    TaskdProcess::spawn_program(
        program,
        &format!("node {id} ({})", program.display()),
        &args,
        &dir.join(format!("node{id}.stderr")),
        Stdio::null(),
    )
}

/// SIGTERM stops a node cleanly (exit status 0, within the deadline), and a
/// restart on the same data directory serves what it had acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let members = BTreeMap::from([(1, format!("127.0.0.1:{}", free_ports(1)[0]))]);
    let addr = members[&1].clone();

    let mut node = spawn_node(dir.path(), 1, &members);
    wait_serving(&addr).await;
    let id = create_acknowledged(&addr, "survives SIGTERM").await;

    node.signal("TERM");
    let status = node.wait_exit().await;
    assert!(status.success(), "exit after SIGTERM: {status}");

    let _restarted = spawn_node(dir.path(), 1, &members);
    wait_serving(&addr).await;
    let task = get_task(&addr, &id, ReadConsistency::Stale).await;
    assert_eq!(task.title, "survives SIGTERM");
}

/// `taskd dev` starts a working three-node cluster (a write through node 2 is
/// read back linearizably from node 3), secured by a secret it made under its
/// data dir (readable by its owner only; a Vote without it is refused), and
/// Ctrl-C (SIGINT) stops all of it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_cluster_serves_and_stops_on_ctrl_c() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let base = free_port_run(3);
    let args: Vec<String> = vec![
        "dev".into(),
        "--base-port".into(),
        base.to_string(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
    ];
    let mut dev = TaskdProcess::spawn(
        "taskd dev",
        &args,
        &dir.path().join("dev.stderr"),
        Stdio::piped(),
    );

    // Stdout is read on a thread until EOF, so the pipe never fills.
    let stdout = dev.child.stdout.take().expect("piped stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("Ctrl-C")) {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => seen.push(line),
            Ok(None) => panic!("taskd dev closed stdout before saying Ctrl-C: {seen:#?}"),
            Err(_) => panic!("taskd dev did not say Ctrl-C in time: {seen:#?}"),
        }
    }

    let addrs: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
    for addr in &addrs {
        wait_serving(addr).await;
    }
    let id = create_acknowledged(&addrs[1], "made in dev").await;
    let task = get_task(&addrs[2], &id, ReadConsistency::Unspecified).await;
    assert_eq!(task.title, "made in dev");

    let secret_file = dir.path().join("data").join("cluster-secret");
    let secret = std::fs::read_to_string(&secret_file).expect("taskd dev made a cluster secret");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the secret is readable by others: {mode:o}"
    );
    let vote = || taskd::proto::VoteRequest { payload: vec![1] };
    let refused = RaftServiceClient::new(channel(&addrs[0]))
        .vote(vote())
        .await
        .expect_err("a Vote without the secret");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let secret = taskd::security::ClusterSecret::new(secret.trim()).expect("a valid secret");
    let member = taskd::security::peer::Dialer::new(
        None,
        taskd::security::peer::Credentials::default().cluster_secret(&secret),
    );
    let past_the_door = RaftServiceClient::new(member.channel(&addrs[0]).unwrap())
        .vote(vote())
        .await
        .expect_err("a garbage payload");
    assert!(
        !matches!(
            past_the_door.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ),
        "the secret did not let the call in: {past_the_door:?}"
    );

    dev.signal("INT");
    let status = dev.wait_exit().await;
    assert!(status.success(), "exit after SIGINT: {status}");
    // Stdout reaches EOF once the process is gone; it must say it stopped on request.
    let mut rest = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, lines.recv()).await {
        rest.push(line);
    }
    assert!(
        rest.iter().any(|l| l.contains("stopping")),
        "taskd dev stopped on Ctrl-C and said so: {rest:#?}"
    );
}
