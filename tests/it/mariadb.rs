//! A MariaDB server of a test's own, for tests that need one configured
//! otherwise than the shared one, or killed and restarted: its own datadir
//! (a temp dir), port and process, removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::support::eventually;

pub struct Mariadb {
    pub port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    process: Option<Child>,
}

/// `name` from PATH, else from /usr/sbin and /usr/bin (root's PATH may lack them).
fn find(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/usr/sbin", "/usr/bin"])
        {
            let path = PathBuf::from(dir).join(name);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!("none of {names:?} found: the test command installs mariadb-server")
}

impl Mariadb {
    /// Initializes a datadir and starts `mariadbd` with `extra_args` (e.g.
    /// `--autocommit=0`); returns once it answers queries.
    pub async fn start(extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let install = Command::new(find(&["mariadb-install-db", "mysql_install_db"]))
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
            ])
            .arg("--skip-test-db")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run mariadb-install-db");
        assert!(install.success(), "mariadb-install-db failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            dir,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            process: None,
        };
        server.spawn().await;
        server
    }

    /// `mysql://root@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    async fn spawn(&mut self) {
        let d = self.dir.path();
        let child = Command::new(find(&["mariadbd", "mysqld"]))
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("err.log").display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=32M")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.process = Some(child);
        let url = format!("mysql://root@127.0.0.1:{}", self.port);
        eventually("the test's own mariadbd answers", || {
            let url = url.clone();
            async move {
                use sqlx::Connection;
                let mut conn = sqlx::MySqlConnection::connect(&url).await.ok()?;
                sqlx::query("SELECT 1").execute(&mut conn).await.ok()?;
                Some(())
            }
        })
        .await;
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            // SIGKILL: wait() returns at once.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
