//! The Raft log and vote, kept in the node's database (`raft_log`, `raft_state`).
//!
//! Durability is the database's (SQLite `synchronous=FULL`, InnoDB's default
//! flush at commit). Appends are group-committed by [`LogWriter`]: `append`
//! queues, and openraft's flush callback fires once the entries' transaction
//! has committed. The vote is durable before `save_vote` returns, and is
//! written only after every append queued before it.
//!
//! A purge never runs ahead of the installed state. openraft 0.9.25 issues
//! `PurgeLog` up to a snapshot's last log id right after it hands the
//! snapshot to the state machine, so the purge can come before the import
//! commits; a crash between them would leave `purged` past `last_applied`,
//! and the entries in between gone for good (the node then fails at every
//! restart). So while a snapshot is being received (the state machine's
//! `begin_receiving_snapshot` says so), a purge past `last_applied` leaves
//! the database alone: the
//! snapshot's import deletes those entries and records `purged` in its own
//! transaction (`Store::import`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError};

use super::codec::{self, Format};
use super::log_writer::{LogWriter, COMMITTED};
use super::retry::with_retry;
use super::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::failpoint;
use crate::store::{LogRow, Store};

const VOTE: &str = "vote";
/// The raft_state key of the last purged log id (also written by `Store::import`).
pub const PURGED: &str = "purged";

/// openraft's log storage over a [`Store`]. Cheap to clone: readers share it.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    writer: Arc<LogWriter>,
    committed: CommitIndex,
}

/// The highest log index this node knows is committed, as openraft last
/// saved it (`save_committed`): openraft 0.9's `RaftMetrics` does not say.
/// For the metrics; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CommitIndex(Arc<AtomicU64>);

impl CommitIndex {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, committed: Option<&LogId>) {
        self.0
            .fetch_max(committed.map_or(0, |c| c.index), Ordering::Relaxed);
    }
}

impl LogStore {
    /// Starts the log's writer task: call inside a tokio runtime.
    pub fn new(store: Store) -> Self {
        let writer = Arc::new(LogWriter::start(store.clone()));
        Self {
            store,
            writer,
            committed: CommitIndex::default(),
        }
    }

    /// Follows the commit index this store is told (for the metrics).
    pub fn commit_index(&self) -> CommitIndex {
        self.committed.clone()
    }

    /// Waits until every queued append is written, so that what follows
    /// cannot overtake it.
    async fn barrier(&self) -> Result<(), StorageError> {
        self.writer
            .barrier()
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn read_state<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = with_retry("get_raft_state", || self.store.get_raft_state(key))
            .await
            .map_err(|e| StorageIOError::read(AnyError::new(&e)))?
        else {
            return Ok(None);
        };
        let value = codec::decode(&bytes).map_err(|e| StorageIOError::read(AnyError::new(&e)))?;
        Ok(Some(value))
    }

    async fn write_state<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = codec::encode(value).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        with_retry("put_raft_state", || self.store.put_raft_state(key, &bytes))
            .await
            .map_err(|e| StorageIOError::write(AnyError::new(&e)).into())
    }
}

/// A stored entry, of any format this release reads; one of a format it
/// does not know is a read error, fatal to the Raft core (`codec`'s doc).
fn decode_entry(row: &LogRow) -> Result<Entry, StorageError> {
    codec::decode_entry(&row.payload)
        .map_err(|e| StorageIOError::read_log_at_index(row.index, AnyError::new(&e)).into())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        // Recent entries (replication, apply) come from the tail in memory.
        let beyond_tail = {
            let tail = self.writer.tail();
            match tail.read(start, end) {
                Some(entries) => return Ok(entries),
                None => tail.range(start, end),
            }
        };
        let rows = with_retry("read_log", || self.store.read_log(start, end))
            .await
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        let mut entries = BTreeMap::new();
        for row in &rows {
            entries.insert(row.index, decode_entry(row)?);
        }
        // Entries the tail holds (perhaps not yet stored) are the newer copy.
        entries.extend(beyond_tail.into_iter().map(|e| (e.log_id.index, e)));
        Ok(entries.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_state(PURGED).await?;
        let last_in_tail = self.writer.tail().last_log_id();
        if let Some(last_log_id) = last_in_tail {
            return Ok(LogState {
                last_purged_log_id,
                last_log_id: Some(last_log_id),
            });
        }
        let last = with_retry("last_log", || self.store.last_log())
            .await
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        let last_log_id = match last {
            Some(row) => Some(decode_entry(&row)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.barrier().await?;
        failpoint::hit(failpoint::SAVE_VOTE_BEFORE);
        self.write_state(VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        failpoint::hit(failpoint::SAVE_VOTE_AFTER);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_state(VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes =
            codec::encode(&committed).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        self.writer.save_committed(bytes);
        self.committed.set(committed.as_ref());
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = self.read_state::<Option<LogId>>(COMMITTED).await?.flatten();
        self.committed.set(committed.as_ref());
        Ok(committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let rows = entries
            .iter()
            .map(|entry| {
                let payload = codec::encode_as(entry, Format::NEWEST).map_err(|e| {
                    StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e))
                })?;
                Ok(LogRow {
                    index: entry.log_id.index,
                    term: entry.log_id.leader_id.term,
                    payload,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        // Readable at once; durable when the writer fires `callback`.
        self.writer.append(entries, rows, callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.barrier().await?;
        self.writer.tail().truncate(log_id.index);
        with_retry("truncate_log", || self.store.truncate_log(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.writer.truncated(log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purged =
            codec::encode(&log_id).map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.barrier().await?;
        self.writer.tail().purge(log_id.index);
        let meta = with_retry("sm_meta", || self.store.sm_meta())
            .await
            .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?;
        let last_applied: Option<LogId> = match &meta.last_applied {
            Some(bytes) => codec::decode(bytes)
                .map_err(|e| StorageIOError::read_state_machine(AnyError::new(&e)))?,
            None => None,
        };
        if self.store.import_pending() && last_applied < Some(log_id) {
            // A snapshot being installed: its import purges (see the module doc).
            tracing::info!(upto = %log_id, last_applied = ?last_applied, "purge left to the snapshot's import");
        } else {
            with_retry("purge_log", || self.store.purge_log(log_id.index, &purged))
                .await
                .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
            self.writer.purged(log_id.index);
        }
        failpoint::hit(failpoint::PURGE_COMMITTED);
        Ok(())
    }
}
