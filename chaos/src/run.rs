//! The command line, and one run: start the cluster, run the workloads
//! under the seeded nemesis schedule, heal, check, report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cluster::{Backend, Cluster, ClusterSpec};
use crate::history::{Recorder, Status};
use crate::nemesis::{self, Nemesis};
use crate::report::{self, Summary};
use crate::workload::{self, KeyRing, Shared};
use crate::{netns, verify};

/// A defect of taskd to switch on (needs a taskd built with
/// `--features taskd/chaos-break`); the run must then report a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BreakMode {
    // Default reads served locally, without read-index.
    StaleReads,
    // The log's flush callback fires before the append commits.
    AckBeforeDurable,
    // Each apply statement commits on its own, not in one transaction.
    ApplyWithoutTransaction,
}

impl BreakMode {
    fn flag(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

/// Jepsen-style fault suite for taskd: real `taskd serve` processes, each in
/// its own network namespace, under seeded faults; checks linearizability,
/// lost/duplicated writes and replica equality. Needs root, `ip` and `nft`.
#[derive(Debug, Clone, Parser)]
#[command(name = "taskd-chaos", version)]
pub struct Args {
    /// Seeds the fault schedule and the clients' choices: the same seed
    /// gives the same schedule. Default: a random seed (printed).
    #[arg(long)]
    pub seed: Option<u64>,

    /// How long the workload runs (faults stop in the last sixth, at least 5s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "90s")]
    pub duration: Duration,

    /// Cluster size: 3 or 5.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,

    /// Where the nodes keep their state.
    #[arg(long, value_enum, default_value_t = Backend::Mysql)]
    pub backend: Backend,

    /// The faults to draw from, comma-separated. Default: kill, pause,
    /// partition, and mysql-kill with --backend mysql. `kill` kills -9 one
    /// node, a minority, a majority or all; `pause` SIGSTOPs; `partition` is
    /// any partition-* shape; `partition-ring` needs 5 nodes; `mysql-kill`
    /// kills -9 a node's MariaDB; `disk-full` fills a node's disk (each
    /// node's files then live on a small tmpfs); `snapshot-kill` cuts a node
    /// off until it needs a snapshot, then kills it -9 while it installs one
    /// (nodes then snapshot every 50 entries); `membership` is any of
    /// `membership-replace` (remove a voter, start a new node with a new id
    /// and a fresh database in its place, joining as a voter),
    /// `membership-learner` (the same, joining as a learner, then promoted)
    /// and `membership-transfer` (TransferLeadership). Each heals (restart,
    /// SIGCONT, rules removed, space freed, voters back to the node count)
    /// after 2-6 s.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub nemesis: Vec<Nemesis>,

    /// Break taskd on purpose (taskd built with --features
    /// taskd/chaos-break): the run must then FAIL. `stale-reads` serves
    /// default reads without read-index; `ack-before-durable` acknowledges
    /// log appends before they commit; `apply-without-transaction` commits
    /// each apply statement on its own.
    #[arg(long = "break", value_enum)]
    pub break_mode: Option<BreakMode>,

    /// Output directory (history.jsonl, report.md, timeline.html, logs/).
    /// Default: chaos-out/seed-<SEED>.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// The taskd binary. Default: `taskd` next to this executable.
    #[arg(long)]
    pub taskd_bin: Option<PathBuf>,
}

impl Args {
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes != 3 && self.nodes != 5 {
            return Err(format!("--nodes must be 3 or 5, not {}", self.nodes));
        }
        if self.duration < Duration::from_secs(10) {
            return Err(format!(
                "--duration must be at least 10s, not {:?}",
                self.duration
            ));
        }
        if self.backend == Backend::Sqlite && self.nemesis.contains(&Nemesis::MysqlKill) {
            return Err("--nemesis mysql-kill needs --backend mysql".into());
        }
        if self.nodes != 5 && self.nemesis.contains(&Nemesis::PartitionRing) {
            return Err("--nemesis partition-ring needs --nodes 5".into());
        }
        Ok(())
    }
}

fn default_taskd_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    Ok(exe.with_file_name("taskd"))
}

