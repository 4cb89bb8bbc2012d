//! One `taskd serve` process, run inside its node's namespace.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// How a node enters the cluster.
#[derive(Debug, Clone)]
pub enum Membership {
    /// A founding member: `--initial-cluster id=addr,…`.
    Founder(String),
    /// A node started empty that asks the members at `seeds` (host:port,…)
    /// to add it: `--join SEEDS --join-as voter|learner`. A restart keeps
    /// the flags (taskd ignores them once it is a member).
    Join { seeds: String, as_voter: bool },
}

/// How to start a node; fixed for the node's life (a replaced node is a
/// new node, with a new id and a spec of its own).
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    pub ns: String,
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub membership: Membership,
    pub taskd_bin: PathBuf,
    /// `--break MODE`, passed through (taskd built with `chaos-break`).
    pub break_mode: Option<String>,
    /// `--snapshot-every` and `--snapshot-keep-logs`.
    pub snapshot_every: Option<(String, String)>,
    pub log: PathBuf,
    /// `--cluster-secret-file`.
    pub secret_file: PathBuf,
}

/// A node's process and what the harness did to it.
#[derive(Debug)]
pub struct Node {
    pub spec: NodeSpec,
    child: Option<Child>,
    paused: bool,
    /// How often it was started (restarts by a nemesis or the supervisor
    /// are the ones after the first).
    pub starts: u32,
}

impl Node {
    pub fn new(spec: NodeSpec) -> Self {
        Self {
            spec,
            child: None,
            paused: false,
            starts: 0,
        }
    }

    pub fn start(&mut self) -> std::io::Result<()> {
        let s = &self.spec;
        std::fs::create_dir_all(&s.data_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &s.ns])
            .arg(&s.taskd_bin)
            .args([
                "serve",
                "--node-id",
                &s.id.to_string(),
                "--listen",
                &s.listen,
            ])
            .arg("--data-dir")
            .arg(&s.data_dir)
            .args(["--database-url", &s.database_url])
            .arg("--cluster-secret-file")
            .arg(&s.secret_file);
        match &s.membership {
            Membership::Founder(initial) => command.args(["--initial-cluster", initial]),
            Membership::Join { seeds, as_voter } => command.args([
                "--join",
                seeds,
                "--join-as",
                if *as_voter { "voter" } else { "learner" },
            ]),
        };
        if let Some(mode) = &s.break_mode {
            command.args(["--break", mode]);
        }
        if let Some((every, keep)) = &s.snapshot_every {
            command.args(["--snapshot-every", every, "--snapshot-keep-logs", keep]);
        }
        let child = command
            .env("RUST_LOG", "info,openraft=warn,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.starts += 1;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    fn pid(&self) -> Option<libc::pid_t> {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .map(|p| p as libc::pid_t)
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// kill -9, and reap it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        self.paused = false;
    }

    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// If the process ended by itself: how. Clears it, so that the caller
    /// (the supervisor) can start it again.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }

    /// A clean stop at the end (SIGCONT, SIGTERM, SIGKILL after a bound).
    pub async fn stop(&mut self) {
        if self.paused {
            self.resume();
        }
        self.signal(libc::SIGTERM);
        if let Some(mut child) = self.child.take() {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}
