//! The state machine over real databases: entries that carry batches of
//! writes, applied the way openraft hands them over.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};

use super::StateMachine;
use crate::domain::{BatchResults, Command, CommandResult, Rejection, TaskPatch, WriteBatch};
use crate::raft::Entry;
use crate::store::testutil::{create, each_backend, new_task, refuse_poisoned_titles};
use crate::store::Store;

/// A snapshot directory of its own (a state machine clears scratch files
/// of its directory when it opens), under one directory per test process.
fn snapshot_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory"))
        .path()
        .join(format!("sm{n}"))
}

/// A fresh SQLite store in its own directory (kept alive by the `TempDir`).
async fn sqlite_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("taskd.db").display());
    let store = Store::connect(&url).await.expect("connect");
    (dir, store)
}

/// Streams `data` into a receiving state machine the way openraft's
/// chunked transport does, and installs it under `meta`.
async fn receive(
    sm: &mut StateMachine,
    meta: &crate::raft::SnapshotMeta,
    data: &[u8],
) -> Result<(), crate::raft::StorageError> {
    use tokio::io::AsyncWriteExt;
    let mut file = sm.begin_receiving_snapshot().await?;
    for chunk in data.chunks(1000) {
        file.write_all(chunk).await.unwrap();
    }
    file.shutdown().await.unwrap();
    sm.install_snapshot(meta, file).await
}

/// All bytes of a snapshot's data.
async fn bytes_of(snapshot: crate::raft::Snapshot) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut file = snapshot.snapshot;
    let mut data = Vec::new();
    file.read_to_end(&mut data).await.unwrap();
    data
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn batch(index: u64, writes: Vec<Command>) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(WriteBatch { writes }),
    }
}

fn retitle(id: &str, expected_version: u64, now: i64, title: &str) -> Command {
    Command::UpdateTask {
        id: id.into(),
        expected_version,
        now,
        patch: TaskPatch {
            title: Some(title.into()),
            ..TaskPatch::default()
        },
        request_id: None,
    }
}

fn task_id(result: &CommandResult) -> &str {
    match result {
        CommandResult::Task(task) => &task.id,
        other => panic!("expected a task, got {other:?}"),
    }
}

/// One entry's writes each get their own result, in order: accepted and
/// rejected writes mix in one batch, a request_id retried inside the batch
/// and in a later entry returns the first task, and a blank entry in
/// between gets an empty result list.
#[tokio::test]
async fn each_write_of_a_batch_keeps_its_own_result() {
    each_backend(async |store: Store| {
        let mut sm = StateMachine::new(store.clone(), snapshot_dir())
            .await
            .unwrap();
        let first = batch(
            1,
            vec![
                create("t1", Some("rid-1"), 100, new_task("one")),
                retitle("t1", 1, 101, "one, v2"),
                retitle("t1", 1, 102, "stale write"),
                create("t2", Some("rid-1"), 103, new_task("one")),
                retitle("missing", 0, 104, "nobody"),
                create("t3", None, 105, new_task("three")),
            ],
        );
        let blank = Entry {
            log_id: log_id(2),
            payload: EntryPayload::Blank,
        };
        let later = batch(3, vec![create("t4", Some("rid-1"), 200, new_task("one"))]);
        let results: Vec<BatchResults> = sm.apply(vec![first, blank, later]).await.unwrap();

        assert_eq!(results.len(), 3, "one result list per entry");
        let r = &results[0].results;
        assert_eq!(r.len(), 6);
        assert_eq!(task_id(&r[0]), "t1");
        assert!(matches!(&r[1], CommandResult::Task(t) if t.version == 2 && t.title == "one, v2"));
        assert_eq!(
            r[2],
            CommandResult::Rejected(Rejection::VersionMismatch {
                id: "t1".into(),
                expected: 1,
                current: 2
            })
        );
        assert!(matches!(&r[3], CommandResult::Task(t) if t.id == "t1" && t.version == 2));
        assert_eq!(
            r[4],
            CommandResult::Rejected(Rejection::NotFound {
                id: "missing".into()
            })
        );
        assert_eq!(task_id(&r[5]), "t3");
        assert!(results[1].results.is_empty(), "a blank entry has no writes");
        assert_eq!(task_id(&results[2].results[0]), "t1");

        // What the results say is what the tables hold.
        let dump = store.export().await.unwrap();
        let ids: Vec<&str> = dump.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["t1", "t3"]);
        assert_eq!(dump.tasks[0].title, "one, v2");
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(3)));
    })
    .await;
}

