//! What a run prints: a summary for people, or one JSON object as the last
//! line of standard output (`--output json`).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{OutputFormat, Target, Workload};
use super::load::Measured;

pub use crate::proto::code_name;

/// How the run was set up, as the report repeats it.
pub struct Setup {
    pub target: Target,
    pub workload: Workload,
    /// Nodes started (`--nodes`) or endpoints given.
    pub nodes: usize,
    /// `sqlite` or `mysql` for a self-started cluster.
    pub database: Option<&'static str>,
    pub clients: usize,
    pub connections: usize,
    pub preload: Option<usize>,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// The cluster's Raft term before the warmup and after the window (taskd only).
    pub terms: Option<(u64, u64)>,
}

/// The result of a load workload; the field names are the JSON keys.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub target: &'static str,
    pub workload: &'static str,
    pub nodes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
    pub clients: usize,
    pub connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<usize>,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Successful calls completed inside the measured window.
    pub ops: u64,
    pub ops_per_s: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Failed calls inside the window, by gRPC code name.
    pub errors: BTreeMap<&'static str, u64>,
    pub server_cpu_s_per_1k_ops: Option<f64>,
    pub server_rss_mb: Option<f64>,
    pub client_cpu_s_per_1k_ops: Option<f64>,
    /// Raft terms that began from the warmup to the end of the window: 0
    /// means the leader never changed (taskd only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_terms_elapsed: Option<u64>,
}

/// Microseconds to milliseconds, kept to the microsecond.
fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn per_1k_ops(cpu_s: Option<f64>, ops: u64) -> Option<f64> {
    cpu_s
        .filter(|_| ops > 0)
        .map(|s| round(s * 1000.0 / ops as f64, 4))
}

impl LoadReport {
    pub fn new(setup: Setup, measured: &Measured) -> Self {
        let h: &Histogram<u64> = &measured.latency;
        let ops = h.len();
        let quantile = |q: f64| {
            if ops == 0 {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        Self {
            target: setup.target.name(),
            workload: setup.workload.name(),
            nodes: setup.nodes,
            database: setup.database,
            clients: setup.clients,
            connections: setup.connections,
            preload: setup.preload,
            warmup_s: setup.warmup_s,
            duration_s: setup.duration_s,
            ops,
            ops_per_s: round(ops as f64 / setup.duration_s, 1),
            mean_ms: if ops == 0 {
                0.0
            } else {
                round(h.mean() / 1000.0, 3)
            },
            p50_ms: quantile(0.50),
            p90_ms: quantile(0.90),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            max_ms: if ops == 0 { 0.0 } else { ms(h.max()) },
            errors: measured.errors.clone(),
            server_cpu_s_per_1k_ops: per_1k_ops(measured.server_cpu_s, ops),
            server_rss_mb: measured.server_rss_mb.map(|mb| round(mb, 1)),
            client_cpu_s_per_1k_ops: per_1k_ops(measured.client_cpu_s, ops),
            leader_terms_elapsed: setup.terms.map(|(start, end)| end.saturating_sub(start)),
        }
    }

    pub fn print(&self, format: OutputFormat) {
        match format {
            OutputFormat::Json => println!("{}", json_line(self)),
            OutputFormat::Text => println!("{}", self.text()),
        }
    }

    fn text(&self) -> String {
        let database = self.database.map(|d| format!(" ({d})")).unwrap_or_default();
        let mut out = format!(
            "{} {}: {} nodes{database}, {} clients over {} connections, {} s measured after {} s warmup\n",
            self.target, self.workload, self.nodes, self.clients, self.connections,
            self.duration_s, self.warmup_s,
        );
        out += &format!(
            "  throughput {:.1} ops/s ({} ok)\n",
            self.ops_per_s, self.ops
        );
        out += &format!(
            "  latency    p50 {} ms  p90 {} ms  p99 {} ms  p99.9 {} ms  max {} ms\n",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            let named: Vec<String> = self
                .errors
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            named.join(", ")
        };
        out += &format!("  errors     {errors}");
        if let (Some(cpu), Some(rss)) = (self.server_cpu_s_per_1k_ops, self.server_rss_mb) {
            out += &format!("\n  server     {cpu} CPU-s per 1k ops, max RSS {rss} MiB");
        }
        if let Some(cpu) = self.client_cpu_s_per_1k_ops {
            out += &format!("\n  client     {cpu} CPU-s per 1k ops");
        }
        if let Some(terms) = self.leader_terms_elapsed {
            out += &format!(
                "\n  raft       {terms} new terms during the run (0: one leader throughout)"
            );
        }
        out
    }
}

/// The result of `--workload failover`.
#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub target: &'static str,
    pub workload: &'static str,
    pub nodes: usize,
    pub database: &'static str,
    pub kills: usize,
    /// failover: kill -9 of the leader → first acknowledged CreateTask, one
    /// per kill; transfer / stop-leader: the longest wait between two
    /// acknowledged writes around each move.
    pub failover_ms: Vec<f64>,
    pub failover_median_ms: f64,
    pub failover_max_ms: f64,
    /// transfer / stop-leader: write tries that failed (each retried at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_tries: Option<usize>,
}

impl FailoverReport {
    pub fn new(nodes: usize, database: &'static str, failover_ms: Vec<f64>) -> Self {
        Self {
            target: Target::Taskd.name(),
            workload: Workload::Failover.name(),
            nodes,
            database,
            kills: failover_ms.len(),
            failover_median_ms: median(&failover_ms),
            failover_max_ms: failover_ms.iter().copied().fold(0.0, f64::max),
            failover_ms,
            failed_tries: None,
        }
    }

