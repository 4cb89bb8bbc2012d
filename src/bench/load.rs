//! The closed loop: N callers, each with exactly one request in flight, for
//! a warmup and then a measured window. Only calls that complete inside the
//! window count; a call still in flight when the window ends is dropped. A
//! progress line goes to standard error every second.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use tokio::time::{interval_at, sleep_until, Instant};

use super::args::Workload;
#[cfg(feature = "etcd")]
use super::etcd_target::EtcdCaller;
use super::procstat;
use super::taskd_target::TaskdCaller;

/// How many preload writes are in flight at once.
const PRELOAD_CONCURRENCY: usize = 64;

/// Labels of preloaded tasks: few enough that a filtered first page of 100
/// is full once the preload has 100 tasks per label.
pub const LABELS: usize = 10;

/// Pads a task (or an etcd value) to about 200 bytes.
pub const PADDING: &str =
    "A benchmark task: this description pads the task to about two hundred bytes, \
     like a short real one with a sentence or two of detail in it, nothing more.";

/// The label of the `i`-th preloaded (or created) task.
pub fn label(i: u64) -> String {
    format!("bench-{}", i % LABELS as u64)
}

/// A tag unique to this run, so created titles and keys never repeat across runs.
pub fn run_tag() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// One call of a workload, as each target translates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Get,
    GetStale,
    List,
    Update,
}

impl Workload {
    /// The next call: fixed, or drawn for `mixed` (50 % get, 30 % create, 20 % update).
    pub fn pick(self, rng: &mut fastrand::Rng) -> Op {
        match self {
            Workload::Create => Op::Create,
            Workload::Get => Op::Get,
            Workload::GetStale => Op::GetStale,
            Workload::List => Op::List,
            Workload::Update => Op::Update,
            Workload::Mixed => match rng.u32(0..100) {
                0..50 => Op::Get,
                50..80 => Op::Create,
                _ => Op::Update,
            },
            Workload::Failover | Workload::Transfer | Workload::StopLeader => {
                unreachable!("{} is not a load workload", self.name())
            }
        }
    }
}

/// One caller's handle on the system under test. Built once per client and
/// moved once, so the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Caller {
    Taskd(TaskdCaller),
    #[cfg(feature = "etcd")]
    Etcd(EtcdCaller),
}

impl Caller {
    /// Makes one call; an error is named by its gRPC code (`UNAVAILABLE`, …).
    async fn call(&mut self, op: Op, rng: &mut fastrand::Rng) -> Result<(), &'static str> {
        match self {
            Caller::Taskd(caller) => caller.call(op, rng).await,
            #[cfg(feature = "etcd")]
            Caller::Etcd(caller) => caller.call(op, rng).await,
        }
    }
}

pub struct LoadPlan {
    pub workload: Workload,
    pub warmup: Duration,
    pub duration: Duration,
    /// Processes whose CPU and memory count as the server's.
    pub server_pids: Vec<u32>,
}

/// What the measured window saw.
pub struct Measured {
    /// Latency of successful calls, in microseconds.
    pub latency: Histogram<u64>,
    /// Failed calls by gRPC code name.
    pub errors: BTreeMap<&'static str, u64>,
    /// CPU seconds the server processes used in the window.
    pub server_cpu_s: Option<f64>,
    /// The largest resident set of the server processes at the end, in MiB.
    pub server_rss_mb: Option<f64>,
    /// CPU seconds this process (the load generator) used in the window.
    pub client_cpu_s: Option<f64>,
}

/// A fresh latency histogram: 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Counters for the progress line, over all calls including the warmup.
#[derive(Default)]
struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
    latency_us: AtomicU64,
}

/// What one caller saw inside the window.
struct Tally {
    latency: Histogram<u64>,
    errors: BTreeMap<&'static str, u64>,
}

/// Runs `callers` for the plan's warmup and window.
pub async fn run(callers: Vec<Caller>, plan: &LoadPlan) -> Measured {
    let begin = Instant::now();
    let start = begin + plan.warmup;
    let end = start + plan.duration;
    let live = Arc::new(Live::default());
    let mut tasks = tokio::task::JoinSet::new();
    for caller in callers {
        let live = live.clone();
        let workload = plan.workload;
        let seed = fastrand::u64(..);
        tasks.spawn(call_in_a_loop(caller, workload, seed, start, end, live));
    }

    let mut ticker = interval_at(begin + Duration::from_secs(1), Duration::from_secs(1));
    let mut at_start = None;
    let mut last = (0, 0);
    loop {
        tokio::select! {
            biased;
            () = sleep_until(start), if at_start.is_none() => {
                at_start = Some(cpu_sample(&plan.server_pids));
            }
            () = sleep_until(end) => break,
            now = ticker.tick() => {
                last = progress(&live, last, now.duration_since(begin), now < start);
            }
        }
    }
    let at_end = cpu_sample(&plan.server_pids);
    let server_rss_mb = max_rss_mb(&plan.server_pids);

    let mut latency = histogram();
    let mut errors = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.expect("a caller panicked");
        latency.add(&tally.latency).expect("same histogram bounds");
        for (code, n) in tally.errors {
            *errors.entry(code).or_insert(0) += n;
        }
    }
    let (start_server, start_client) = at_start.unwrap_or((None, None));
    let (end_server, end_client) = at_end;
    Measured {
        latency,
        errors,
        server_cpu_s: start_server.zip(end_server).map(|(a, b)| b - a),
        server_rss_mb,
        client_cpu_s: start_client.zip(end_client).map(|(a, b)| b - a),
    }
}