/// A batch applies all or nothing: when the database refuses one write
/// of an entry after earlier statements of its transaction ran (the labels
/// of the batch's tasks were already deleted), none of the entry's writes
/// is visible, the earlier task keeps its labels, `last_applied` does not
/// move.
#[tokio::test]
async fn a_batch_applies_atomically() {
    each_backend(async |store: Store| {
        let mut sm = StateMachine::new(store.clone(), snapshot_dir())
            .await
            .unwrap();
        let mut labelled = new_task("before");
        labelled.labels = vec!["keep".into()];
        sm.apply(vec![batch(1, vec![create("t0", None, 10, labelled)])])
            .await
            .unwrap();
        refuse_poisoned_titles(&store).await;
        let before = store.export().await.unwrap();

        let failing = [
            create("t1", None, 20, new_task("fine")),
            retitle("t0", 1, 21, "changed"),
            create("t2", None, 22, new_task("poison")),
        ];
        let entries: Vec<Option<&Command>> = failing.iter().map(Some).collect();
        let meta = crate::store::SmMeta {
            last_applied: Some(b"would-be-2".to_vec()),
            membership: None,
        };
        assert!(store.apply_batch(&entries, &meta).await.is_err());
        assert_eq!(
            store.export().await.unwrap(),
            before,
            "nothing of the batch is visible"
        );
        let t0 = store.get_task("t0").await.unwrap().unwrap();
        assert_eq!(
            (t0.title.as_str(), t0.labels.clone()),
            ("before", vec!["keep".to_string()])
        );
    })
    .await;
}

/// A snapshot built on one node and streamed into another leaves both with
/// the same tasks and request ids; the receiver's `last_applied` is the
/// snapshot's, its stored snapshot is the same file, and its log up to the
/// snapshot is purged in the same transaction.
#[tokio::test]
async fn a_built_snapshot_installs_elsewhere() {
    use openraft::RaftSnapshotBuilder;
    each_backend(async |store: Store| {
        let mut sm = StateMachine::new(store.clone(), snapshot_dir())
            .await
            .unwrap();
        let writes: Vec<Command> = (0..1_500)
            .map(|i| {
                create(
                    &format!("t{i:05}"),
                    Some(&format!("r{i}")),
                    i,
                    new_task("x"),
                )
            })
            .collect();
        sm.apply(vec![
            batch(1, writes[..700].to_vec()),
            batch(2, writes[700..].to_vec()),
        ])
        .await
        .unwrap();
        let built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let meta = built.meta.clone();
        assert_eq!(meta.last_log_id, Some(log_id(2)));
        let data = bytes_of(built).await;
        let current = sm.get_current_snapshot().await.unwrap().expect("stored");
        assert_eq!(current.meta, meta);
        assert_eq!(
            bytes_of(current).await,
            data,
            "the stored copy is the built file"
        );

        let (_dir, other) = sqlite_store().await;
        let rows: Vec<crate::store::LogRow> = (1..=3)
            .map(|index| crate::store::LogRow {
                index,
                term: 1,
                payload: vec![1],
            })
            .collect();
        other.append_log(&rows).await.unwrap();
        let mut receiver = StateMachine::new(other.clone(), snapshot_dir())
            .await
            .unwrap();
        receive(&mut receiver, &meta, &data).await.unwrap();
        let (mine, theirs) = (store.export().await.unwrap(), other.export().await.unwrap());
        assert_eq!(
            (theirs.tasks.len(), theirs.request_ids.len()),
            (1_500, 1_500)
        );
        assert_eq!(
            (&theirs.tasks, &theirs.request_ids),
            (&mine.tasks, &mine.request_ids)
        );
        assert_eq!(receiver.applied_state().await.unwrap().0, Some(log_id(2)));
        let left: Vec<u64> = other
            .read_log(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(left, vec![3], "the log the snapshot covers is purged");
        let stored = receiver
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(bytes_of(stored).await, data);
        other.close().await;
    })
    .await;
}

/// Rolling upgrade: a snapshot in the format before version 1 (one msgpack
/// `StateDump` blob, as the previous release built, stored and sent it)
/// installs, whether it arrives from an old leader or sits in this node's
/// own database from before the upgrade (then it goes out as it is and the
/// receiver converts it).
#[tokio::test]
async fn a_legacy_snapshot_installs() {
    let (_dir, store) = sqlite_store().await;
    let tasks: Vec<crate::domain::Task> = (0..30)
        .map(|i| crate::domain::Task {
            id: format!("t{i:03}"),
            title: format!("old {i}"),
            description: String::new(),
            status: crate::domain::TaskStatus::Todo,
            priority: crate::domain::TaskPriority::Unspecified,
            deadline: None,
            assignee: String::new(),
            labels: vec!["l".into()],
            create_time: i,
            update_time: i,
            version: 1,
        })
        .collect();
    let legacy = crate::store::StateDump {
        meta: Default::default(),
        tasks: tasks.clone(),
        request_ids: Vec::new(),
    };
    let blob = crate::raft::codec::encode(&legacy).unwrap();
    let meta = crate::raft::SnapshotMeta {
        last_log_id: Some(log_id(40)),
        last_membership: Default::default(),
        snapshot_id: "old-leader".into(),
    };
    let mut sm = StateMachine::new(store.clone(), snapshot_dir())
        .await
        .unwrap();
    receive(&mut sm, &meta, &blob).await.unwrap();
    assert_eq!(store.export().await.unwrap().tasks, tasks);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(40)));

    // Stored by the previous release: sent as is, converted by the receiver.
    let meta_bytes = crate::raft::codec::encode(&meta).unwrap();
    store
        .put_snapshot(&meta_bytes, &blob[..], |_| true)
        .await
        .unwrap();
    let current = sm.get_current_snapshot().await.unwrap().expect("stored");
    let data = bytes_of(current).await;
    assert_eq!(data, blob);
    let (_dir2, other) = sqlite_store().await;
    let mut receiver = StateMachine::new(other.clone(), snapshot_dir())
        .await
        .unwrap();
    receive(&mut receiver, &meta, &data).await.unwrap();
    assert_eq!(other.export().await.unwrap().tasks, tasks);
    store.close().await;
    other.close().await;
}

