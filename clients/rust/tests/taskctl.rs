//! Golden tests of taskctl: the built binary runs against a live in-process
//! cluster, and its exit code, stdout and stderr — with ids, times and ports
//! replaced by placeholders — must equal `tests/golden/<case>.txt`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p taskd-client --test taskctl` rewrites the
//! golden files from the current output (review the diff before committing).
//! Never under scripts/test.sh or CI (`TASKD_TEST_COMMAND` / `CI` set): there
//! the golden files are only compared, and `UPDATE_GOLDEN` fails the run.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{closed_port, start_cluster, Endpoints};
use regex::Regex;

/// One run of taskctl, normalized.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Replaces what differs from run to run: task ids (numbered in order of first
/// appearance, so the same task keeps its placeholder), create/update times,
/// ports and retry timings.
#[derive(Default)]
struct Normalizer {
    ids: HashMap<String, String>,
}

impl Normalizer {
    fn normalize(&mut self, text: &str) -> String {
        self.replace(text, true)
    }

    /// A command line: ids are not in table columns, so not padded.
    fn normalize_args(&mut self, text: &str) -> String {
        self.replace(text, false)
    }

    fn replace(&mut self, text: &str, pad_ids: bool) -> String {
        let uuid =
            Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\x22?)")
                .unwrap();
        let text = uuid.replace_all(text, |caps: &regex::Captures| {
            let id = &caps[0][..36];
            let next = self.ids.len() + 1;
            let placeholder = self
                .ids
                .entry(id.to_string())
                .or_insert_with(|| format!("<id-{next}>"))
                .clone();
            if pad_ids && caps[1].is_empty() {
                // Outside JSON strings ids sit in table columns: keep the width.
                format!("{placeholder:<36}")
            } else {
                format!("{placeholder}{}", &caps[1])
            }
        });
        let times = Regex::new(r#""(createTime|updateTime)": "[^"]+""#).unwrap();
        let text = times.replace_all(&text, r#""$1": "<time>""#);
        let ports = Regex::new(r"127\.0\.0\.1:\d+").unwrap();
        let text = ports.replace_all(&text, "127.0.0.1:<port>");
        let timing = Regex::new(r"after \d+ attempts in [0-9.]+\w+").unwrap();
        let text = timing.replace_all(&text, "after <n> attempts in <elapsed>");
        // Table rows end where their last cell ends.
        text.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            + if text.ends_with('\n') { "\n" } else { "" }
    }
}

async fn taskctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskctl"))
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .env_remove("TASKD_ENDPOINTS")
        .env_remove("TASKD_TIMEOUT")
        .output()
        .await
        .expect("taskctl runs");
    (
        output.status.code().expect("taskctl exited, not killed"),
        String::from_utf8(output.stdout).expect("utf-8 stdout"),
        String::from_utf8(output.stderr).expect("utf-8 stderr"),
    )
}

/// Runs `taskctl ARGS` and compares the normalized result with `golden/<case>.txt`.
async fn check(normalizer: &mut Normalizer, endpoints: &str, case: &str, args: &[&str]) -> Run {
    let (code, stdout, stderr) = taskctl(endpoints, args).await;
    let shown_args = args
        .iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("{a:?}")
            } else {
                a.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let run = Run {
        code,
        stdout: normalizer.normalize(&stdout),
        stderr: normalizer.normalize(&stderr),
    };
    let actual = format!(
        "$ taskctl {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        normalizer.normalize_args(&shown_args),
        run.code,
        run.stdout,
        run.stderr
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{case}.txt"));
    if rewrite_golden(
        std::env::var_os("UPDATE_GOLDEN").is_some(),
        under_test_command(),
    ) {
        std::fs::write(&path, &actual).expect("write golden file");
    } else {
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with UPDATE_GOLDEN=1 to create it. Output was:\n{actual}",
                path.display()
            )
        });
        assert_eq!(
            actual,
            expected,
            "taskctl output differs from {} (UPDATE_GOLDEN=1 rewrites it)",
            path.display()
        );
    }
    run
}

/// Whether this run is the project's test command (scripts/test.sh exports
/// `TASKD_TEST_COMMAND`) or CI, where golden files are only ever compared.
fn under_test_command() -> bool {
    std::env::var_os("TASKD_TEST_COMMAND").is_some() || std::env::var_os("CI").is_some()
}

/// Whether to rewrite the golden files instead of comparing with them: only
/// when asked (`UPDATE_GOLDEN`), and never under the test command or CI, where
/// a rewrite would turn every output difference into a pass.
fn rewrite_golden(asked: bool, under_test_command: bool) -> bool {
    assert!(
        !(asked && under_test_command),
        "UPDATE_GOLDEN is not honoured under the test command or CI: golden files are \
         compared there, never rewritten; run `UPDATE_GOLDEN=1 cargo test -p taskd-client \
         --test taskctl` by hand and review the diff"
    );
    asked
}

/// UPDATE_GOLDEN rewrites only outside the test command; inside it, it fails
/// the run instead of passing it.
#[test]
fn update_golden_is_refused_under_the_test_command() {
    assert!(rewrite_golden(true, false));
    assert!(!rewrite_golden(false, false));
    assert!(!rewrite_golden(false, true));
    let refused = std::panic::catch_unwind(|| rewrite_golden(true, true));
    assert!(
        refused.is_err(),
        "UPDATE_GOLDEN under the test command fails"
    );
}

