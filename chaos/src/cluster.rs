//! The cluster under test: the network, one database per node (MariaDB) or
//! none (SQLite), the `taskd serve` processes, and gRPC clients to each.
//! Dropping it kills every process and removes every namespace and file it
//! made (field order is drop order).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use taskd_client::pb;
use taskd_client::pb::raft_service_client::RaftServiceClient;
use taskd_client::pb::task_service_client::TaskServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::mariadb::{self, MariaDb};
use crate::netns::{NetError, Network};
use crate::node::{Membership, Node, NodeSpec};

pub const PORT: u16 = 50051;

/// Which database the nodes keep their state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    // One MariaDB server per node, in the node's namespace.
    Mysql,
    // Embedded SQLite in each node's data dir.
    Sqlite,
}

/// Clients to one node.
#[derive(Debug, Clone)]
pub struct NodeClient {
    pub task: TaskServiceClient<Channel>,
    /// Membership calls need cluster credentials: the harness is the operator.
    pub raft: RaftServiceClient<InterceptedService<Channel, ClusterSecret>>,
}

/// The cluster secret the nodes run with (`--cluster-secret-file`): their
/// addresses are not loopback, so taskd refuses to start without one.
pub const CLUSTER_SECRET: &str = "taskd-chaos-cluster-secret-0123456789";

/// Sends [`CLUSTER_SECRET`] on every call of a client.
#[derive(Debug, Clone)]
pub struct ClusterSecret;

impl tonic::service::Interceptor for ClusterSecret {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(
            "x-taskd-cluster-secret",
            tonic::metadata::AsciiMetadataValue::from_static(CLUSTER_SECRET),
        );
        Ok(request)
    }
}

/// What the harness needs to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: usize,
    pub backend: Backend,
    pub taskd_bin: PathBuf,
    pub break_mode: Option<String>,
    /// Where logs go (the --out dir).
    pub out: PathBuf,
    /// Each node's files on a small tmpfs of its own, for disk-full faults.
    pub small_disks: bool,
    /// `--snapshot-every` and `--snapshot-keep-logs` for the nodes (snapshot-kill faults).
    pub snapshot_every: Option<(String, String)>,
}

/// Removes the run's scratch directory (and unmounts the nodes' small
/// disks in it) last of all.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_scratch(&self.0);
    }
}

