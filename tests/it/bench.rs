//! `taskd bench` as a user runs it: the real binary starts its own 3-node
//! cluster of `taskd serve` processes, drives it, and prints one JSON object
//! as the last line of standard output. Timings are reported, never asserted.

use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

const TASKD: &str = env!("CARGO_BIN_EXE_taskd");

/// How long one bench run may take before the test fails.
const RUN_DEADLINE: Duration = Duration::from_secs(90);

/// Runs `taskd bench ARGS`, waits for it with a deadline, and returns the
/// JSON object of its last stdout line. Panics with its stderr on failure.
async fn bench_json(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut command = Command::new(TASKD);
    command
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("stdout file"))
        .stderr(File::create(&stderr_path).expect("stderr file"))
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TASKD_") {
            command.env_remove(key);
        }
    }
    // Dropped on a timeout: SIGKILL; its children follow through their
    // parent-death signal.
    command.kill_on_drop(true);
    let mut child = command.spawn().expect("start taskd bench");
    let Ok(status) = tokio::time::timeout(RUN_DEADLINE, child.wait()).await else {
        panic!(
            "taskd bench {args:?} still running after {RUN_DEADLINE:?}; stderr:\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    };
    let status = status.expect("wait for taskd bench");
    let stdout = std::fs::read_to_string(&stdout_path).expect("read stdout");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "taskd bench {args:?}: {status}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("last stdout line {last:?} is not JSON ({e}); stderr:\n{stderr}")
    })
}

/// The report keys scripts rely on, with a successful, error-free run.
fn assert_clean_report(report: &serde_json::Value, workload: &str) {
    for key in [
        "target",
        "workload",
        "nodes",
        "clients",
        "connections",
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
    ] {
        assert!(report.get(key).is_some(), "{key} missing in {report}");
    }
    assert_eq!(report["workload"], workload);
    assert_eq!(report["clients"], 4);
    assert_eq!(report["nodes"], 3);
    assert!(report["ops_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["p99_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert!(report["server_rss_mb"].as_f64().unwrap() > 0.0, "{report}");
}

/// A short run of `workload` on a self-started 3-node cluster, 4 callers.
async fn short_run(workload: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--nodes",
        "3",
        "--workload",
        workload,
        "--clients",
        "4",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    bench_json(&args).await
}

/// `--nodes 3 --workload create` starts a cluster, creates tasks from 4
/// callers, and reports throughput, percentiles and server usage as JSON.
#[tokio::test]
async fn bench_create_on_a_self_started_cluster_reports_json() {
    let report = short_run("create", &[]).await;
    assert_clean_report(&report, "create");
    assert_eq!(report["database"], "sqlite");
}

/// `--workload get` preloads tasks first and reads only ids that exist:
/// no NOT_FOUND (or any other) error.
#[tokio::test]
async fn bench_get_reads_preloaded_tasks_without_errors() {
    let report = short_run("get", &["--preload", "50"]).await;
    assert_clean_report(&report, "get");
    assert_eq!(report["preload"], 50);
}
