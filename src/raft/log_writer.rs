//! Group commit for the Raft log: one database transaction for every log
//! append that is waiting, instead of one per entry.
//!
//! openraft 0.9 hands the log store one client write at a time and waits for
//! `append` to return before it takes the next, so a store that commits
//! inside `append` caps a leader at one fsync per write. Here `append` only
//! queues its entries and returns; a writer task commits everything queued
//! so far in one transaction and then fires each append's flush callback, in
//! order. openraft counts an entry as stored only once its callback fires.
//!
//! Until then the entries sit in the log's in-memory tail
//! ([`super::log_tail`]), where readers find them (openraft reads an entry
//! as soon as `append` returns). Operations that must not
//! overtake queued appends (truncate, purge, a new vote) first wait for the
//! queue to drain ([`LogWriter::barrier`]); the committed index is queued
//! like an append, so it is never stored ahead of the entries it covers, and
//! is written in the transaction of the next append (see [`run`]).

use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::LogFlushed;
use tokio::sync::{mpsc, oneshot};

use super::log_tail::LogTail;
use super::retry::with_retry;
use super::{Entry, TypeConfig};
use crate::store::{LogRow, Store};

/// The raft_state key of the committed log id.
pub const COMMITTED: &str = "committed";

enum WriteOp {
    Append {
        rows: Vec<LogRow>,
        callback: LogFlushed<TypeConfig>,
    },
    Committed(Vec<u8>),
    Barrier(oneshot::Sender<()>),
}

/// The queue into the writer task, and the log's tail in memory (every
/// entry it has not stored yet, and the newest stored ones).
pub struct LogWriter {
    queue: mpsc::UnboundedSender<WriteOp>,
    tail: Arc<Mutex<LogTail>>,
}

impl LogWriter {
    /// Starts the writer task; it ends when the `LogWriter` is dropped.
    pub fn start(store: Store) -> Self {
        let (queue, ops) = mpsc::unbounded_channel();
        let tail = Arc::default();
        tokio::spawn(run(store, ops, Arc::clone(&tail)));
        Self { queue, tail }
    }

    /// The log's tail: every entry appended but not yet stored, and the newest stored ones.
    pub fn tail(&self) -> MutexGuard<'_, LogTail> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `entries` (with their encoded rows); `callback` fires once they are durable.
    pub fn append(&self, entries: Vec<Entry>, rows: Vec<LogRow>, callback: LogFlushed<TypeConfig>) {
        {
            let mut tail = self.tail();
            for (entry, row) in entries.into_iter().zip(&rows) {
                tail.insert(entry, row.payload.len());
            }
        }
        let op = WriteOp::Append { rows, callback };
        if let Err(mpsc::error::SendError(WriteOp::Append { callback, .. })) = self.queue.send(op) {
            callback.log_io_completed(Err(std::io::Error::other("the log writer has stopped")));
        }
    }

    /// Queues the committed log id (encoded), stored after the appends before it.
    pub fn save_committed(&self, committed: Vec<u8>) {
        let _ = self.queue.send(WriteOp::Committed(committed));
    }

    /// Waits until everything queued before this call has been written.
    pub async fn barrier(&self) -> Result<(), std::io::Error> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(WriteOp::Barrier(done))
            .map_err(|_| std::io::Error::other("the log writer has stopped"))?;
        wait.await
            .map_err(|_| std::io::Error::other("the log writer has stopped"))
    }
}

/// What the writer has taken from the queue and not yet written.
#[derive(Default)]
struct Batch {
    rows: Vec<LogRow>,
    callbacks: Vec<LogFlushed<TypeConfig>>,
    committed: Option<Vec<u8>>,
}

async fn run(store: Store, mut ops: mpsc::UnboundedReceiver<WriteOp>, tail: Arc<Mutex<LogTail>>) {
    let mut failed = false;
    // The committed index rides with the next append (or barrier): it then
    // costs no commit and no sync of its own, which on the single SQLite
    // connection would hold up the state machine's apply. Only restarts use
    // it (to re-apply sooner; what is missing the leader re-commits), so a
    // stored value a little behind is harmless. One ahead of its entries
    // would not be, and cannot happen: it is stored with or after the
    // appends queued before it.
    let mut committed: Option<Vec<u8>> = None;
    while let Some(first) = ops.recv().await {
        let mut batch = Batch::default();
        let mut next = Some(first);
        while let Some(op) = next.take().or_else(|| ops.try_recv().ok()) {
            match op {
                WriteOp::Append { rows, callback } => {
                    batch.rows.extend(rows);
                    batch.callbacks.push(callback);
                }
                WriteOp::Committed(c) => committed = Some(c),
                WriteOp::Barrier(done) => {
                    batch.committed = committed.take();
                    failed |= !write(&store, std::mem::take(&mut batch), &tail, failed).await;
                    let _ = done.send(());
                }
            }
        }
        if !batch.rows.is_empty() {
            batch.committed = committed.take();
            failed |= !write(&store, batch, &tail, failed).await;
        }
    }
}

/// Writes one batch and fires its callbacks; false if it failed. After a
/// failure nothing more is written: the Raft core stops on the first error.
async fn write(store: &Store, batch: Batch, tail: &Mutex<LogTail>, failed: bool) -> bool {
    #[cfg(feature = "chaos-break")]
    let batch = Batch {
        callbacks: crate::chaos_break::ack_before_durable(batch.callbacks).await,
        ..batch
    };
    let result = if failed {
        Err("an earlier log write failed".to_string())
    } else {
        let state = batch.committed.as_deref().map(|c| (COMMITTED, c));
        with_retry("append_log", || {
            store.append_log_with_state(&batch.rows, state)
        })
        .await
        .map_err(|e| e.to_string())
    };
    if let (Ok(()), Some(last)) = (&result, batch.rows.last()) {
        tail.lock()
            .unwrap_or_else(|e| e.into_inner())
            .stored(last.index);
    }
    let ok = result.is_ok();
    for callback in batch.callbacks {
        let outcome = result.clone().map_err(std::io::Error::other);
        callback.log_io_completed(outcome);
    }
    if let Err(e) = result {
        tracing::error!(error = %e, "writing the raft log failed");
    }
    ok
}
