//! `TestCluster`: real taskd nodes in this process, on loopback port 0, each
//! with its own database (a SQLite file in a temp dir, or a fresh MySQL
//! database), talking real gRPC. Nodes stop cleanly and restart from their
//! data. Every wait polls a condition with a deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use taskd::cluster::join::{JoinAs, JoinPlan};
use taskd::config::NodeConfig;
use taskd::proto::raft_service_client::RaftServiceClient;
use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::{self, GetClusterStatusRequest};
use taskd::raft::SnapshotTuning;
use taskd::store::{Backend, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

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

/// The MySQL server tests use: `TASKD_TEST_MYSQL_URL` (set by
/// scripts/test.sh), or the local default. Never skipped: unreachable fails.
pub fn mysql_server_url() -> String {
    std::env::var("TASKD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
        .trim_end_matches('/')
        .to_string()
}

/// A database name unique to this process and call.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, check).await
}

/// [`eventually`] with a deadline of `patience` (big states take longer).
pub async fn eventually_within<T, F, Fut>(patience: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what} ({:?})",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct RunningNode {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), taskd::server::ServerError>>,
}

pub struct TestCluster {
    pub backend: Backend,
    pub members: BTreeMap<u64, String>,
    urls: BTreeMap<u64, String>,
    running: BTreeMap<u64, RunningNode>,
    /// Nodes started with `--join` rather than as founders.
    joins: BTreeMap<u64, JoinPlan>,
    snapshots: SnapshotTuning,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes on `backend` and waits until every node knows the leader.
    pub async fn start(n: u64, backend: Backend) -> Self {
        Self::start_with(n, backend, SnapshotTuning::default()).await
    }