    /// The report of a planned move (`transfer`, `stop-leader`).
    pub fn for_workload(mut self, workload: Workload, failed_tries: usize) -> Self {
        self.workload = workload.name();
        self.failed_tries = Some(failed_tries);
        self
    }

    pub fn print(&self, format: OutputFormat) {
        match format {
            OutputFormat::Json => println!("{}", json_line(self)),
            OutputFormat::Text if self.failed_tries.is_some() => println!(
                "taskd {}: {} nodes ({}), {} leadership moves\n  \
                 longest wait between acknowledged writes: median {} ms, max {} ms\n  \
                 each: {:?} ms; failed write tries: {}",
                self.workload,
                self.nodes,
                self.database,
                self.kills,
                self.failover_median_ms,
                self.failover_max_ms,
                self.failover_ms,
                self.failed_tries.unwrap_or(0)
            ),
            OutputFormat::Text => println!(
                "taskd failover: {} nodes ({}), {} kills of the leader\n  \
                 kill -9 → first acknowledged write: median {} ms, max {} ms\n  each: {:?} ms",
                self.nodes,
                self.database,
                self.kills,
                self.failover_median_ms,
                self.failover_max_ms,
                self.failover_ms
            ),
        }
    }
}

/// The median; the mean of the middle two for an even count; 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One line of JSON, no newline inside.
fn json_line(report: &impl Serialize) -> String {
    serde_json::to_string(report).expect("a report serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::histogram;
    use tonic::Code;

    fn setup() -> Setup {
        Setup {
            target: Target::Taskd,
            workload: Workload::Get,
            nodes: 3,
            database: Some("sqlite"),
            clients: 4,
            connections: 3,
            preload: Some(100),
            warmup_s: 1.0,
            duration_s: 2.0,
            terms: Some((3, 3)),
        }
    }

    fn measured(latencies_us: impl IntoIterator<Item = u64>) -> Measured {
        let mut latency = histogram();
        for us in latencies_us {
            latency.record(us).unwrap();
        }
        Measured {
            latency,
            errors: BTreeMap::from([("UNAVAILABLE", 2)]),
            server_cpu_s: Some(1.5),
            server_rss_mb: Some(40.04),
            client_cpu_s: None,
        }
    }

    #[test]
    fn percentiles_in_milliseconds() {
        // 1..=1000 ms, one call each.
        let report = LoadReport::new(setup(), &measured((1..=1000).map(|ms| ms * 1000)));
        assert_eq!(report.ops, 1000);
        assert_eq!(report.ops_per_s, 500.0);
        // Three significant digits, and ranks rounded up: within 0.5 %.
        for (got, want) in [
            (report.p50_ms, 500.0),
            (report.p90_ms, 900.0),
            (report.p99_ms, 990.0),
            (report.p999_ms, 999.0),
            (report.max_ms, 1000.0),
        ] {
            assert!((got - want).abs() <= want * 0.005, "{got} vs {want}");
        }
        assert_eq!(report.server_cpu_s_per_1k_ops, Some(1.5));
        assert_eq!(report.server_rss_mb, Some(40.0));
    }

    #[test]
    fn json_has_the_contract_keys_on_one_line() {
        let report = LoadReport::new(setup(), &measured([250, 1250]));
        let line = json_line(&report);
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "target",
            "workload",
            "clients",
            "connections",
            "nodes",
            "duration_s",
            "ops_per_s",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "errors",
            "server_cpu_s_per_1k_ops",
            "server_rss_mb",
            "leader_terms_elapsed",
        ] {
            assert!(value.get(key).is_some(), "{key} missing in {line}");
        }
        assert_eq!(value["workload"], "get");
        assert_eq!(value["errors"]["UNAVAILABLE"], 2);
        assert_eq!(value["p50_ms"], 0.25);
    }

    #[test]
    fn an_empty_window_reports_zeros() {
        let report = LoadReport::new(setup(), &measured([]));
        assert_eq!((report.ops, report.p99_ms, report.max_ms), (0, 0.0, 0.0));
        assert_eq!(report.server_cpu_s_per_1k_ops, None);
    }

    #[test]
    fn failover_median_and_max() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        let report = FailoverReport::new(3, "sqlite", vec![5100.0, 4900.0, 5300.0]);
        assert_eq!(
            (report.failover_median_ms, report.failover_max_ms),
            (5100.0, 5300.0)
        );
        let value: serde_json::Value = serde_json::from_str(&json_line(&report)).unwrap();
        assert_eq!(value["failover_ms"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
    }
}
