//! A small in-process taskd cluster for the client's tests: real nodes
//! (`taskd::server::run`) on loopback port 0, one SQLite database each in a
//! temp dir, real gRPC. Nodes stop cleanly; every wait polls with a deadline.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use taskd::config::NodeConfig;
use taskd::proto::raft_service_client::RaftServiceClient;
use taskd::proto::GetClusterStatusRequest;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any condition in a test may take to become true.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,openraft=error".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct RunningNode {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), taskd::server::ServerError>>,
}

pub struct TestCluster {
    pub members: BTreeMap<u64, String>,
    running: BTreeMap<u64, RunningNode>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes and waits until every node knows the same leader.
    pub async fn start(n: u64) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
            listeners.insert(id, listener);
        }
        let members = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().expect("local addr").to_string()))
            .collect();
        let mut cluster = Self {
            members,
            running: BTreeMap::new(),
            dir,
        };
        for (id, listener) in listeners {
            cluster.spawn(id, listener);
        }
        cluster.wait_for_leader().await;
        cluster
    }

    fn spawn(&mut self, id: u64, listener: TcpListener) {
        let data_dir = self.dir.path().join(format!("node{id}"));
        let config = NodeConfig {
            node_id: id,
            advertise: self.members[&id].clone(),
            database_url: format!("sqlite://{}/taskd.db", data_dir.display()),
            data_dir,
            initial_cluster: self.members.clone(),
            snapshots: Default::default(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(taskd::server::run(config, listener, async move {
            let _ = stopped.await;
        }));
        self.running.insert(id, RunningNode { stop, task });
    }

    pub fn addr(&self, id: u64) -> &str {
        &self.members[&id]
    }

    /// Every node's address, node 1 first.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.values().cloned().collect()
    }

    /// `endpoints()` joined with commas, as `--endpoints` takes them.
    pub fn endpoints_flag(&self) -> String {
        self.endpoints().join(",")
    }

    /// Waits until every running node names the same, running leader.
    pub async fn wait_for_leader(&self) -> u64 {
        eventually("a leader known to every running node", || async {
            let mut leaders = Vec::new();
            for id in self.running.keys() {
                leaders.push(self.leader_seen_by(*id).await?);
            }
            let first = *leaders.first()?;
            (first != 0 && self.running.contains_key(&first) && leaders.iter().all(|l| *l == first))
                .then_some(first)
        })
        .await
    }

    async fn leader_seen_by(&self, id: u64) -> Option<u64> {
        let mut client = RaftServiceClient::connect(format!("http://{}", self.addr(id)))
            .await
            .ok()?;
        let status = client
            .get_cluster_status(GetClusterStatusRequest {})
            .await
            .ok()?;
        Some(status.into_inner().leader_id)
    }

    /// Stops a node cleanly (as on SIGTERM) and waits until it has stopped:
    /// its port is closed when this returns.
    pub async fn stop_node(&mut self, id: u64) {
        let node = self.running.remove(&id).expect("node is running");
        let _ = node.stop.send(());
        let result = tokio::time::timeout(DEADLINE, node.task)
            .await
            .expect("node stops in time")
            .expect("node task");
        result.expect("node ran without error");
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            self.stop_node(id).await;
        }
    }
}

/// An address nothing listens on: bound, then closed.
pub async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}