/// A received snapshot that is truncated or has a flipped bit is refused
/// with an error that says so, and the receiver keeps its old state and
/// `last_applied`.
#[tokio::test]
async fn a_damaged_received_snapshot_is_refused() {
    use openraft::RaftSnapshotBuilder;
    let (_dir, store) = sqlite_store().await;
    let mut sm = StateMachine::new(store.clone(), snapshot_dir())
        .await
        .unwrap();
    let writes: Vec<Command> = (0..200)
        .map(|i| create(&format!("t{i:03}"), None, i, new_task("x")))
        .collect();
    sm.apply(vec![batch(1, writes)]).await.unwrap();
    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut meta = built.meta.clone();
    meta.last_log_id = Some(log_id(9));
    let data = bytes_of(built).await;

    let (_dir2, other) = sqlite_store().await;
    let mut receiver = StateMachine::new(other.clone(), snapshot_dir())
        .await
        .unwrap();
    receiver
        .apply(vec![batch(
            1,
            vec![create("mine", None, 1, new_task("keep"))],
        )])
        .await
        .unwrap();
    let before = other.export().await.unwrap();
    let mut flipped = data.clone();
    flipped[data.len() / 3] ^= 0x04;
    for (what, bad) in [
        ("truncated", &data[..data.len() - 1]),
        ("bit-flipped", &flipped[..]),
    ] {
        let err = receive(&mut receiver, &meta, bad).await.expect_err(what);
        let text = format!("{err:?}");
        assert!(
            text.contains("snapshot")
                && (text.contains("truncated")
                    || text.contains("checksum")
                    || text.contains("corrupt")),
            "{what}: {text}"
        );
        assert_eq!(other.export().await.unwrap(), before, "{what}");
        assert_eq!(receiver.applied_state().await.unwrap().0, Some(log_id(1)));
    }
    store.close().await;
    other.close().await;
}
