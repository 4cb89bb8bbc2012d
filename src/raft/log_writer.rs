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
//!
//! A failed write fails precisely what it did not store: its own appends,
//! and every later append above the first unstored index (the log must have
//! no hole), until openraft rewrites that index, truncates or purges it. A
//! failed save of the committed index alone leaves no hole: it is kept and
//! written with the next batch. A barrier reports an error while any append
//! queued before it is not stored, never success.

use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::LogFlushed;
use tokio::sync::{mpsc, oneshot};

use super::log_tail::LogTail;
use super::retry::with_retry;
use super::{Entry, TypeConfig};
use crate::failpoint;
use crate::store::{LogRow, Store};

/// The raft_state key of the committed log id.
pub const COMMITTED: &str = "committed";

/// What the writer calls once an append is durable, or failed.
pub type Flushed = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

enum WriteOp {
    Append {
        rows: Vec<LogRow>,
        flushed: Flushed,
    },
    Committed(Vec<u8>),
    Barrier(oneshot::Sender<Result<(), String>>),
    /// The entries from this index on are gone (truncated): a hole there is no more.
    Truncated(u64),
    /// The entries up to this index are gone (purged): so is a hole among them.
    Purged(u64),
}

/// The queue into the writer task, and the log's tail in memory (every
/// entry it has not stored yet, and the newest stored ones).
pub struct LogWriter {
    queue: mpsc::UnboundedSender<WriteOp>,
    tail: Arc<Mutex<LogTail>>,
}

fn stopped() -> std::io::Error {
    std::io::Error::other("the log writer has stopped")
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
        self.append_then(
            entries,
            rows,
            Box::new(move |outcome| callback.log_io_completed(outcome)),
        );
    }

    /// [`LogWriter::append`] with any completion: `flushed` is called once
    /// the entries are durable, or with the error that kept them from it.
    pub fn append_then(&self, entries: Vec<Entry>, rows: Vec<LogRow>, flushed: Flushed) {
        {
            let mut tail = self.tail();
            for (entry, row) in entries.into_iter().zip(&rows) {
                tail.insert(entry, row.payload.len());
            }
        }
        let op = WriteOp::Append { rows, flushed };
        if let Err(mpsc::error::SendError(WriteOp::Append { flushed, .. })) = self.queue.send(op) {
            flushed(Err(stopped()));
        }
    }

    /// Queues the committed log id (encoded), stored after the appends before it.
    pub fn save_committed(&self, committed: Vec<u8>) {
        let _ = self.queue.send(WriteOp::Committed(committed));
    }

    /// Waits until everything queued before this call has been written: an
    /// error if some of it is not stored.
    pub async fn barrier(&self) -> Result<(), std::io::Error> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(WriteOp::Barrier(done))
            .map_err(|_| stopped())?;
        wait.await
            .map_err(|_| stopped())?
            .map_err(std::io::Error::other)
    }

    /// Tells the writer that the entries from `index` on were truncated.
    pub fn truncated(&self, index: u64) {
        let _ = self.queue.send(WriteOp::Truncated(index));
    }

    /// Tells the writer that the entries up to `index` were purged.
    pub fn purged(&self, index: u64) {
        let _ = self.queue.send(WriteOp::Purged(index));
    }
}

/// What the writer has taken from the queue and not yet written.
#[derive(Default)]
struct Batch {
    rows: Vec<LogRow>,
    callbacks: Vec<Flushed>,
}

/// The writer's memory between batches.
struct Writer {
    store: Store,
    tail: Arc<Mutex<LogTail>>,
    /// The committed index to store with the next write. It rides with the
    /// next append (or barrier): it then costs no commit and no sync of its
    /// own, which on the single SQLite connection would hold up the state
    /// machine's apply. Only restarts use it (to re-apply sooner; what is
    /// missing the leader re-commits), so a stored value a little behind is
    /// harmless. One ahead of its entries would not be, and cannot happen: it
    /// is stored with or after the appends queued before it.
    committed: Option<Vec<u8>>,
    /// The lowest index of an append that failed, with the error: nothing
    /// above it may be stored (or reported stored) until it is rewritten,
    /// truncated or purged.
    hole: Option<(u64, String)>,
}

