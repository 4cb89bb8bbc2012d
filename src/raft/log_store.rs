//! The Raft log and vote, kept in the node's database (`raft_log`, `raft_state`).
//!
//! Durability is the database's: every method returns only after its
//! transaction has committed (SQLite `synchronous=FULL`, InnoDB's default
//! flush at commit), so `append` fires openraft's flush callback only once
//! the entries are on disk, and the vote is durable before `save_vote`
//! returns.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError};

use super::codec;
use super::retry::with_retry;
use super::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::store::{LogRow, Store};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// openraft's log storage over a [`Store`]. Cheap to clone: readers share it.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        Self { store }
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

fn decode_entry(row: &LogRow) -> Result<Entry, StorageError> {
    codec::decode(&row.payload)
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
        let rows = with_retry("read_log", || self.store.read_log(start, end))
            .await
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        rows.iter().map(decode_entry).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_state(PURGED).await?;
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
        self.write_state(VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_state(VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_state(COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_state::<Option<LogId>>(COMMITTED).await?.flatten())
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
        let rows = entries
            .into_iter()
            .map(|entry| {
                let payload = codec::encode(&entry).map_err(|e| {
                    StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e))
                })?;
                Ok(LogRow {
                    index: entry.log_id.index,
                    term: entry.log_id.leader_id.term,
                    payload,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let result = with_retry("append_log", || self.store.append_log(&rows)).await;
        // The transaction has committed (durable) or failed: tell openraft either way.
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(AnyError::new(&e)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        with_retry("truncate_log", || self.store.truncate_log(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purged =
            codec::encode(&log_id).map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        with_retry("purge_log", || self.store.purge_log(log_id.index, &purged))
            .await
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)).into())
    }
}
