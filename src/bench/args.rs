//! The flags of `taskd bench` and the workloads they name.

use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};

/// What `--target etcd` says when this binary was built without etcd support.
#[cfg_attr(feature = "etcd", allow(dead_code))]
pub const NO_ETCD: &str =
    "--target etcd needs a taskd built with `cargo build --release --features etcd` (and a system protoc)";

#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Examples:
  taskd bench --nodes 3 --workload create --clients 64
  taskd bench --nodes 3 --workload failover --kills 10
  taskd bench --endpoints 127.0.0.1:50051,127.0.0.1:50052 --workload get --output json")]
pub struct BenchArgs {
    /// Drive these running nodes (host:port, comma-separated) instead of
    /// starting a cluster. With `--target etcd`, etcd members' client URLs.
    #[arg(
        long,
        env = "TASKD_BENCH_ENDPOINTS",
        value_delimiter = ',',
        conflicts_with = "nodes"
    )]
    pub endpoints: Vec<String>,

    /// TLS and credentials for a secured cluster (`--cacert`, `--token`, …),
    /// as the operator commands take them. With --nodes, give the nodes the
    /// matching files with --serve-arg.
    #[command(flatten)]
    pub connection: crate::cli::Connection,

    /// Start a local cluster of this many `taskd serve` processes on free
    /// loopback ports, in a temporary directory, and stop it afterwards.
    /// Their CPU time and memory are part of the report.
    #[arg(long, env = "TASKD_BENCH_NODES")]
    pub nodes: Option<u16>,

    /// With --nodes: one database per node instead of SQLite, `{id}` replaced
    /// by the node id, e.g. `mysql://root@127.0.0.1:3306/bench_n{id}`.
    /// MySQL databases are dropped first, so every run starts empty.
    #[arg(long, env = "TASKD_BENCH_DATABASE_URL_TEMPLATE", requires = "nodes")]
    pub database_url_template: Option<String>,

    /// With --nodes: more flags for every `taskd serve` (repeatable; spaces
    /// split a value into several), e.g. `--serve-arg=--election-timeout=500`.
    #[arg(
        long = "serve-arg",
        env = "TASKD_BENCH_SERVE_ARGS",
        value_delimiter = ' ',
        allow_hyphen_values = true,
        requires = "nodes"
    )]
    pub serve_args: Vec<String>,

    /// The system under test.
    #[arg(long, env = "TASKD_BENCH_TARGET", value_enum, default_value_t = Target::Taskd)]
    pub target: Target,

    /// What each call does.
    #[arg(long, env = "TASKD_BENCH_WORKLOAD", value_enum, default_value_t = Workload::Create)]
    pub workload: Workload,

    /// Concurrent callers; each keeps exactly one request in flight (closed loop).
    #[arg(long, env = "TASKD_BENCH_CLIENTS", default_value_t = 16)]
    pub clients: usize,

    /// HTTP/2 connections the callers share (round-robin), spread round-robin
    /// over the endpoints. Default: one per endpoint.
    #[arg(long, env = "TASKD_BENCH_CONNECTIONS")]
    pub connections: Option<usize>,

    /// Seconds measured, after the warmup.
    #[arg(long, env = "TASKD_BENCH_DURATION", default_value_t = 10.0)]
    pub duration: f64,

    /// Seconds of load before the measured window; calls that complete in
    /// it do not count.
    #[arg(long, env = "TASKD_BENCH_WARMUP", default_value_t = 2.0)]
    pub warmup: f64,

    /// Tasks (or etcd keys) created before a workload that reads or updates
    /// them (all but create), with 64 concurrent creates.
    #[arg(long, env = "TASKD_BENCH_PRELOAD", default_value_t = 10_000)]
    pub preload: usize,

    /// `text`: a summary for people. `json`: the summary as ONE JSON object,
    /// the last line of standard output. Progress goes to standard error.
    #[arg(long, env = "TASKD_BENCH_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Processes whose CPU time and memory count as the server's, comma-separated,
    /// e.g. etcd members or mariadbd. With --nodes, added to the
    /// taskd children, which always count.
    #[arg(long, env = "TASKD_BENCH_SERVER_PIDS", value_delimiter = ',')]
    pub server_pids: Vec<u32>,

    /// With `--workload failover`: how many leaders to kill, one after
    /// another; with `transfer` and `stop-leader`: how many moves.
    #[arg(long, env = "TASKD_BENCH_KILLS", default_value_t = 10)]
    pub kills: usize,

    /// Seconds one call may take before it counts as DEADLINE_EXCEEDED.
    #[arg(long, env = "TASKD_BENCH_CALL_TIMEOUT", default_value_t = 10.0)]
    pub call_timeout: f64,

    /// With --nodes: seconds the cluster may take until every node is SERVING.
    #[arg(long, env = "TASKD_BENCH_START_TIMEOUT", default_value_t = 60.0)]
    pub start_timeout: f64,
}

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// taskd nodes over `taskd.v1.TaskService`.
    Taskd,
    /// etcd members over the v3 KV API (a taskd built with `--features etcd`):
    /// create = Put of a new key, get = linearizable Range, get-stale =
    /// serializable Range, list = prefix Range limit 100, update = Put over a
    /// preloaded key.
    Etcd,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Taskd => "taskd",
            Target::Etcd => "etcd",
        }
    }
}

