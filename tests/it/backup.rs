//! `taskd backup` and `taskd restore`, as an operator runs them: the CLI
//! against a running cluster, then a new node seeded from the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use taskd::store::Backend;

use crate::process::{cluster_status, free_ports, spawn_node, wait_serving, TASKD};
use crate::support::{create_n, TestCluster};
use crate::writers::stored_tasks;

fn taskd(args: &[&str]) -> Output {
    Command::new(TASKD)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run taskd")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `taskd restore` of `file` into a fresh data directory under `dir`.
fn restore(file: &Path, data_dir: &Path) -> Output {
    taskd(&[
        "restore",
        "--in",
        &file.display().to_string(),
        "--data-dir",
        &data_dir.display().to_string(),
    ])
}

/// A backup taken through a follower (it relays the leader's) holds every
/// acknowledged task; restored into a new node that founds a one-node
/// cluster, it serves exactly those tasks, and takes writes. A truncated and
/// a bit-flipped copy are both refused, with a reason, before anything is
/// written: a later restore of the good file into the same place works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_restore_serves_exactly_the_backed_up_tasks() {
    let cluster = TestCluster::start(3, Backend::Sqlite).await;
    create_n(&cluster, 1, "backed up", 120).await;
    let follower = cluster.follower().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("taskd.backup");
    let out = taskd(&[
        "backup",
        "--endpoints",
        cluster.addr(follower),
        "--out",
        &file.display().to_string(),
    ]);
    assert!(out.status.success(), "backup: {}", stderr(&out));
    assert!(!dir.path().join("taskd.backup.partial").exists());
    let expected = stored_tasks(cluster.addr(1)).await;
    assert_eq!(expected.len(), 120);
    cluster.shutdown().await;

    let good = std::fs::read(&file).expect("read backup");
    let truncated = dir.path().join("truncated.backup");
    std::fs::write(&truncated, &good[..good.len() - 7]).expect("write");
    let flipped = dir.path().join("flipped.backup");
    let mut bytes = good.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&flipped, &bytes).expect("write");
    let data_dir = dir.path().join("node1");
    for bad in [&truncated, &flipped] {
        let out = restore(bad, &data_dir);
        assert!(!out.status.success(), "{} was restored", bad.display());
        let why = stderr(&out);
        assert!(why.contains("not a whole taskd backup"), "{why}");
        assert_eq!(why.trim().lines().count(), 1, "one line: {why}");
        assert!(
            !data_dir.join("taskd.db").exists(),
            "nothing written for {}",
            bad.display()
        );
    }

    let out = restore(&file, &data_dir);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let again = restore(&file, &data_dir);
    assert!(
        !again.status.success(),
        "a second restore into a used database"
    );
    assert!(
        stderr(&again).contains("already holds"),
        "{}",
        stderr(&again)
    );

    let members = BTreeMap::from([(1, format!("127.0.0.1:{}", free_ports(1)[0]))]);
    let _node = spawn_node(dir.path(), 1, &members);
    wait_serving(&members[&1]).await;
    assert_eq!(stored_tasks(&members[&1]).await, expected);
    let status = cluster_status(&members[&1]).await.expect("status");
    assert_eq!(status.members.len(), 1);
    crate::process::create_acknowledged(&members[&1], "after the restore").await;
    assert_eq!(stored_tasks(&members[&1]).await.len(), 121);
}