async fn run(store: Store, mut ops: mpsc::UnboundedReceiver<WriteOp>, tail: Arc<Mutex<LogTail>>) {
    let mut writer = Writer {
        store,
        tail,
        committed: None,
        hole: None,
    };
    while let Some(first) = ops.recv().await {
        let mut batch = Batch::default();
        let mut next = Some(first);
        while let Some(op) = next.take().or_else(|| ops.try_recv().ok()) {
            match op {
                WriteOp::Append { rows, flushed } => {
                    batch.rows.extend(rows);
                    batch.callbacks.push(flushed);
                }
                WriteOp::Committed(c) => writer.committed = Some(c),
                WriteOp::Barrier(done) => {
                    let result = writer.write(std::mem::take(&mut batch)).await;
                    let _ = done.send(result);
                }
                WriteOp::Truncated(index) => {
                    writer.write_pending(&mut batch).await;
                    if writer.hole.as_ref().is_some_and(|(h, _)| *h >= index) {
                        writer.hole = None;
                    }
                }
                WriteOp::Purged(index) => {
                    writer.write_pending(&mut batch).await;
                    if writer.hole.as_ref().is_some_and(|(h, _)| *h <= index) {
                        writer.hole = None;
                    }
                }
            }
        }
        writer.write_pending(&mut batch).await;
    }
}

impl Writer {
    /// Writes the appends taken so far, if any.
    async fn write_pending(&mut self, batch: &mut Batch) {
        if !batch.rows.is_empty() {
            let _ = self.write(std::mem::take(batch)).await;
        }
    }

    /// Writes one batch (with the pending committed index) and fires its
    /// callbacks; an error if anything queued so far is not stored.
    async fn write(&mut self, batch: Batch) -> Result<(), String> {
        #[cfg(feature = "chaos-break")]
        let batch = Batch {
            callbacks: crate::chaos_break::ack_before_durable(batch.callbacks).await,
            ..batch
        };
        let first = batch.rows.first().map(|r| r.index);
        let last = batch.rows.last().map(|r| r.index);
        // Above a hole nothing is stored, not even the committed index
        // (it may cover the missing entries); a rewrite of the hole is.
        let result = match &self.hole {
            Some((hole, error)) if first.is_none_or(|f| f > *hole) => Err(format!(
                "log entry {hole} is not stored ({error}): nothing after it may be"
            )),
            _ => self.store_batch(&batch.rows).await,
        };
        match (&result, first, last) {
            (Ok(()), Some(first), Some(last)) => {
                if self
                    .hole
                    .as_ref()
                    .is_some_and(|(h, _)| (first..=last).contains(h))
                {
                    self.hole = None;
                }
                self.tail
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .stored(last);
                // The entries are durable; openraft does not know yet.
                failpoint::hit(failpoint::LOG_APPEND_COMMITTED);
            }
            (Err(e), Some(first), _) => {
                tracing::error!(error = %e, first, "writing the raft log failed");
                if self.hole.as_ref().is_none_or(|(h, _)| first < *h) {
                    self.hole = Some((first, e.clone()));
                }
            }
            (Err(e), None, _) => tracing::error!(error = %e, "saving the committed index failed"),
            (Ok(()), _, _) => {}
        }
        for callback in batch.callbacks {
            callback(result.clone().map_err(std::io::Error::other));
        }
        result?;
        match &self.hole {
            Some((hole, error)) => Err(format!("log entry {hole} is not stored: {error}")),
            None => Ok(()),
        }
    }

    /// Stores `rows` and the pending committed index in one transaction; a
    /// committed index that failed to store stays pending.
    async fn store_batch(&mut self, rows: &[LogRow]) -> Result<(), String> {
        let committed = self.committed.take();
        let state = committed.as_deref().map(|c| (COMMITTED, c));
        let result = with_retry("append_log", || {
            self.store.append_log_with_state(rows, state)
        })
        .await
        .map_err(|e| e.to_string());
        if result.is_err() && self.committed.is_none() {
            self.committed = committed;
        }
        result
    }
}

#[cfg(test)]
mod tests;
