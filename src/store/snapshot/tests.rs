use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::Command;

use super::super::snapshot_file::{self, legacy};
use super::super::testutil::{apply, create, each_backend, new_task};
use super::super::{ImportOptions, ListOrder, ListQuery, SmMeta, StateDump, Store};

/// `dump` as a snapshot file (current format), in memory.
async fn snapshot_of(dump: &StateDump) -> Vec<u8> {
    legacy::write_dump(dump, Vec::new()).await.expect("write").0
}

/// Imports `dump` through a snapshot file, stored under `snapshot_meta`.
async fn import_dump(
    store: &Store,
    dump: &StateDump,
    snapshot_meta: &[u8],
    purge: Option<(u64, &[u8])>,
) {
    let mut file = std::io::Cursor::new(snapshot_of(dump).await);
    let options = ImportOptions {
        meta: None,
        snapshot_meta,
        purge,
    };
    store
        .import_snapshot(&mut file, options)
        .await
        .expect("import");
}

/// The stored snapshot's meta and the state its data holds.
async fn stored_snapshot(store: &Store) -> Option<(Vec<u8>, StateDump)> {
    let (meta, data) = store.get_snapshot().await.unwrap()?;
    Some((meta, dump_of(&data).await))
}

/// The state a snapshot file holds, read back record by record.
async fn dump_of(data: &[u8]) -> StateDump {
    let mut reader = snapshot_file::SnapshotReader::open(data)
        .await
        .expect("open");
    let mut dump = StateDump {
        meta: reader.meta().clone(),
        ..StateDump::default()
    };
    while let Some(record) = reader.next().await.expect("record") {
        match record {
            snapshot_file::Record::Task(t) => dump.tasks.push(t),
            snapshot_file::Record::RequestId(r) => dump.request_ids.push(r),
        }
    }
    dump
}

fn labelled(id: &str, now: i64, labels: &[&str]) -> Command {
    let mut task = new_task(id);
    task.labels = labels.iter().map(|l| l.to_string()).collect();
    create(id, Some(&format!("req-{id}")), now, task)
}

fn by_label(label: &str) -> ListQuery {
    ListQuery {
        status: None,
        assignee: None,
        label: Some(label.into()),
        deadline_before: None,
        deadline_after: None,
        order: ListOrder::CreateTime,
        after: None,
        limit: 100,
    }
}

/// A snapshot written then imported restores exactly the state it was
/// written from (tasks, request ids, meta, and the label index),
/// discarding everything written between; the imported file becomes the
/// stored snapshot. More tasks than a keyset page and an import batch, so
/// paging and batching are crossed.
#[tokio::test]
async fn write_import_roundtrip() {
    each_backend(async |store: Store| {
        assert_eq!(store.export().await.unwrap(), StateDump::default());
        apply(
            &store,
            &[labelled("t1", 10, &["a"]), labelled("t2", 11, &["a", "b"])],
        )
        .await;
        let many: Vec<Command> = (0..2_100)
            .map(|i| labelled(&format!("m{i:05}"), 20 + i, &["m"]))
            .collect();
        apply(&store, &many).await;
        let dump = store.export().await.unwrap();
        assert_eq!(dump.tasks.len(), 2_102);
        assert_eq!(dump.request_ids.len(), 2_102);
        let (file, summary) = store.write_snapshot(Vec::new()).await.unwrap();
        assert_eq!((summary.tasks, summary.request_ids), (2_102, 2_102));
        assert_eq!(summary.bytes, file.len() as u64);
        assert_eq!(dump_of(&file).await, dump, "the file holds the export");

        apply(&store, &[labelled("t3", 12, &["a"])]).await;
        let meta_only = SmMeta {
            last_applied: Some(b"x".to_vec()),
            membership: Some(b"m".to_vec()),
        };
        store.apply_batch(&[None], &meta_only).await.unwrap();

        let options = ImportOptions {
            meta: None,
            snapshot_meta: b"snap-meta",
            purge: None,
        };
        store
            .import_snapshot(&mut std::io::Cursor::new(file.clone()), options)
            .await
            .unwrap();
        assert_eq!(store.export().await.unwrap(), dump);
        assert_eq!(store.sm_meta().await.unwrap(), dump.meta);
        assert_eq!(
            store.get_snapshot().await.unwrap(),
            Some((b"snap-meta".to_vec(), file))
        );
        let ids: Vec<String> = store
            .list_tasks(&by_label("a"))
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec!["t1", "t2"]);
        // The imported request ids still dedupe.
        let retry = apply(&store, &[labelled("t9", 13, &[])]).await;
        assert_eq!(retry.len(), 1);
        let mut same = new_task("t1");
        same.labels = vec!["a".into()];
        let again = apply(&store, &[create("t10", Some("req-t1"), 14, same)]).await;
        assert!(matches!(&again[0], crate::domain::CommandResult::Task(t) if t.id == "t1"));

        import_dump(&store, &StateDump::default(), b"m", None).await;
        assert_eq!(store.export().await.unwrap(), StateDump::default());
        assert!(store.list_tasks(&by_label("a")).await.unwrap().is_empty());
    })
    .await;
}