    /// [`TestCluster::start`] with the nodes' log compaction set to `snapshots`.
    pub async fn start_with(n: u64, backend: Backend, snapshots: SnapshotTuning) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
            listeners.insert(id, listener);
        }
        let members: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().expect("local addr").to_string()))
            .collect();
        let db = unique_name("taskd_it");
        let urls = members
            .keys()
            .map(|id| {
                let url = match backend {
                    Backend::Sqlite => {
                        format!("sqlite://{}/node{id}/taskd.db", dir.path().display())
                    }
                    Backend::Mysql => format!("{}/{db}_n{id}", mysql_server_url()),
                };
                (*id, url)
            })
            .collect();
        let mut cluster = Self {
            backend,
            members,
            urls,
            running: BTreeMap::new(),
            joins: BTreeMap::new(),
            snapshots,
            dir,
        };
        for (id, listener) in listeners {
            cluster.spawn(id, listener);
        }
        cluster.wait_for_leader().await;
        cluster
    }

    fn spawn(&mut self, id: u64, listener: TcpListener) {
        let join = self.joins.get(&id).cloned();
        let founders = self
            .members
            .iter()
            .filter(|(id, _)| !self.joins.contains_key(id))
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        let config = NodeConfig {
            node_id: id,
            advertise: self.members[&id].clone(),
            data_dir: self.dir.path().join(format!("node{id}")),
            database_url: self.urls[&id].clone(),
            allow_lossy_database: false,
            initial_cluster: if join.is_some() {
                Default::default()
            } else {
                founders
            },
            join,
            snapshots: self.snapshots,
            raft_timing: Default::default(),
            security: Default::default(),
            limits: Default::default(),
            peer_listen: None,
            metrics_listen: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(taskd::server::run(config, listener, async move {
            let _ = stopped.await;
        }));
        self.running.insert(id, RunningNode { stop, task });
    }

    /// Starts a new, empty node `id` that joins the cluster through the
    /// running members (`taskd serve --join … --join-as …`); returns at once.
    pub async fn join_node(&mut self, id: u64, join_as: JoinAs) {
        assert!(!self.members.contains_key(&id), "node ids are never reused");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr").to_string();
        let url = match self.backend {
            Backend::Sqlite => format!("sqlite://{}/node{id}/taskd.db", self.dir.path().display()),
            Backend::Mysql => {
                let first = self.urls.values().next().expect("a node").clone();
                let (base, _) = first.rsplit_once("_n").expect("url ends _n<id>");
                format!("{base}_n{id}")
            }
        };
        let seeds = self
            .running_ids()
            .iter()
            .map(|id| self.members[id].clone())
            .collect();
        self.joins.insert(
            id,
            JoinPlan {
                seeds,
                advertise: addr.clone(),
                join_as,
            },
        );
        self.members.insert(id, addr);
        self.urls.insert(id, url);
        self.spawn(id, listener);
    }

    pub fn addr(&self, id: u64) -> &str {
        &self.members[&id]
    }

    pub fn running_ids(&self) -> Vec<u64> {
        self.running.keys().copied().collect()
    }

    pub async fn client(&self, id: u64) -> TaskServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr(id)))
            .expect("uri")
            .connect_lazy();
        TaskServiceClient::new(channel)
    }

    pub async fn raft_client(&self, id: u64) -> RaftServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr(id)))
            .expect("uri")
            .connect_lazy();
        RaftServiceClient::new(channel)
    }

    pub async fn status(&self, id: u64) -> Option<proto::GetClusterStatusResponse> {
        let mut client = self.raft_client(id).await;
        client
            .get_cluster_status(GetClusterStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits until every running node names the same, running leader.
    pub async fn wait_for_leader(&self) -> u64 {
        eventually("a leader known to every running node", || async {
            let mut leaders = Vec::new();
            for id in self.running_ids() {
                leaders.push(self.status(id).await?.leader_id);
            }
            let first = *leaders.first()?;
            (first != 0 && self.running.contains_key(&first) && leaders.iter().all(|l| *l == first))
                .then_some(first)
        })
        .await
    }

    /// A running node that is not the leader.
    pub async fn follower(&self) -> u64 {
        let leader = self.wait_for_leader().await;
        *self
            .running
            .keys()
            .find(|id| **id != leader)
            .expect("a follower")
    }

    /// Waits until every running node has applied everything the leader has logged.
    pub async fn wait_converged(&self) -> u64 {
        eventually("every running node applied the leader's log", || async {
            let leader = self.wait_for_leader().await;
            let target = self.status(leader).await?.last_log_index;
            for id in self.running_ids() {
                if self.status(id).await?.last_applied_index < target {
                    return None;
                }
            }
            Some(target)
        })
        .await
    }

    /// Stops a node cleanly (as on SIGTERM) and waits until it has stopped.
    pub async fn stop_node(&mut self, id: u64) {
        let node = self.running.remove(&id).expect("node is running");
        let _ = node.stop.send(());
        let result = tokio::time::timeout(DEADLINE, node.task)
            .await
            .expect("node stops in time")
            .expect("node task");
        result.expect("node ran without error");
    }

    /// Waits, without asking it to stop, until node `id` has stopped on its
    /// own (e.g. its Raft core failed); what its `run` returned.
    pub async fn wait_node_exit(&mut self, id: u64) -> Result<(), taskd::server::ServerError> {
        let node = self.running.remove(&id).expect("node is running");
        tokio::time::timeout(DEADLINE, node.task)
            .await
            .expect("node stops in time")
            .expect("node task")
    }

    /// Restarts a stopped node on its old address, from its data.
    pub async fn restart_node(&mut self, id: u64) {
        let addr = self.addr(id).to_string();
        let listener = eventually("the node's port is free again", || async {
            TcpListener::bind(&addr).await.ok()
        })
        .await;
        self.spawn(id, listener);
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> std::path::PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// The URL of node `id`'s database.
    pub fn database_url(&self, id: u64) -> &str {
        &self.urls[&id]
    }

    /// Opens a second connection to a node's database (read-only use).
    pub async fn open_store(&self, id: u64) -> Store {
        Store::connect(&self.urls[&id])
            .await
            .expect("open node database")
    }

    /// Stops every node and drops MySQL databases.
    pub async fn shutdown(mut self) {
        for id in self.running_ids() {
            self.stop_node(id).await;
        }
        if self.backend == Backend::Mysql {
            for url in self.urls.values() {
                let _ = sqlx::MySql::drop_database(url).await;
            }
        }
    }
}

/// Runs `test` on a fresh cluster of `nodes` nodes on `backend`, then stops it.
pub async fn run_on(backend: Backend, nodes: u64, test: impl AsyncFnOnce(&mut TestCluster)) {
    let mut cluster = TestCluster::start(nodes, backend).await;
    test(&mut cluster).await;
    cluster.shutdown().await;
}

/// Declares `NAME::sqlite` and `NAME::mysql` tests that run
/// `async fn NAME(cluster: &mut TestCluster)` on a fresh 3-node cluster.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::support::run_on(taskd::store::Backend::Sqlite, 3, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn mysql() {
                $crate::support::run_on(taskd::store::Backend::Mysql, 3, super::$name).await
            }
        }
    )*};
}

pub fn create_request(title: &str) -> proto::CreateTaskRequest {
    proto::CreateTaskRequest {
        title: title.into(),
        ..Default::default()
    }
}

/// Creates `n` tasks titled "{prefix} {i}" through `node`; their ids, in order.
pub async fn create_n(cluster: &TestCluster, node: u64, prefix: &str, n: usize) -> Vec<String> {
    let mut client = cluster.client(node).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let task = client
            .create_task(create_request(&format!("{prefix} {i}")))
            .await
            .expect("create")
            .into_inner()
            .task
            .expect("task");
        ids.push(task.id);
    }
    ids
}