fn id_from_json(stdout: &str) -> String {
    let task: serde_json::Value = serde_json::from_str(stdout).expect("a JSON task");
    task["id"].as_str().expect("an id").to_string()
}

/// create, get, update, list and delete print tables and proto3 JSON as the
/// goldens show, and exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_output() {
    let cluster = start_cluster().await;
    let endpoints = cluster.endpoints_flag();
    let mut n = Normalizer::default();

    let (code, stdout, _) = taskctl(
        &endpoints,
        &[
            "create",
            "--title",
            "Write docs",
            "--description",
            "How to run taskctl",
            "--status",
            "in-progress",
            "--priority",
            "high",
            "--deadline",
            "2030-01-02T03:04:05Z",
            "--assignee",
            "ann",
            "--label",
            "docs",
            "--label",
            "cli",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let first = id_from_json(&stdout);
    n.normalize(&first); // <id-1>

    check(&mut n, &endpoints, "get_table", &["get", &first]).await;
    check(
        &mut n,
        &endpoints,
        "get_json",
        &["get", &first, "--output", "json"],
    )
    .await;
    let created = check(
        &mut n,
        &endpoints,
        "create_table",
        &["create", "--title", "Plain task"],
    )
    .await;
    assert_eq!(created.code, 0);
    check(
        &mut n,
        &endpoints,
        "create_json",
        &[
            "create",
            "--title",
            "Due soon",
            "--deadline",
            "2029-12-31T23:59:59Z",
            "--priority",
            "urgent",
            "-o",
            "json",
        ],
    )
    .await;
    check(
        &mut n,
        &endpoints,
        "update_json",
        &[
            "update",
            &first,
            "--expected-version",
            "1",
            "--title",
            "Write more docs",
            "--status",
            "done",
            "--clear-labels",
            "-o",
            "json",
        ],
    )
    .await;
    check(
        &mut n,
        &endpoints,
        "update_table",
        &["update", &first, "--priority", "low", "--assignee", ""],
    )
    .await;
    check(&mut n, &endpoints, "list_table", &["list"]).await;
    check(
        &mut n,
        &endpoints,
        "list_json",
        &["list", "--status", "done", "-o", "json"],
    )
    .await;
    check(
        &mut n,
        &endpoints,
        "list_filtered_table",
        &[
            "list",
            "--due-before",
            "2030-01-01T00:00:00Z",
            "--order",
            "deadline",
            "--limit",
            "1",
        ],
    )
    .await;
    check(
        &mut n,
        &endpoints,
        "delete_table",
        &["delete", &first, "--expected-version", "3"],
    )
    .await;
    let second = n
        .ids
        .iter()
        .find(|(_, p)| *p == "<id-2>")
        .map(|(id, _)| id.clone());
    let second = second.expect("the second task was printed");
    check(
        &mut n,
        &endpoints,
        "delete_json",
        &["delete", &second, "-o", "json"],
    )
    .await;
    check(
        &mut n,
        &endpoints,
        "list_after_delete_json",
        &["list", "--label", "none-has-it", "-o", "json"],
    )
    .await;
    cluster.shutdown().await;
}

/// Failures print one line on stderr and exit with their class's code:
/// 3 not found, 4 invalid argument (naming the field), 5 conflict, 2 usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn error_lines_and_exit_codes() {
    let cluster = start_cluster().await;
    let endpoints = cluster.endpoints_flag();
    let mut n = Normalizer::default();

    let run = check(&mut n, &endpoints, "not_found", &["get", "no-such-task"]).await;
    assert_eq!(run.code, 3);
    let run = check(
        &mut n,
        &endpoints,
        "invalid_argument",
        &["create", "--title", " ", "--label", "two words"],
    )
    .await;
    assert_eq!(run.code, 4);

    let (_, stdout, _) = taskctl(&endpoints, &["create", "--title", "v1", "-o", "json"]).await;
    let id = id_from_json(&stdout);
    let run = check(
        &mut n,
        &endpoints,
        "conflict",
        &["update", &id, "--expected-version", "7", "--title", "v2"],
    )
    .await;
    assert_eq!(run.code, 5);
    let run = check(
        &mut n,
        &endpoints,
        "usage_update_without_fields",
        &["update", &id],
    )
    .await;
    assert_eq!(run.code, 2);
    let run = check(
        &mut n,
        &endpoints,
        "usage_bad_deadline",
        &["create", "--title", "t", "--deadline", "friday"],
    )
    .await;
    assert_eq!(run.code, 2);
    cluster.shutdown().await;
}

/// With no node reachable taskctl gives up within --timeout: one line, exit 6.
#[tokio::test]
async fn unavailable_exit_code() {
    let endpoints = format!("{},{}", closed_port().await, closed_port().await);
    let mut n = Normalizer::default();
    let run = check(
        &mut n,
        &endpoints,
        "unavailable",
        &["--timeout", "1s", "get", "some-id"],
    )
    .await;
    assert_eq!(run.code, 6);
    assert_eq!(run.stderr.lines().count(), 1);
}
