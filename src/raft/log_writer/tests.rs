//! The log writer against real database failures (triggers that refuse a
//! write), on both backends.

use openraft::{CommittedLeaderId, EntryPayload};
use tokio::sync::oneshot;

use super::*;
use crate::raft::LogId;
use crate::store::testutil::{each_backend, execute, refusing_trigger};

fn entries(indexes: std::ops::RangeInclusive<u64>) -> (Vec<Entry>, Vec<LogRow>) {
    indexes
        .map(|index| {
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Blank,
            };
            let row = LogRow {
                index,
                term: 1,
                payload: format!("entry {index}").into_bytes(),
            };
            (entry, row)
        })
        .unzip()
}

/// Queues an append of `indexes` and waits for its completion.
async fn append(writer: &LogWriter, indexes: std::ops::RangeInclusive<u64>) -> Result<(), String> {
    let (entries, rows) = entries(indexes);
    let (done, outcome) = oneshot::channel();
    writer.append_then(
        entries,
        rows,
        Box::new(move |r| {
            let _ = done.send(r.map_err(|e| e.to_string()));
        }),
    );
    outcome.await.expect("the writer completes every append")
}

/// A failed save of the committed index alone is an error at the barrier,
/// not a success; once the database takes writes again, appends succeed
/// (the writer is not poisoned) and the committed index is stored with them.
#[tokio::test]
async fn a_failed_committed_save_is_reported_and_the_writer_recovers() {
    each_backend(async |store: Store| {
        let writer = LogWriter::start(store.clone());
        append(&writer, 1..=2).await.expect("append 1..=2");
        let (refuse, allow) = refusing_trigger(
            &store,
            "refuse_committed",
            "raft_state",
            "NEW.name = 'committed'",
        );
        execute(&store, &refuse).await;
        writer.save_committed(b"c2".to_vec());
        assert!(
            writer.barrier().await.is_err(),
            "the barrier reported success for a committed index the database refused"
        );
        execute(&store, &allow).await;
        append(&writer, 3..=4)
            .await
            .expect("an append after the database recovered");
        writer.barrier().await.expect("barrier after recovery");
        assert_eq!(
            store.get_raft_state(COMMITTED).await.unwrap(),
            Some(b"c2".to_vec()),
            "the refused committed index is stored with the next write"
        );
        assert_eq!(store.read_log(1, 5).await.unwrap().len(), 4);
    })
    .await;
}

/// An append the database refuses fails, and so does every later append
/// above it (no hole in the log) and every barrier; rewriting the refused
/// index once the database recovers heals the writer.
#[tokio::test]
async fn a_failed_append_fails_what_follows_until_rewritten() {
    each_backend(async |store: Store| {
        let writer = LogWriter::start(store.clone());
        append(&writer, 1..=1).await.expect("append 1");
        let (refuse, allow) =
            refusing_trigger(&store, "refuse_entry_2", "raft_log", "NEW.log_index = 2");
        execute(&store, &refuse).await;
        assert!(append(&writer, 2..=3).await.is_err(), "entry 2 was refused");
        execute(&store, &allow).await;
        assert!(
            append(&writer, 4..=4).await.is_err(),
            "entry 4 was reported stored above the missing entry 2"
        );
        assert!(writer.barrier().await.is_err(), "a barrier over a hole");
        assert_eq!(store.read_log(1, 10).await.unwrap().len(), 1);
        append(&writer, 2..=4)
            .await
            .expect("rewriting from entry 2");
        writer.barrier().await.expect("barrier after the rewrite");
        assert_eq!(store.read_log(1, 10).await.unwrap().len(), 4);
    })
    .await;
}