async fn call_in_a_loop(
    mut caller: Caller,
    workload: Workload,
    seed: u64,
    start: Instant,
    end: Instant,
    live: Arc<Live>,
) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally {
        latency: histogram(),
        errors: BTreeMap::new(),
    };
    loop {
        let op = workload.pick(&mut rng);
        let sent = Instant::now();
        let outcome = tokio::select! {
            outcome = caller.call(op, &mut rng) => outcome,
            () = sleep_until(end) => break,
        };
        let done = Instant::now();
        let micros = u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
        let counter = if outcome.is_ok() {
            &live.ok
        } else {
            &live.errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        live.latency_us.fetch_add(micros, Ordering::Relaxed);
        if done < start || done > end {
            continue;
        }
        match outcome {
            Ok(()) => tally.latency.saturating_record(micros.max(1)),
            Err(code) => *tally.errors.entry(code).or_insert(0) += 1,
        }
    }
    tally
}

/// Prints one progress line; returns the counters it was computed from.
fn progress(
    live: &Live,
    (ok_before, lat_before): (u64, u64),
    at: Duration,
    warmup: bool,
) -> (u64, u64) {
    let ok = live.ok.load(Ordering::Relaxed);
    let errors = live.errors.load(Ordering::Relaxed);
    let latency_us = live.latency_us.load(Ordering::Relaxed);
    let calls = ok - ok_before;
    let mean_ms = if calls == 0 {
        0.0
    } else {
        (latency_us - lat_before) as f64 / calls as f64 / 1000.0
    };
    eprintln!(
        "bench {:>4.0}s {:<7} {calls:>8} ok/s  mean {mean_ms:>8.2} ms  errors so far {errors}",
        at.as_secs_f64(),
        if warmup { "warmup" } else { "measure" },
    );
    (ok, latency_us)
}

/// (server CPU seconds, this process's CPU seconds); `None` where unreadable.
fn cpu_sample(server_pids: &[u32]) -> (Option<f64>, Option<f64>) {
    let server = if server_pids.is_empty() {
        None
    } else {
        procstat::total_cpu_seconds(server_pids)
            .map_err(|e| eprintln!("bench: server CPU not measured: {e}"))
            .ok()
    };
    let client = procstat::cpu_seconds(std::process::id()).ok();
    (server, client)
}

fn max_rss_mb(server_pids: &[u32]) -> Option<f64> {
    if server_pids.is_empty() {
        return None;
    }
    procstat::max_rss_mb(server_pids)
        .map_err(|e| eprintln!("bench: server memory not measured: {e}"))
        .ok()
}

/// Runs `make(i)` for i in 0..n with [`PRELOAD_CONCURRENCY`] in flight; the
/// results keep the order of `i`.
pub async fn preload<T, F, Fut>(what: &str, n: usize, make: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    if n == 0 {
        return Ok(Vec::new());
    }
    eprintln!("bench: preloading {n} {what}");
    let began = Instant::now();
    let made: Vec<T> = futures::stream::iter(0..n)
        .map(make)
        .buffered(PRELOAD_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!(
        "bench: preloaded {n} {what} in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_draws_the_documented_shares() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = BTreeMap::new();
        for _ in 0..10_000 {
            *counts
                .entry(format!("{:?}", Workload::Mixed.pick(&mut rng)))
                .or_insert(0) += 1;
        }
        let share = |op: &str| counts.get(op).copied().unwrap_or(0) as f64 / 10_000.0;
        assert!((share("Get") - 0.5).abs() < 0.03, "{counts:?}");
        assert!((share("Create") - 0.3).abs() < 0.03, "{counts:?}");
        assert!((share("Update") - 0.2).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn a_task_is_about_two_hundred_bytes() {
        let size = "bench 0123456789abcdef 12-34567".len() + PADDING.len() + label(3).len();
        assert!((180..=230).contains(&size), "{size}");
    }
}
