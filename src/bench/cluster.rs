//! The self-started cluster of `--nodes N`: N `taskd serve` child processes
//! of this very binary on free loopback ports, each with its own directory
//! under one temporary directory and its own database (SQLite there, or
//! MySQL from a template). Real processes, not in-process nodes, so their CPU
//! time and memory can be read from `/proc` and a leader can be kill -9'd.
//!
//! [`LocalCluster::stop`] sends SIGTERM and waits; dropping the cluster
//! without it (a panic) SIGKILLs the children. Either way the temporary
//! directory goes after the children.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::migrate::MigrateDatabase;
use tempfile::TempDir;
use tokio::time::{sleep, Instant};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::taskd_target::channel;

/// How long a node may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);

pub struct ClusterSpec {
    pub nodes: u16,
    /// `{id}` is replaced by the node id; `None` means SQLite in the temp dir.
    pub database_url_template: Option<String>,
    /// Appended to every `taskd serve` command line.
    pub serve_args: Vec<String>,
    pub start_timeout: Duration,
    /// How to dial the nodes when --serve-arg makes them serve TLS.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

struct Node {
    id: u64,
    addr: String,
    data_dir: PathBuf,
    database_url: String,
    log: PathBuf,
    /// `None` once the process has been reaped.
    child: Option<Child>,
    /// Lazily connected: reconnects by itself after a restart.
    channel: Channel,
}

pub struct LocalCluster {
    nodes: Vec<Node>,
    exe: PathBuf,
    initial_cluster: String,
    serve_args: Vec<String>,
    database: &'static str,
    start_timeout: Duration,
    /// Declared last: removed only after `Drop` has stopped the children.
    _dir: TempDir,
}

impl LocalCluster {
    /// Starts every node and waits until each one's health is SERVING.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this taskd binary")?;
        let dir = tempfile::Builder::new()
            .prefix("taskd-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let ports = free_ports(usize::from(spec.nodes))?;
        let members: BTreeMap<u64, String> = (1..=u64::from(spec.nodes))
            .zip(ports)
            .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
            .collect();
        let initial_cluster: Vec<String> = members
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect();

        let mut nodes = Vec::new();
        for (&id, addr) in &members {
            let data_dir = dir.path().join(format!("n{id}"));
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let database_url = match &spec.database_url_template {
                Some(template) => template.replace("{id}", &id.to_string()),
                None => format!("sqlite://{}", data_dir.join("taskd.db").display()),
            };
            if database_url.starts_with("mysql:") {
                // Every run starts empty; the node creates the database again.
                sqlx::MySql::drop_database(&database_url)
                    .await
                    .with_context(|| format!("cannot drop the database of {database_url}"))?;
            }
            nodes.push(Node {
                id,
                addr: addr.clone(),
                log: data_dir.join("stderr.log"),
                data_dir,
                database_url,
                child: None,
                channel: match &spec.tls {
                    Some(tls) => channel(&format!("https://{addr}"), Duration::from_secs(1))?
                        .tls_config(tls.clone())?
                        .connect_lazy(),
                    None => channel(addr, Duration::from_secs(1))?.connect_lazy(),
                },
            });
        }
        let database = if nodes.iter().all(|n| n.database_url.starts_with("mysql:")) {
            "mysql"
        } else {
            "sqlite"
        };
        let mut cluster = Self {
            nodes,
            exe,
            initial_cluster: initial_cluster.join(","),
            serve_args: spec.serve_args,
            database,
            start_timeout: spec.start_timeout,
            _dir: dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        eprintln!(
            "bench: started {} taskd nodes ({database}) on {}",
            cluster.nodes.len(),
            cluster.endpoints().join(",")
        );
        cluster.wait_serving().await?;
        Ok(cluster)
    }

    /// The nodes' addresses, in node-id order.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Process ids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// `sqlite` or `mysql`.
    pub fn database(&self) -> &'static str {
        self.database
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// (node id, channel to it) of every node.
    pub fn channels(&self) -> Vec<(u64, Channel)> {
        self.nodes
            .iter()
            .map(|n| (n.id, n.channel.clone()))
            .collect()
    }

    /// SIGKILL to node `id`, at once; it is reaped by [`Self::restart`].
    pub fn kill_9(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        let child = node.child.as_mut().context("the node is not running")?;
        child
            .kill()
            .with_context(|| format!("cannot kill node {id}"))
    }

    /// SIGTERM to node `id` (a leader hands over first), and waits until it
    /// has exited; it is started again by [`Self::restart`].
    pub async fn terminate(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.node_mut(id)?;
        let child = node.child.take().context("the node is not running")?;
        terminate(&child);
        reap(child, STOP_GRACE).await;
        Ok(())
    }

    /// Starts node `id` again on its data directory and database, after
    /// reaping the old process.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let index = self.index(id)?;
        if let Some(child) = self.nodes[index].child.take() {
            reap(child, Duration::from_secs(10)).await;
        }
        self.spawn(index)
    }

