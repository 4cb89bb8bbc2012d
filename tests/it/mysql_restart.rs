//! MySQL itself crashing under load: a throwaway `mariadbd` that this test
//! starts on its own port and data directory (as scripts/mysql.sh does),
//! killed with SIGKILL and restarted while writers keep creating through a
//! 3-node cluster whose databases all live on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sqlx::Connection;
use taskd::store::Backend;

use crate::proc_cluster::ProcessCluster;
use crate::process::free_ports;
use crate::support::eventually;
use crate::writers::{assert_every_node_consistent, Via, Writers};

/// A mariadbd of this test's own; killed (and its files removed) on drop.
struct Mariadb {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn find(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return path;
        }
    }
    panic!("{program} not found: the MySQL restart test needs mariadb-server installed");
}

impl Mariadb {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let user = if nix_is_root() { "root" } else { "" };
        let mut install = Command::new(find("mariadb-install-db"));
        install.args([
            "--no-defaults".to_string(),
            format!("--datadir={}", dir.path().join("data").display()),
            "--auth-root-authentication-method=normal".into(),
            "--skip-test-db".into(),
        ]);
        if !user.is_empty() {
            install.arg(format!("--user={user}"));
        }
        let out = install.output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut db = Self {
            port: free_ports(1)[0],
            dir,
            child: None,
        };
        db.spawn().await;
        db
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Starts mariadbd on the data directory and waits until it answers.
    async fn spawn(&mut self) {
        let d = self.dir.path();
        let mut command = Command::new(find("mariadbd"));
        command.args([
            "--no-defaults".to_string(),
            format!("--datadir={}", d.join("data").display()),
            format!("--socket={}", d.join("mysqld.sock").display()),
            format!("--pid-file={}", d.join("mariadbd.pid").display()),
            format!("--log-error={}", d.join("mariadbd.err").display()),
            "--bind-address=127.0.0.1".into(),
            format!("--port={}", self.port),
            "--skip-name-resolve".into(),
            "--max-connections=500".into(),
            "--innodb-buffer-pool-size=64M".into(),
        ]);
        if nix_is_root() {
            command.arg("--user=root");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(command.spawn().expect("start mariadbd"));
        let url = self.url();
        eventually("the throwaway mariadbd to answer", || async {
            sqlx::MySqlConnection::connect(&url).await.ok()
        })
        .await;
    }

    fn kill_9(&mut self) {
        let mut child = self.child.take().expect("mariadbd runs");
        child.kill().expect("SIGKILL mariadbd");
        child.wait().expect("reap mariadbd");
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("mariadbd.err"));
            eprintln!("---- mariadbd.err ----\n{}", log.unwrap_or_default());
        }
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// SIGKILL of the MySQL server every node stores in, with eight writers
/// creating, then a restart on the same data: every node serves again
/// (health SERVING; a node whose apply lost its answer with the connection
/// exits, and is restarted as its supervisor would), 100 creates are acknowledged after the restart, and
/// every node holds every acknowledged create exactly once (nothing
/// acknowledged was lost in MySQL's crash, nothing duplicated by retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_restart_under_load_loses_no_acknowledged_write() {
    let mut mariadb = Mariadb::start().await;
    let mut cluster = ProcessCluster::start_with_mysql(3, Backend::Mysql, &mariadb.url()).await;
    let writers = Writers::start(
        "",
        8,
        Via::Grpc {
            addrs: cluster.addrs(),
            request_ids: true,
        },
    );
    writers.wait_acked(100).await;
    mariadb.kill_9();
    mariadb.spawn().await;
    let mut restarted = cluster.supervise_until_serving().await;
    let at_restart = writers.acked();
    writers.wait_acked(at_restart + 100).await;
    let seen = writers.stop().await;
    restarted.extend(cluster.supervise_until_serving().await);
    eprintln!("nodes restarted after the MySQL crash: {restarted:?}");
    cluster.wait_all_applied().await;
    assert_every_node_consistent(&cluster.members, &seen.outcomes).await;
    cluster.shutdown().await;
}
