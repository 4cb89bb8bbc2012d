//! One MariaDB server per node, inside the node's namespace on its loopback
//! (127.0.0.1:3306 there), so that one node's database can die alone.
//!
//! `mariadb-install-db` runs once per harness run into a template datadir;
//! each node gets a copy (an install takes seconds, a copy milliseconds).
//! The server runs with `--skip-grant-tables`: only the node's own process
//! can reach it, from inside its namespace.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::netns::{run, NetError};

/// The URL a founding node inside the namespace uses for its database.
pub const NODE_DATABASE_URL: &str = "mysql://root@127.0.0.1:3306/taskd";

/// The database of a node added later (the membership nemesis): one per
/// node id, so that a new node never sees an old one's tables.
pub fn database_url(id: u64) -> String {
    format!("mysql://root@127.0.0.1:3306/taskd_n{id}")
}

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Installs the system tables once into `dir`.
pub fn install_template(dir: &Path) -> Result<(), NetError> {
    let install = ["mariadb-install-db", "mysql_install_db"]
        .into_iter()
        .find(|c| run("sh", &["-c", &format!("command -v {c}")]).is_ok())
        .ok_or_else(|| {
            NetError::Missing(
                "mariadb-install-db not found: install mariadb-server (apt-get install -y mariadb-server) \
                 or use --backend sqlite"
                    .into(),
            )
        })?;
    let datadir = format!("--datadir={}", dir.display());
    run(
        install,
        &[
            "--no-defaults",
            "--user=root",
            &datadir,
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
    )?;
    Ok(())
}

/// One node's MariaDB server.
#[derive(Debug)]
pub struct MariaDb {
    ns: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl MariaDb {
    /// Copies the template into `dir/data`; logs go to `log`.
    pub fn new(ns: String, template: &Path, dir: PathBuf, log: PathBuf) -> Result<Self, NetError> {
        std::fs::create_dir_all(&dir).map_err(|source| NetError::Spawn {
            command: format!("mkdir {}", dir.display()),
            source,
        })?;
        let data = dir.join("data");
        run(
            "cp",
            &[
                "-a",
                &template.display().to_string(),
                &data.display().to_string(),
            ],
        )?;
        Ok(Self {
            ns,
            dir,
            log,
            child: None,
        })
    }

    /// The directory that holds the data (the one a full disk fills).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// Starts the server and waits until it answers a query.
    pub async fn start(&mut self) -> Result<(), NetError> {
        let data = self.dir.join("data");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| NetError::Spawn {
                command: format!("open {}", self.log.display()),
                source,
            })?;
        let args = [
            "netns".to_string(),
            "exec".into(),
            self.ns.clone(),
            "mariadbd".into(),
            "--no-defaults".into(),
            "--user=root".into(),
            format!("--datadir={}", data.display()),
            format!("--socket={}", self.socket().display()),
            format!("--pid-file={}", self.dir.join("mariadbd.pid").display()),
            "--port=3306".into(),
            "--bind-address=127.0.0.1".into(),
            "--skip-name-resolve".into(),
            "--skip-grant-tables".into(),
            "--skip-log-bin".into(),
            "--max-connections=300".into(),
            "--innodb-buffer-pool-size=32M".into(),
            "--innodb-log-file-size=16M".into(),
            // The durable settings taskd relies on, stated, not assumed.
            "--innodb-flush-log-at-trx-commit=1".into(),
        ];
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|source| NetError::Spawn {
                command: "dup log".into(),
                source,
            })?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NetError::Spawn {
                command: "ip netns exec … mariadbd".into(),
                source,
            })?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), NetError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let socket = format!("--socket={}", self.socket().display());
        loop {
            let probe = Command::new("mariadb")
                .args([
                    "--no-defaults",
                    &socket,
                    "-uroot",
                    "-N",
                    "-B",
                    "-e",
                    "select 1",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if probe.is_ok_and(|s| s.success()) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(NetError::Missing(format!(
                        "mariadbd in {} exited during start-up ({status}); see {}",
                        self.ns,
                        self.log.display()
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(NetError::Missing(format!(
                    "mariadbd in {} did not answer within {START_TIMEOUT:?}; see {}",
                    self.ns,
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Drops database `name` (a removed node's), through the socket.
    pub async fn drop_database(&self, name: &str) -> Result<(), String> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{name:?} is not a plain database name"));
        }
        let socket = format!("--socket={}", self.socket().display());
        let sql = format!("DROP DATABASE IF EXISTS `{name}`");
        let out = Command::new("mariadb")
            .args(["--no-defaults", &socket, "-uroot", "-e", &sql])
            .stdin(Stdio::null())
            .output();
        match tokio::time::timeout(Duration::from_secs(20), out).await {
            Ok(Ok(o)) if o.status.success() => Ok(()),
            Ok(Ok(o)) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 20s".into()),
        }
    }

    /// kill -9, and reap it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Whether the server process is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// A clean stop at the end (SIGTERM, then SIGKILL after a bound).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
            if tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}