/// How long a healed cluster gets for each final step (elect, answer the
/// final read, converge): a healthy one needs about a second.
const SETTLE: Duration = Duration::from_secs(30);

pub async fn run(args: Args) -> Result<Summary, String> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!("taskd-chaos: seed {seed}");
    netns::check_prerequisites().map_err(|e| e.to_string())?;
    for removed in netns::remove_leftovers() {
        eprintln!("taskd-chaos: removed a leftover of an earlier run: {removed}");
    }
    remove_leftover_dirs();
    let taskd_bin = match args.taskd_bin.clone() {
        Some(p) => p,
        None => default_taskd_bin()?,
    };
    if !taskd_bin.is_file() {
        return Err(format!(
            "no taskd binary at {} (build it: cargo build --bin taskd --bin taskd-chaos --features taskd/chaos-break, or pass --taskd-bin)",
            taskd_bin.display()
        ));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("chaos-out/seed-{seed}")));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mix = if args.nemesis.is_empty() {
        nemesis::default_mix(args.backend == Backend::Mysql)
    } else {
        args.nemesis.clone()
    };
    let faults = nemesis::schedule(seed, &mix, args.nodes, args.duration);
    std::fs::write(
        out.join("schedule.json"),
        serde_json::to_string_pretty(&faults).unwrap_or_default(),
    )
    .map_err(|e| format!("cannot write the schedule: {e}"))?;

    let spec = ClusterSpec {
        nodes: args.nodes,
        backend: args.backend,
        taskd_bin,
        break_mode: args.break_mode.map(BreakMode::flag),
        out: out.clone(),
        small_disks: mix.contains(&Nemesis::DiskFull),
        // Small, so that a node cut off for a few seconds falls behind the
        // purged log and must install a snapshot when it comes back.
        snapshot_every: mix
            .contains(&Nemesis::SnapshotKill)
            .then(|| ("50".to_string(), "10".to_string())),
    };
    eprintln!(
        "taskd-chaos: starting {} nodes ({:?}) in network namespaces",
        args.nodes, args.backend
    );
    let mut cluster = Cluster::start(&spec).await.map_err(|e| e.to_string())?;
    cluster
        .wait_ready(Duration::from_secs(60))
        .await
        .map_err(|e| {
            let hint = if args.break_mode.is_some() {
                " (--break needs a taskd built with --features taskd/chaos-break)"
            } else {
                ""
            };
            format!("{e}{hint}")
        })?;
    let key_count = 2 * args.duration.as_secs() as usize + 8;
    let keys = workload::create_keys(&cluster.clients, key_count, seed).await?;

    let start = Instant::now();
    let shared = Shared {
        clients: cluster.clients.clone(),
        ids: cluster.ids.clone(),
        recorder: Arc::new(Recorder::new(start)),
        keys: Arc::new(Mutex::new(KeyRing::new(keys))),
        stop: Arc::new(AtomicBool::new(false)),
        seed,
    };
    let mut workers = Vec::new();
    let mut process = 0;
    for _ in 0..2 * args.nodes {
        workers.push(tokio::spawn(workload::register_worker(
            shared.clone(),
            process,
        )));
        process += 1;
    }
    for _ in 0..args.nodes {
        workers.push(tokio::spawn(workload::set_worker(shared.clone(), process)));
        process += 1;
    }
    for node in 1..=args.nodes {
        workers.push(tokio::spawn(workload::stale_reader(
            shared.clone(),
            process,
            node,
        )));
        process += 1;
    }
    eprintln!(
        "taskd-chaos: running for {:?}, {} faults scheduled",
        args.duration,
        faults.len()
    );
    let mut events = nemesis::run(&mut cluster, &faults, start, start + args.duration).await;
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }

    eprintln!("taskd-chaos: healing and checking");
    let mut findings = Vec::new();
    let mut available_after_heal = true;
    for problem in nemesis::heal_all(&mut cluster).await {
        findings.push(format!("heal: {problem}"));
    }
    let now = start.elapsed().as_micros() as u64;
    events.push(nemesis::Event {
        what: "heal-all".into(),
        targets: Vec::new(),
        start_us: now,
        end_us: now,
        detail: "final heal".into(),
    });
    if let Err(e) = cluster.wait_ready(SETTLE).await {
        findings.push(format!("after healing: {e}"));
        available_after_heal = false;
    }
    // Not violations (those are about what clients saw), but taskd did not
    // do what it was asked: worth a line at the top of the report.
    for e in events.iter().filter(|e| e.what.starts_with("membership")) {
        if e.detail.contains("could not inject") || e.detail.contains("failed") {
            findings.push(format!(
                "{} at {:.1}s: {}",
                e.what,
                e.start_us as f64 / 1e6,
                e.detail
            ));
        }
    }
    let ops = shared.recorder.ops();
    let key_list = shared.keys.lock().unwrap_or_else(|e| e.into_inner()).keys();

    let set = match verify::final_set(&cluster, SETTLE).await {
        Ok(found) => verify::check_set(&ops, &found),
        Err(e) => {
            findings.push(format!("set: {e}"));
            available_after_heal = false;
            verify::SetVerdict::default()
        }
    };
    findings.extend(set.details.iter().take(20).map(|d| format!("set: {d}")));
    let (replicas_equal, applied_index) = match verify::compare_replicas(&cluster, SETTLE).await {
        Ok(applied) => (true, applied),
        Err(e) => {
            findings.push(format!("replicas: {e}"));
            (false, 0)
        }
    };
    let registers = verify::check_registers(&key_list, &ops, Duration::from_secs(60));
    for id in &registers.violations {
        findings.push(format!("register {id}: not linearizable"));
    }
    for id in &registers.unchecked {
        findings.push(format!(
            "register {id}: search did not finish (not counted)"
        ));
    }
    let stale = verify::check_stale(&key_list, &ops);
    findings.extend(stale.iter().take(20).map(|s| format!("stale: {s}")));

    let node_ids = cluster.ids.all();
    cluster.shutdown().await;
    drop(cluster);
    let count = |s| ops.iter().filter(|o| o.status == s).count();
    let summary = Summary {
        seed,
        ops: ops.len(),
        ok: count(Status::Ok),
        unknown: count(Status::Unknown),
        failed: count(Status::Fail),
        linearizable: registers.violations.is_empty(),
        lost: set.lost,
        duplicated: set.duplicated,
        phantom: set.phantom,
        replicas_equal,
        stale_ok: stale.is_empty(),
        unchecked_registers: registers.unchecked.len(),
        faults: events
            .iter()
            .filter(|e| e.what != "heal-all" && e.what != "exited")
            .count(),
        available_after_heal,
        nodes: args.nodes,
        node_ids,
        backend: format!("{:?}", args.backend).to_lowercase(),
        break_mode: args.break_mode.map(BreakMode::flag),
        applied_index,
    };
    let written = report::write_history(&out, &ops)
        .and_then(|_| report::write_report(&out, &summary, &ops, &events, &findings))
        .and_then(|_| report::write_timeline(&out, &summary, &ops, &events));
    if let Err(e) = written {
        eprintln!("taskd-chaos: writing the outputs to {}: {e}", out.display());
    }
    for f in findings.iter().take(10) {
        eprintln!("taskd-chaos: {f}");
    }
    eprintln!("taskd-chaos: report in {}", out.join("report.md").display());
    Ok(summary)
}

/// Scratch directories of dead runs (the pid in the name is gone).
fn remove_leftover_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(netns::NS_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) == 0 };
        if !alive && pid as u32 != std::process::id() {
            crate::cluster::remove_scratch(&entry.path());
        }
    }
}