    /// Polls every node's `grpc.health.v1.Health/Check` until all are SERVING.
    pub async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            let mut waiting = Vec::new();
            for node in &mut self.nodes {
                if let Some(status) = node
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok())
                    .flatten()
                {
                    print_log_tail(node);
                    bail!("node {} exited ({status}) before SERVING", node.id);
                }
                if !is_serving(&node.channel).await {
                    waiting.push(node);
                }
            }
            let Some(first) = waiting.first() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                print_log_tail(first);
                let ids: Vec<u64> = waiting.iter().map(|n| n.id).collect();
                bail!("nodes {ids:?} not SERVING after {:?}", self.start_timeout);
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM to every node; SIGKILL to any still running after [`STOP_GRACE`].
    pub async fn stop(mut self) {
        let children: Vec<Child> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.take())
            .collect();
        for child in &children {
            terminate(child);
        }
        for child in children {
            reap(child, STOP_GRACE).await;
        }
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("cannot open {}", node.log.display()))?;
        let mut command = Command::new(&self.exe);
        command
            .arg("serve")
            .args(["--node-id", &node.id.to_string()])
            .args(["--listen", &node.addr])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--database-url", &node.database_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(&self.serve_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env("NO_COLOR", "1");
        // Only the flags count, not the bench's own TASKD_… environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TASKD_") {
                command.env_remove(key);
            }
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        // The children die with the bench even when it is SIGKILLed. (The signal
        // follows the spawning thread: the bench spawns from its main task.)
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {} serve", self.exe.display()))?;
        self.nodes[index].child = Some(child);
        Ok(())
    }

    fn index(&self, id: u64) -> anyhow::Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> anyhow::Result<&mut Node> {
        let index = self.index(id)?;
        Ok(&mut self.nodes[index])
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

async fn is_serving(channel: &Channel) -> bool {
    let request = HealthCheckRequest { service: "".into() };
    match HealthClient::new(channel.clone()).check(request).await {
        Ok(response) => response.into_inner().status == ServingStatus::Serving as i32,
        Err(_) => false,
    }
}

fn terminate(child: &Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Polls until `child` has exited; SIGKILLs it after `grace`.
async fn reap(mut child: Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!(
                    "bench: pid {} did not stop in {grace:?}: SIGKILL",
                    child.id()
                );
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(None) => sleep(Duration::from_millis(20)).await,
        }
    }
}

/// `n` distinct loopback ports that were free a moment ago.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()
        .context("cannot find free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The last lines of a node's stderr, to standard error, before an error
/// that removes the temporary directory holding it.
fn print_log_tail(node: &Node) {
    let text = std::fs::read_to_string(&node.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    eprintln!(
        "bench: last lines of node {}'s log:\n{}",
        node.id,
        lines[lines.len().saturating_sub(10)..].join("\n")
    );
}
