use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::Command;

use super::super::testutil::{apply, create, each_backend, new_task};
use super::super::{ListOrder, ListQuery, SmMeta, StateDump, Store};

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

/// Export then import restores exactly the exported state (tasks, request
/// ids, meta, and the label index), discarding everything written between.
#[tokio::test]
async fn export_import_roundtrip() {
    each_backend(async |store: Store| {
        assert_eq!(store.export().await.unwrap(), StateDump::default());
        apply(
            &store,
            &[labelled("t1", 10, &["a"]), labelled("t2", 11, &["a", "b"])],
        )
        .await;
        let dump = store.export().await.unwrap();
        assert_eq!(dump.tasks.len(), 2);
        assert_eq!(dump.request_ids.len(), 2);
        assert_eq!(dump.meta.last_applied, Some(b"2".to_vec()));

        apply(&store, &[labelled("t3", 12, &["a"])]).await;
        let meta_only = SmMeta {
            last_applied: Some(b"x".to_vec()),
            membership: Some(b"m".to_vec()),
        };
        store.apply_batch(&[None], &meta_only).await.unwrap();

        store
            .import(&dump, b"snap-meta", b"snap-data", None)
            .await
            .unwrap();
        assert_eq!(store.export().await.unwrap(), dump);
        assert_eq!(store.sm_meta().await.unwrap(), dump.meta);
        assert_eq!(
            store.get_snapshot().await.unwrap(),
            Some((b"snap-meta".to_vec(), b"snap-data".to_vec()))
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

        store
            .import(&StateDump::default(), b"m", b"d", None)
            .await
            .unwrap();
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
            .put_snapshot(b"7", b"data 7", older_than(b"7"))
            .await
            .unwrap());
        assert!(!store
            .put_snapshot(b"5", b"data 5", older_than(b"5"))
            .await
            .unwrap());
        assert_eq!(
            store.get_snapshot().await.unwrap(),
            Some((b"7".to_vec(), b"data 7".to_vec()))
        );
        store
            .import(&StateDump::default(), b"10", b"data 10", None)
            .await
            .unwrap();
        assert!(!store
            .put_snapshot(b"8", b"data 8", older_than(b"8"))
            .await
            .unwrap());
        assert_eq!(
            store.get_snapshot().await.unwrap(),
            Some((b"10".to_vec(), b"data 10".to_vec())),
            "an installed snapshot survives an older built one"
        );
        assert!(store
            .put_snapshot(b"12", b"data 12", older_than(b"12"))
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
        store
            .import(&StateDump::default(), b"m", b"d", Some((3, b"purged-3")))
            .await
            .unwrap();
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