/// Unmounts whatever is mounted under `dir`, then deletes it.
pub fn remove_scratch(dir: &std::path::Path) {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    for point in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if std::path::Path::new(point).starts_with(dir) {
            let _ = crate::netns::run("umount", &["-l", point]);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The size of a node's small disk (`--nemesis disk-full`): room for its
/// database and some growth, little enough to fill in a moment.
fn small_disk_size(backend: Backend) -> &'static str {
    match backend {
        Backend::Mysql => "size=400m",
        Backend::Sqlite => "size=64m",
    }
}

/// Which node id runs in each slot (a namespace with its address, MariaDB
/// and directory; slots are 1-based and fixed for the run). Founders have
/// id = slot; the membership nemesis replaces a slot's node by one with a
/// new id. 0 while a slot is being replaced. Shared with the workers, so
/// that each operation records the node that served it.
#[derive(Debug)]
pub struct SlotIds(Vec<AtomicU64>);

impl SlotIds {
    fn founders(n: usize) -> Self {
        Self((1..=n as u64).map(AtomicU64::new).collect())
    }

    /// The node id in slot `k` (1-based); 0 while it is being replaced.
    pub fn get(&self, k: usize) -> u64 {
        self.0[k - 1].load(Ordering::SeqCst)
    }

    pub fn set(&self, k: usize, id: u64) {
        self.0[k - 1].store(id, Ordering::SeqCst)
    }

    /// The slot that runs node `id`.
    pub fn slot_of(&self, id: u64) -> Option<usize> {
        (1..=self.0.len()).find(|&k| id != 0 && self.get(k) == id)
    }

    pub fn all(&self) -> Vec<u64> {
        (1..=self.0.len()).map(|k| self.get(k)).collect()
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The node id in each slot (index k-1 of `nodes`, `dbs`, `clients`).
    pub ids: Arc<SlotIds>,
    /// The next id a new node gets: ids are never reused.
    pub next_id: u64,
    /// Index k-1 is node k's server; empty with SQLite.
    pub dbs: Vec<MariaDb>,
    pub net: Network,
    pub clients: Vec<NodeClient>,
    /// Node k's directory (database and data) is `node_dirs[k - 1]`.
    pub node_dirs: Vec<PathBuf>,
    /// Whether those are small disks of their own.
    pub small_disks: bool,
    _scratch: Scratch,
}

/// The scratch directory of the run with this pid.
pub fn scratch_dir(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("{}{pid}", crate::netns::NS_PREFIX))
}

impl Cluster {
    pub async fn start(spec: &ClusterSpec) -> Result<Self, NetError> {
        let scratch = Scratch(scratch_dir(std::process::id()));
        std::fs::create_dir_all(&scratch.0).map_err(|source| NetError::Spawn {
            command: format!("mkdir {}", scratch.0.display()),
            source,
        })?;
        let logs = spec.out.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| NetError::Spawn {
            command: format!("mkdir {}", logs.display()),
            source,
        })?;
        let node_dirs: Vec<PathBuf> = (1..=spec.nodes)
            .map(|k| scratch.0.join(format!("n{k}")))
            .collect();
        for dir in &node_dirs {
            std::fs::create_dir_all(dir).map_err(|source| NetError::Spawn {
                command: format!("mkdir {}", dir.display()),
                source,
            })?;
            if spec.small_disks {
                let size = small_disk_size(spec.backend);
                let point = dir.display().to_string();
                crate::netns::run("mount", &["-t", "tmpfs", "-o", size, "tmpfs", &point])?;
            }
        }
        let secret_file = scratch.0.join("cluster-secret");
        std::fs::write(&secret_file, CLUSTER_SECRET).map_err(|source| NetError::Spawn {
            command: format!("write {}", secret_file.display()),
            source,
        })?;
        let net = Network::create(spec.nodes)?;
        let mut dbs = Vec::new();
        if spec.backend == Backend::Mysql {
            let template = scratch.0.join("mariadb-template");
            mariadb::install_template(&template)?;
            for k in 1..=spec.nodes {
                let dir = node_dirs[k - 1].join("db");
                let log = logs.join(format!("n{k}.mariadb.log"));
                let mut db = MariaDb::new(net.ns(k), &template, dir, log)?;
                db.start().await?;
                dbs.push(db);
            }
        }
        let initial_cluster: Vec<String> = (1..=spec.nodes)
            .map(|k| format!("{k}={}:{PORT}", net.addr(k)))
            .collect();
        let mut nodes = Vec::new();
        let mut clients = Vec::new();
        for k in 1..=spec.nodes {
            let data_dir = node_dirs[k - 1].join("data");
            let database_url = match spec.backend {
                Backend::Mysql => mariadb::NODE_DATABASE_URL.to_string(),
                Backend::Sqlite => format!("sqlite://{}", data_dir.join("taskd.db").display()),
            };
            let mut node = Node::new(NodeSpec {
                id: k as u64,
                ns: net.ns(k),
                listen: format!("{}:{PORT}", net.addr(k)),
                data_dir,
                database_url,
                membership: Membership::Founder(initial_cluster.join(",")),
                taskd_bin: spec.taskd_bin.clone(),
                break_mode: spec.break_mode.clone(),
                snapshot_every: spec.snapshot_every.clone(),
                log: logs.join(format!("n{k}.taskd.log")),
                secret_file: secret_file.clone(),
            });
            node.start().map_err(|source| NetError::Spawn {
                command: format!("{} serve", spec.taskd_bin.display()),
                source,
            })?;
            nodes.push(node);
            clients.push(connect(&format!("http://{}:{PORT}", net.addr(k))));
        }
        let cluster = Cluster {
            nodes,
            ids: Arc::new(SlotIds::founders(spec.nodes)),
            next_id: spec.nodes as u64 + 1,
            dbs,
            net,
            clients,
            node_dirs,
            small_disks: spec.small_disks,
            _scratch: scratch,
        };
        Ok(cluster)
    }

    /// Kills every process and reaps it, so that nothing holds the
    /// namespaces or files that drop removes next.
    pub async fn shutdown(&mut self) {
        for node in &mut self.nodes {
            node.kill().await;
        }
        for db in &mut self.dbs {
            db.kill().await;
        }
    }

    /// Fills node `k`'s small disk to the last byte.
    pub async fn fill_disk(&self, k: usize) -> Result<u64, String> {
        if !self.small_disks {
            return Err("disk-full needs the nodes on small disks".into());
        }
        let path = self.node_dirs[k - 1].join("fill");
        let fill = move || -> u64 {
            use std::io::Write;
            let Ok(mut file) = std::fs::File::create(&path) else {
                return 0;
            };
            let chunk = vec![0u8; 1 << 20];
            let mut written = 0u64;
            // Until ENOSPC: that error is the point.
            while file.write_all(&chunk).is_ok() {
                written += chunk.len() as u64;
            }
            written
        };
        tokio::task::spawn_blocking(fill)
            .await
            .map_err(|e| e.to_string())
    }

    /// Frees what [`Cluster::fill_disk`] took.
    pub fn free_disk(&self, k: usize) -> Result<(), String> {
        match std::fs::remove_file(self.node_dirs[k - 1].join("fill")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits until every node knows a leader.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let statuses = self.statuses().await;
            if statuses
                .iter()
                .all(|s| s.as_ref().is_some_and(|s| s.leader_id != 0))
            {
                return Ok(());
            }
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if let Some(status) = node.exited() {
                    return Err(format!(
                        "node {} exited during start-up ({status}); see {}",
                        i + 1,
                        node.spec.log.display()
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the cluster did not elect a leader within {within:?}: {statuses:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node's GetClusterStatus (None where it did not answer).
    pub async fn statuses(&self) -> Vec<Option<pb::GetClusterStatusResponse>> {
        let calls = self.clients.iter().map(|c| cluster_status(c.clone()));
        futures_join_all(calls).await
    }

    /// Stops slot `k`'s node (already removed from the cluster), wipes its
    /// state (data dir; its MariaDB database), and starts a new, empty node
    /// there under a new id that joins through the other slots: a new
    /// machine with the old one's address. Returns the new id.
    pub async fn replace_process(&mut self, k: usize, as_voter: bool) -> Result<u64, String> {
        // 0 first: the workers then record no read as served by either
        // node while the slot changes hands (see workload::stale_reader).
        self.ids.set(k, 0);
        self.nodes[k - 1].kill().await;
        let old = self.nodes[k - 1].spec.clone();
        match std::fs::remove_dir_all(&old.data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("wiping {}: {e}", old.data_dir.display())),
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut database_url = old.database_url.clone();
        if let Some(db) = self.dbs.get(k - 1) {
            let name = old.database_url.rsplit('/').next().unwrap_or("taskd");
            // A database of its own per node id: fresh even if the drop of
            // the old one failed; the drop only frees the space.
            if let Err(e) = db.drop_database(name).await {
                eprintln!("taskd-chaos: slot {k}: dropping database {name}: {e}");
            }
            database_url = mariadb::database_url(id);
        }
        let seeds: Vec<String> = (1..=self.nodes.len())
            .filter(|&j| j != k)
            .map(|j| self.nodes[j - 1].spec.listen.clone())
            .collect();
        let log = old.log.with_file_name(format!("n{k}.node{id}.taskd.log"));
        let data_dir = old.data_dir.clone();
        let spec = NodeSpec {
            id,
            data_dir,
            database_url,
            membership: Membership::Join {
                seeds: seeds.join(","),
                as_voter,
            },
            log,
            ..old
        };
        self.ids.set(k, id);
        self.nodes[k - 1] = Node::new(spec);
        self.nodes[k - 1]
            .start()
            .map_err(|e| format!("starting node {id} in slot {k}: {e}"))?;
        Ok(id)
    }

    /// The slot of the leader most nodes agree on at the highest term, if any.
    pub async fn leader(&self) -> Option<usize> {
        let statuses = self.statuses().await;
        let term = statuses.iter().flatten().map(|s| s.term).max()?;
        statuses
            .iter()
            .flatten()
            .filter(|s| s.term == term && s.leader_id != 0)
            .find_map(|s| self.ids.slot_of(s.leader_id))
    }

    /// The status as the leader itself reports it (the only one that knows
    /// each member's matched index), with the leader's slot.
    pub async fn leader_status(&self) -> Option<(usize, pb::GetClusterStatusResponse)> {
        let statuses = self.statuses().await;
        statuses
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i + 1, s)))
            .filter(|(k, s)| s.role == pb::NodeRole::Leader as i32 && s.node_id == self.ids.get(*k))
            .max_by_key(|(_, s)| s.term)
    }
}

/// Runs the futures concurrently, answers in order.
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("status task panicked"));
    }
    out
}