/// What each call does. Tasks are ~200 bytes (title, description, one label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// CreateTask with a unique title (no request_id).
    Create,
    /// GetTask of a random preloaded task, linearizable (the default consistency).
    Get,
    /// GetTask of a random preloaded task with READ_CONSISTENCY_STALE: the
    /// asked node answers from its own copy.
    GetStale,
    /// ListTasks filtered by one of 10 labels, page_size 100, default
    /// consistency; the preload makes every first page full.
    List,
    /// UpdateTask of a random preloaded task's title, unconditional
    /// (expected_version 0, update_mask title).
    Update,
    /// 50 % get, 30 % create, 20 % update, drawn per call.
    Mixed,
    /// Only with --nodes: kill -9 the leader, time until a CreateTask (100 ms
    /// per try, retried at once on the survivors) is acknowledged, restart
    /// the node, repeat --kills times.
    Failover,
    /// Only with --nodes: TransferLeadership away from the leader under a
    /// sequential writer; the longest wait between two acknowledged writes.
    Transfer,
    /// Only with --nodes: SIGTERM to the leader (it hands over first) under
    /// a sequential writer, then a restart; measured as `transfer`.
    StopLeader,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Get => "get",
            Workload::GetStale => "get-stale",
            Workload::List => "list",
            Workload::Update => "update",
            Workload::Mixed => "mixed",
            Workload::Failover => "failover",
            Workload::Transfer => "transfer",
            Workload::StopLeader => "stop-leader",
        }
    }

    /// Whether the workload reads or changes tasks that must exist first.
    pub fn needs_preload(self) -> bool {
        !matches!(
            self,
            Workload::Create | Workload::Failover | Workload::Transfer | Workload::StopLeader
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

impl BenchArgs {
    /// Turns contradictory or impossible flags into one precise error.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.nodes.is_none() && self.endpoints.is_empty() {
            bail!("give --endpoints HOST:PORT,… (a running cluster) or --nodes N (start one)");
        }
        if let Some(n) = self.nodes {
            if !(1..=9).contains(&n) {
                bail!("--nodes must be between 1 and 9, not {n}");
            }
            if self.target == Target::Etcd {
                bail!("--target etcd drives running etcd members: give --endpoints, not --nodes");
            }
        }
        if self.target == Target::Etcd && cfg!(not(feature = "etcd")) {
            bail!("{NO_ETCD}");
        }
        if let Some(template) = &self.database_url_template {
            if !template.contains("{id}") {
                bail!("--database-url-template {template:?} has no {{id}}: each node needs its own database");
            }
        }
        if matches!(
            self.workload,
            Workload::Failover | Workload::Transfer | Workload::StopLeader
        ) {
            let name = self.workload.name();
            match self.nodes {
                None => bail!(
                    "--workload {name} moves the leader of local nodes: it needs --nodes, not --endpoints"
                ),
                Some(n) if n < 3 => bail!(
                    "--workload {name} needs --nodes 3 or more (a quorum must survive the move)"
                ),
                Some(_) => {}
            }
            if self.kills == 0 {
                bail!("--kills must be at least 1");
            }
        }
        if self.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if self.connections == Some(0) {
            bail!("--connections must be at least 1");
        }
        for (flag, value) in [
            ("--duration", self.duration),
            ("--call-timeout", self.call_timeout),
            ("--start-timeout", self.start_timeout),
        ] {
            if !(value > 0.0 && value.is_finite()) {
                bail!("{flag} must be a positive number of seconds, not {value}");
            }
        }
        if !(self.warmup >= 0.0 && self.warmup.is_finite()) {
            bail!("--warmup must be zero or more seconds, not {}", self.warmup);
        }
        if self.workload.needs_preload() && self.preload == 0 {
            bail!(
                "--workload {} reads preloaded tasks: --preload must be at least 1",
                self.workload.name()
            );
        }
        Ok(())
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup)
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.call_timeout)
    }

    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.start_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(argv: &[&str]) -> anyhow::Result<BenchArgs> {
        let mut full = vec!["bench"];
        full.extend_from_slice(argv);
        let args = Cli::try_parse_from(full)?.bench;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn accepts_both_forms() {
        let a = parse(&["--endpoints", "a:1,b:2", "--workload", "get-stale"]).unwrap();
        assert_eq!(a.endpoints, ["a:1", "b:2"]);
        assert_eq!(a.workload, Workload::GetStale);
        let a = parse(&[
            "--nodes",
            "3",
            "--serve-arg=--election-timeout=500",
            "--database-url-template",
            "mysql://root@127.0.0.1:3306/bench_n{id}",
        ])
        .unwrap();
        assert_eq!(a.serve_args, ["--election-timeout=500"]);
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--nodes", "3", "--endpoints", "a:1"]).is_err());
        assert!(parse(&["--endpoints", "a:1", "--workload", "failover"]).is_err());
        assert!(parse(&["--nodes", "1", "--workload", "failover"]).is_err());
        assert!(parse(&["--nodes", "3", "--database-url-template", "mysql://h/db"]).is_err());
        assert!(parse(&["--nodes", "3", "--clients", "0"]).is_err());
        assert!(parse(&["--nodes", "3", "--duration", "0"]).is_err());
        assert!(parse(&["--nodes", "3", "--target", "etcd"]).is_err());
    }

    #[cfg(not(feature = "etcd"))]
    #[test]
    fn etcd_without_the_feature_says_how_to_build() {
        let err = parse(&["--endpoints", "a:1", "--target", "etcd"]).unwrap_err();
        assert!(err.to_string().contains("--features etcd"), "{err}");
    }
}
