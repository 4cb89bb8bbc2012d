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
//! Until then the entries sit in `pending`, where readers find them (openraft
//! reads an entry as soon as `append` returns). Operations that must not
//! overtake queued appends (truncate, purge, a new vote) first wait for the
//! queue to drain ([`LogWriter::barrier`]); the committed index is queued
//! like an append, so it is never stored ahead of the entries it covers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::LogFlushed;
use tokio::sync::{mpsc, oneshot};

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

/// The queue into the writer task, and the entries it has not stored yet.
pub struct LogWriter {
    queue: mpsc::UnboundedSender<WriteOp>,
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
}

impl LogWriter {
    /// Starts the writer task; it ends when the `LogWriter` is dropped.
    pub fn start(store: Store) -> Self {
        let (queue, ops) = mpsc::unbounded_channel();
        let pending = Arc::default();
        tokio::spawn(run(store, ops, Arc::clone(&pending)));
        Self { queue, pending }
    }

    /// The entries appended but not yet stored, by index.
    pub fn pending(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `entries` (with their encoded rows); `callback` fires once they are durable.
    pub fn append(&self, entries: Vec<Entry>, rows: Vec<LogRow>, callback: LogFlushed<TypeConfig>) {
        {
            let mut pending = self.pending();
            for entry in entries {
                pending.insert(entry.log_id.index, entry);
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

async fn run(
    store: Store,
    mut ops: mpsc::UnboundedReceiver<WriteOp>,
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
) {
    let mut failed = false;
    while let Some(first) = ops.recv().await {
        let mut batch = Batch::default();
        let mut next = Some(first);
        while let Some(op) = next.take().or_else(|| ops.try_recv().ok()) {
            match op {
                WriteOp::Append { rows, callback } => {
                    batch.rows.extend(rows);
                    batch.callbacks.push(callback);
                }
                WriteOp::Committed(committed) => batch.committed = Some(committed),
                WriteOp::Barrier(done) => {
                    failed |= !write(&store, std::mem::take(&mut batch), &pending, failed).await;
                    let _ = done.send(());
                }
            }
        }
        failed |= !write(&store, batch, &pending, failed).await;
    }
}

/// Writes one batch and fires its callbacks; false if it failed. After a
/// failure nothing more is written: the Raft core stops on the first error.
async fn write(
    store: &Store,
    batch: Batch,
    pending: &Mutex<BTreeMap<u64, Entry>>,
    failed: bool,
) -> bool {
    let result = if failed {
        Err("an earlier log write failed".to_string())
    } else {
        let appended = if batch.rows.is_empty() {
            Ok(())
        } else {
            with_retry("append_log", || store.append_log(&batch.rows)).await
        };
        match (appended, &batch.committed) {
            (Ok(()), Some(committed)) => with_retry("put_raft_state", || {
                store.put_raft_state(COMMITTED, committed)
            })
            .await
            .map_err(|e| e.to_string()),
            (appended, _) => appended.map_err(|e| e.to_string()),
        }
    };
    if result.is_ok() {
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        for row in &batch.rows {
            // Only if no newer append replaced the entry meanwhile.
            if pending
                .get(&row.index)
                .is_some_and(|e| e.log_id.leader_id.term == row.term)
            {
                pending.remove(&row.index);
            }
        }
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