/// An export taken while batches commit sees whole batches only: the task
/// count always matches the `last_applied` written with them. The exports
/// provably overlap writes: the test goes on until three exports each saw a
/// batch commit (its `apply_batch` return) between the export's start and end.
#[tokio::test]
async fn export_is_consistent_under_writes() {
    each_backend(async |store: Store| {
        let committed = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, committed, stop) = (store.clone(), committed.clone(), stop.clone());
            tokio::spawn(async move {
                let mut batch = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    batch += 1;
                    let commands: Vec<Command> = (0..5)
                        .map(|i| {
                            create(
                                &format!("t{batch:05}-{i}"),
                                None,
                                batch.into(),
                                new_task("x"),
                            )
                        })
                        .collect();
                    let entries: Vec<Option<&Command>> = commands.iter().map(Some).collect();
                    let meta = SmMeta {
                        last_applied: Some(batch.to_be_bytes().to_vec()),
                        membership: None,
                    };
                    store.apply_batch(&entries, &meta).await.unwrap();
                    committed.store(batch, Ordering::SeqCst);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut overlapping = 0;
        while overlapping < 3 {
            assert!(
                Instant::now() < deadline,
                "no three exports overlapped a commit in 30 s ({overlapping} did)"
            );
            let before = committed.load(Ordering::SeqCst);
            let dump = store.export().await.unwrap();
            let after = committed.load(Ordering::SeqCst);
            let batches = match dump.meta.last_applied {
                Some(bytes) => u32::from_be_bytes(bytes.as_slice().try_into().unwrap()),
                None => 0,
            };
            assert_eq!(dump.tasks.len(), batches as usize * 5);
            assert!(
                batches >= before,
                "the export saw every batch committed before it"
            );
            if after > before {
                overlapping += 1;
            }
        }
        stop.store(true, Ordering::SeqCst);
        writer.await.unwrap();
        let total = committed.load(Ordering::SeqCst) as usize;
        assert_eq!(store.export().await.unwrap().tasks.len(), total * 5);
    })
    .await;
}

/// Issue 7.2: a snapshot replaces the stored one only if it is newer, so one
/// built from older state (say, concurrently with an install) never
/// overwrites a newer one, installed or built. Metas here are numbers.
#[tokio::test]
async fn an_older_snapshot_never_replaces_a_newer_one() {
    fn older_than(meta: &'static [u8]) -> impl Fn(&[u8]) -> bool {
        let number = |m: &[u8]| String::from_utf8_lossy(m).parse::<u64>().expect("number");
        move |stored| number(stored) < number(meta)
    }
    each_backend(async |store: Store| {
        assert!(store
            .put_snapshot(b"7", &b"data 7"[..], older_than(b"7"))
            .await
            .unwrap());
        assert!(!store
            .put_snapshot(b"5", &b"data 5"[..], older_than(b"5"))
            .await
            .unwrap());
        assert_eq!(
            store.get_snapshot().await.unwrap(),
            Some((b"7".to_vec(), b"data 7".to_vec()))
        );
        let installed = StateDump {
            meta: SmMeta {
                last_applied: Some(b"10".to_vec()),
                membership: None,
            },
            ..StateDump::default()
        };
        import_dump(&store, &installed, b"10", None).await;
        assert!(!store
            .put_snapshot(b"8", &b"data 8"[..], older_than(b"8"))
            .await
            .unwrap());
        assert_eq!(
            stored_snapshot(&store).await,
            Some((b"10".to_vec(), installed)),
            "an installed snapshot survives an older built one"
        );
        assert!(store
            .put_snapshot(b"12", &b"data 12"[..], older_than(b"12"))
            .await
            .unwrap());
        assert_eq!(
            store.get_snapshot().await.unwrap(),
            Some((b"12".to_vec(), b"data 12".to_vec()))
        );
    })
    .await;
}

/// The import purges the log the snapshot covers in its own transaction.
#[tokio::test]
async fn import_purges_the_log_it_covers() {
    each_backend(async |store: Store| {
        let rows: Vec<crate::store::LogRow> = (1..=5)
            .map(|index| crate::store::LogRow {
                index,
                term: 1,
                payload: vec![1],
            })
            .collect();
        store.append_log(&rows).await.unwrap();
        import_dump(&store, &StateDump::default(), b"m", Some((3, b"purged-3"))).await;
        let left: Vec<u64> = store
            .read_log(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(left, vec![4, 5]);
        assert_eq!(
            store.get_raft_state("purged").await.unwrap(),
            Some(b"purged-3".to_vec())
        );
    })
    .await;
}

/// A damaged snapshot is never half-imported: a truncated file and one with
/// a flipped bit are both refused with a snapshot-file error, and the old
/// state, its stored snapshot and the log stay exactly as they were.
#[tokio::test]
async fn a_damaged_snapshot_leaves_the_old_state() {
    each_backend(async |store: Store| {
        apply(&store, &[labelled("old", 10, &["a"])]).await;
        store
            .put_snapshot(b"old-meta", &b"old-data"[..], |_| true)
            .await
            .unwrap();
        let before = store.export().await.unwrap();
        let incoming = StateDump {
            tasks: (0..50)
                .map(|i| {
                    let mut t = before.tasks[0].clone();
                    t.id = format!("new{i}");
                    t
                })
                .collect(),
            ..StateDump::default()
        };
        let good = snapshot_of(&incoming).await;
        let truncated = good[..good.len() - 10].to_vec();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x10;
        for (what, bad) in [("truncated", truncated), ("bit-flipped", flipped)] {
            let options = ImportOptions {
                meta: None,
                snapshot_meta: b"new-meta",
                purge: Some((1, b"purged-1")),
            };
            let err = store
                .import_snapshot(&mut std::io::Cursor::new(bad), options)
                .await
                .expect_err(what);
            assert!(
                matches!(err, crate::store::StoreError::SnapshotFile(_)),
                "{what}: {err}"
            );
            assert_eq!(store.export().await.unwrap(), before, "{what}");
            assert_eq!(
                store.get_snapshot().await.unwrap(),
                Some((b"old-meta".to_vec(), b"old-data".to_vec())),
                "{what}"
            );
            assert_eq!(store.get_raft_state("purged").await.unwrap(), None);
        }
    })
    .await;
}
