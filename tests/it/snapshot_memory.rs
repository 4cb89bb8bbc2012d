//! The memory a snapshot costs: a state of many tasks is built into a
//! snapshot on one store and streamed into and installed on another, in
//! this process, and the peak resident memory of the process during build
//! + install is compared with the snapshot's size.
//!
//! Sized by `TASKD_SNAPSHOT_MEMORY_TASKS` (default 10000) tasks with
//! descriptions of `TASKD_SNAPSHOT_MEMORY_DESCRIPTION_BYTES` (default
//! 8192: a snapshot of about 80 MiB, large enough that holding it whole
//! could not pass for overhead); `TASKD_SNAPSHOT_MEMORY_BACKEND=mysql`
//! runs it on MySQL instead of SQLite. The numbers go to stderr
//! (`--no-capture` shows them), e.g. for 100k tasks of 1 KB:
//! `TASKD_SNAPSHOT_MEMORY_TASKS=100000 TASKD_SNAPSHOT_MEMORY_DESCRIPTION_BYTES=1000
//! cargo nextest run -p taskd --features taskd/failpoints,taskd/chaos-break
//! -E 'test(snapshot_memory)' --no-capture`.
//!
//! Measured, the growth is about 20 MiB whatever the size (SQLite page
//! caches of the new connections, one stored chunk, one import batch and
//! its statements, file buffers): the bound allows 32 MiB of it plus a
//! quarter of the snapshot.

use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, LogId, RaftSnapshotBuilder};
use sqlx::migrate::MigrateDatabase;
use taskd::domain::{Command, NewTask, TaskPriority, TaskStatus};
use taskd::raft::codec;
use taskd::raft::state_machine::StateMachine;
use taskd::store::{SmMeta, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{mysql_server_url, unique_name};

/// `(VmRSS, VmHWM)` of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak (VmHWM) to the current resident size.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM via /proc/self/clear_refs");
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

/// A store of the chosen backend; its URL, for dropping a MySQL database.
async fn open(dir: &std::path::Path, name: &str, mysql: bool) -> (Store, Option<String>) {
    let url = if mysql {
        format!(
            "{}/{}",
            mysql_server_url(),
            unique_name(&format!("taskd_mem_{name}"))
        )
    } else {
        format!("sqlite://{}", dir.join(format!("{name}.db")).display())
    };
    let store = Store::connect(&url).await.expect("connect");
    (store, mysql.then_some(url))
}

/// Fills `store` with `n` tasks with descriptions of `description`
/// bytes, each with a request id, in batches of 1000 (applied directly: no
/// Raft needed here).
async fn fill(store: &Store, n: usize, description: usize) -> LogId<u64> {
    let mut index = 0;
    for start in (0..n).step_by(1000) {
        index += 1;
        let commands: Vec<Command> = (start..n.min(start + 1000))
            .map(|i| Command::CreateTask {
                id: format!("t{i:08}"),
                request_id: Some(format!("r{i:08}")),
                now: i as i64,
                task: NewTask {
                    title: format!("task {i}"),
                    description: "x".repeat(description),
                    status: TaskStatus::Todo,
                    priority: TaskPriority::Unspecified,
                    deadline: None,
                    assignee: "someone".into(),
                    labels: vec![format!("l{}", i % 10)],
                },
            })
            .collect();
        let entries: Vec<Option<&Command>> = commands.iter().map(Some).collect();
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), index);
        let meta = SmMeta {
            last_applied: Some(codec::encode(&Some(log_id)).expect("encode")),
            membership: None,
        };
        store.apply_batch(&entries, &meta).await.expect("apply");
    }
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// Building a snapshot of (by default) 10000 8-KiB tasks, streaming it in
/// 1 MiB chunks into another store's state machine (as InstallSnapshot
/// does) and installing it raises this process's peak resident memory by
/// less than 32 MiB + a quarter of the snapshot's size: neither side holds
/// it whole. The receiver ends with the sender's tasks and request ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_memory_stays_bounded() {
    crate::support::init_tracing();
    let tasks = env_usize("TASKD_SNAPSHOT_MEMORY_TASKS", 10_000);
    let description = env_usize("TASKD_SNAPSHOT_MEMORY_DESCRIPTION_BYTES", 8192);
    let mysql = std::env::var("TASKD_SNAPSHOT_MEMORY_BACKEND").is_ok_and(|b| b == "mysql");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (sender, sender_url) = open(dir.path(), "sender", mysql).await;
    let (receiver, receiver_url) = open(dir.path(), "receiver", mysql).await;
    let fill_started = Instant::now();
    let last = fill(&sender, tasks, description).await;
    let filled = fill_started.elapsed();
    let mut source = StateMachine::new(sender.clone(), dir.path().join("s1"))
        .await
        .expect("state machine");
    let mut target = StateMachine::new(receiver.clone(), dir.path().join("s2"))
        .await
        .expect("state machine");
    // Warm both sides' connections and caches before the baseline.
    receiver.ping().await.expect("ping");
    sender.sm_meta().await.expect("sm_meta");

    reset_peak();
    let (base, _) = rss_kib();
    let started = Instant::now();
    let built = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    let build_time = started.elapsed();
    assert_eq!(built.meta.last_log_id, Some(last));
    let (_, peak_build) = rss_kib();

    // What the leader sends: the stored snapshot, read back into a file.
    let started = Instant::now();
    let mut current = source
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a stored snapshot");
    let mut incoming = target.begin_receiving_snapshot().await.expect("begin");
    let mut chunk = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = current.snapshot.read(&mut chunk).await.expect("read");
        if n == 0 {
            break;
        }
        bytes += n as u64;
        incoming.write_all(&chunk[..n]).await.expect("write");
    }
    incoming.shutdown().await.expect("flush");
    let transfer_time = started.elapsed();
    let started = Instant::now();
    target
        .install_snapshot(&current.meta, incoming)
        .await
        .expect("install");
    let install_time = started.elapsed();
    let (_, peak) = rss_kib();
    drop(chunk);

    let growth_kib = peak.saturating_sub(base);
    eprintln!(
        "snapshot of {tasks} tasks ({backend}): {bytes} bytes ({:.1} MiB); fill {filled:.1?}, \
         build {build_time:.1?}, transfer {transfer_time:.1?}, install {install_time:.1?}; \
         RSS before {base} KiB, peak during build {peak_build} KiB, peak {peak} KiB, \
         growth {growth_kib} KiB ({:.0}% of the snapshot)",
        bytes as f64 / (1 << 20) as f64,
        100.0 * (growth_kib * 1024) as f64 / bytes as f64,
        backend = if mysql { "MySQL" } else { "SQLite" },
    );
    let (mine, theirs) = (
        sender.export().await.unwrap(),
        receiver.export().await.unwrap(),
    );
    assert_eq!(theirs.tasks.len(), tasks);
    assert_eq!(
        (theirs.tasks, theirs.request_ids),
        (mine.tasks, mine.request_ids)
    );
    assert!(
        growth_kib * 1024 < (32 << 20) + bytes / 4,
        "build + install grew the peak RSS by {growth_kib} KiB for a snapshot of {bytes} bytes"
    );
    sender.close().await;
    receiver.close().await;
    for url in [sender_url, receiver_url].into_iter().flatten() {
        sqlx::MySql::drop_database(&url)
            .await
            .expect("drop database");
    }
}
