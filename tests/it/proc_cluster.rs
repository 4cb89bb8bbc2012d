//! `ProcessCluster`: a cluster of real `taskd serve` processes on SQLite
//! files or on fresh MySQL databases (one per node, dropped at the end), for
//! tests that must crash a node (SIGKILL) rather than stop it: an in-process
//! node cannot be crashed, since its Raft core's tasks outlive any abort.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use sqlx::migrate::MigrateDatabase;
use taskd::store::Backend;

use crate::process::{
    is_serving, spawn_release_on, wait_all_applied, wait_for_leader, wait_serving, TaskdProcess,
    TASKD,
};
use crate::support::{eventually, init_tracing, mysql_server_url, unique_name};

pub(crate) struct ProcessCluster {
    pub members: BTreeMap<u64, String>,
    urls: BTreeMap<u64, Option<String>>,
    nodes: BTreeMap<u64, TaskdProcess>,
    /// The `taskd` binary each node runs (this build's unless upgraded).
    programs: BTreeMap<u64, PathBuf>,
    backend: Backend,
    // Last: the processes are killed (dropped) before their files go.
    dir: tempfile::TempDir,
}

impl ProcessCluster {
    /// Starts `n` nodes on `backend` and waits until they agree on a leader.
    pub(crate) async fn start(n: u64, backend: Backend) -> Self {
        Self::start_with_mysql(n, backend, &mysql_server_url()).await
    }

    /// [`ProcessCluster::start`], MySQL databases (if `backend` is MySQL) on
    /// the server at `mysql_server` (`mysql://user@host:port`).
    pub(crate) async fn start_with_mysql(n: u64, backend: Backend, mysql_server: &str) -> Self {
        Self::start_release(Path::new(TASKD), n, backend, mysql_server).await
    }

    /// [`ProcessCluster::start_with_mysql`] with every node running the
    /// `taskd` binary at `program` (another release's, say).
    pub(crate) async fn start_release(
        program: &Path,
        n: u64,
        backend: Backend,
        mysql_server: &str,
    ) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let members: BTreeMap<u64, String> = (1..=n)
            .zip(crate::process::free_ports(n as usize))
            .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
            .collect();
        let db = unique_name("taskd_proc");
        let urls = members
            .keys()
            .map(|id| {
                let url = match backend {
                    Backend::Sqlite => None,
                    Backend::Mysql => Some(format!("{mysql_server}/{db}_n{id}")),
                };
                (*id, url)
            })
            .collect();
        let mut cluster = Self {
            members,
            urls,
            nodes: BTreeMap::new(),
            programs: (1..=n).map(|id| (id, program.to_path_buf())).collect(),
            backend,
            dir,
        };
        for id in 1..=n {
            cluster.spawn(id);
        }
        wait_for_leader(&cluster.members).await;
        cluster
    }

    fn spawn(&mut self, id: u64) {
        let node = spawn_release_on(
            &self.programs[&id],
            self.dir.path(),
            id,
            &self.members,
            self.urls[&id].as_deref(),
        );
        self.nodes.insert(id, node);
    }

    pub(crate) fn addrs(&self) -> Vec<String> {
        self.members.values().cloned().collect()
    }

    /// The running nodes, id → address.
    pub(crate) fn running(&self) -> BTreeMap<u64, String> {
        self.nodes
            .keys()
            .map(|id| (*id, self.members[id].clone()))
            .collect()
    }

    /// Waits until the running nodes agree on a leader among them.
    pub(crate) async fn leader(&self) -> u64 {
        wait_for_leader(&self.running()).await
    }

    /// SIGKILLs node `id` and checks that it died of it (not earlier).
    pub(crate) fn kill_9(&mut self, id: u64) {
        let status = self.nodes.get_mut(&id).expect("node is running").kill_9();
        assert_eq!(
            status.signal(),
            Some(9),
            "node {id} died of SIGKILL: {status}"
        );
        self.nodes.remove(&id);
    }

    /// Freezes node `id` (SIGSTOP): it neither sends nor answers anything,
    /// but its sockets stay open, so calls to it queue up unseen.
    pub(crate) fn pause(&self, id: u64) {
        self.nodes[&id].signal("STOP");
    }

    /// Lets a paused node run again (SIGCONT).
    pub(crate) fn resume(&self, id: u64) {
        self.nodes[&id].signal("CONT");
    }

    /// Restarts node `id` from its data and waits until it is SERVING.
    pub(crate) async fn restart(&mut self, id: u64) {
        self.spawn(id);
        wait_serving(&self.members[&id]).await;
    }

    /// Acts as the nodes' supervisor (systemd, Kubernetes) until every node
    /// is SERVING: a node that exited (as a node does when its store failed
    /// for good) is started again on its data. The ids restarted.
    pub(crate) async fn supervise_until_serving(&mut self) -> Vec<u64> {
        let mut restarted = Vec::new();
        eventually("every node SERVING, exited ones restarted", || {
            let exited: Vec<u64> = self
                .nodes
                .iter_mut()
                .filter_map(|(id, node)| node.has_exited().then_some(*id))
                .collect();
            for id in &exited {
                eprintln!("node {id} exited; restarting it, as its supervisor would");
                self.spawn(*id);
            }
            restarted.extend(exited);
            let members = self.members.clone();
            async move {
                for addr in members.values() {
                    if !is_serving(addr).await {
                        return None;
                    }
                }
                Some(())
            }
        })
        .await;
        restarted
    }

    /// Stops node `id` cleanly (SIGTERM; it must exit 0), starts the binary
    /// at `program` on its data and database, and waits until it is SERVING.
    pub(crate) async fn replace(&mut self, id: u64, program: &Path) {
        let mut node = self.nodes.remove(&id).expect("node is running");
        node.signal("TERM");
        let status = node.wait_exit().await;
        assert!(status.success(), "node {id} exit after SIGTERM: {status}");
        self.programs.insert(id, program.to_path_buf());
        self.restart(id).await;
    }

    /// Node `id`'s SQLite database file (the default under its data dir).
    pub(crate) fn sqlite_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}/taskd.db"))
    }

    /// Waits until every node of the cluster has applied the leader's log.
    pub(crate) async fn wait_all_applied(&self) {
        wait_all_applied(&self.members).await;
    }

    /// Kills every node and drops the MySQL databases.
    pub(crate) async fn shutdown(mut self) {
        for (_, mut node) in std::mem::take(&mut self.nodes) {
            node.kill_9();
        }
        if self.backend == Backend::Mysql {
            for url in self.urls.values().flatten() {
                let _ = sqlx::MySql::drop_database(url).await;
            }
        }
    }
}

/// Declares `NAME::sqlite` and `NAME::mysql` tests that run
/// `async fn NAME(cluster: &mut ProcessCluster)` on 3 fresh node processes.
#[macro_export]
macro_rules! on_both_backends_as_processes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::proc_cluster::run(taskd::store::Backend::Sqlite, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                $crate::proc_cluster::run(taskd::store::Backend::Mysql, super::$name).await
            }
        }
    )*};
}

pub(crate) async fn run(backend: Backend, test: impl AsyncFnOnce(&mut ProcessCluster)) {
    let mut cluster = ProcessCluster::start(3, backend).await;
    test(&mut cluster).await;
    cluster.shutdown().await;
}