pub async fn cluster_status(mut c: NodeClient) -> Option<pb::GetClusterStatusResponse> {
    let mut request = tonic::Request::new(pb::GetClusterStatusRequest {});
    request.set_timeout(Duration::from_millis(500));
    let call = c.raft.get_cluster_status(request);
    match tokio::time::timeout(Duration::from_millis(600), call).await {
        Ok(Ok(r)) => Some(r.into_inner()),
        _ => None,
    }
}

/// A lazily connected channel: it reconnects by itself after a node dies.
fn connect(uri: &str) -> NodeClient {
    let channel = Endpoint::from_shared(uri.to_string())
        .expect("a valid URI")
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .connect_lazy();
    NodeClient {
        task: TaskServiceClient::new(channel.clone()),
        raft: RaftServiceClient::with_interceptor(channel, ClusterSecret),
    }
}

/// Every task a node holds, read from its own database (STALE), by pages.
pub async fn list_all(
    c: &NodeClient,
    consistency: pb::ReadConsistency,
) -> Result<Vec<pb::Task>, tonic::Status> {
    let mut tasks = Vec::new();
    let mut page_token = String::new();
    loop {
        let mut request = tonic::Request::new(pb::ListTasksRequest {
            page_size: 1000,
            page_token: page_token.clone(),
            consistency: consistency as i32,
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(5));
        let page = c.task.clone().list_tasks(request).await?.into_inner();
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return Ok(tasks);
        }
        page_token = page.next_page_token;
    }
}
