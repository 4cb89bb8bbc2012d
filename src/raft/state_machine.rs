//! The state machine: applies committed commands to the task tables.
//!
//! Thin by design: all SQL lives in [`crate::store`]. Each entry carries a
//! [`crate::domain::WriteBatch`]; every write of every entry handed over at
//! once goes to one `Store::apply_batch` call, i.e. one transaction that also records
//! `last_applied` (and the membership), so a crash can neither apply an entry
//! twice nor skip one.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};

use super::codec;
use super::retry::with_retry;
use super::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::domain::{BatchResults, Command};
use crate::store::{SmMeta, StateDump, Store, StoreError};

/// openraft's state machine over a [`Store`].
#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    /// The encoded membership as last applied; rewritten with every batch so
    /// that `sm_meta` is always whole.
    membership: Option<Vec<u8>>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

impl StateMachine {
    pub async fn new(store: Store) -> Result<Self, StorageError> {
        let meta = store.sm_meta().await.map_err(read_err)?;
        Ok(Self {
            store,
            membership: meta.membership,
        })
    }

    fn decode_meta(meta: &SmMeta) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let last_applied = match &meta.last_applied {
            Some(bytes) => codec::decode(bytes).map_err(read_err)?,
            None => None,
        };
        let membership = match &meta.membership {
            Some(bytes) => codec::decode(bytes).map_err(read_err)?,
            None => StoredMembership::default(),
        };
        Ok((last_applied, membership))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // One consistent read: the tables and the last_applied they reflect.
        let dump = with_retry("export", || self.store.export())
            .await
            .map_err(snapshot_err)?;
        let (last_log_id, last_membership) = Self::decode_meta(&dump.meta)?;
        let snapshot_id = match last_log_id {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term,
                id.index,
                uuid::Uuid::now_v7()
            ),
            None => format!("0-0-{}", uuid::Uuid::now_v7()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let data = codec::encode(&dump).map_err(snapshot_err)?;
        let meta_bytes = codec::encode(&meta).map_err(snapshot_err)?;
        // An install may have stored a newer snapshot meanwhile: keep it.
        let replaces = |stored: &[u8]| {
            codec::decode::<SnapshotMeta>(stored).map_or(true, |s| s.last_log_id < meta.last_log_id)
        };
        with_retry("put_snapshot", || {
            self.store.put_snapshot(&meta_bytes, &data, replaces)
        })
        .await
        .map_err(snapshot_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let meta = with_retry("sm_meta", || self.store.sm_meta())
            .await
            .map_err(read_err)?;
        Self::decode_meta(&meta)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResults>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last() else {
            return Ok(Vec::new());
        };
        let last_applied = codec::encode(&Some(last.log_id)).map_err(write_err)?;
        // Every write of every entry, flattened in log order: one transaction.
        let mut membership = None;
        let mut commands: Vec<Option<&Command>> = Vec::new();
        let mut writes_per_entry = Vec::with_capacity(entries.len());
        for entry in &entries {
            let writes = match &entry.payload {
                EntryPayload::Normal(batch) => batch.writes.as_slice(),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    &[]
                }
                EntryPayload::Blank => &[],
            };
            commands.extend(writes.iter().map(Some));
            writes_per_entry.push(writes.len());
        }
        if let Some(m) = membership {
            self.membership = Some(codec::encode(&m).map_err(write_err)?);
        }
        let meta = SmMeta {
            last_applied: Some(last_applied),
            membership: self.membership.clone(),
        };
        let store = &self.store;
        let attempt = std::sync::atomic::AtomicU32::new(0);
        let results = with_retry("apply_batch", || async {
            // A retry after a failure at COMMIT must not apply the batch twice.
            if attempt.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0
                && store.sm_meta().await?.last_applied == meta.last_applied
            {
                return Err(StoreError::Corrupt(
                    "the batch committed but its results were lost with the connection".into(),
                ));
            }
            store.apply_batch(&commands, &meta).await
        })
        .await
        .map_err(|e| StorageIOError::apply(last.log_id, AnyError::new(&e)))?;
        // Back from flat to one result list per entry.
        let mut results = results.into_iter();
        Ok(writes_per_entry
            .into_iter()
            .map(|n| BatchResults {
                results: results.by_ref().take(n).collect(),
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        // Its import, not the log store, purges the log it covers.
        self.store.expect_import();
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let (last_applied, _) = self.applied_state().await?;
        if last_applied >= meta.last_log_id && last_applied.is_some() {
            // Installing it would move the state machine back in time.
            tracing::warn!(snapshot = %meta.snapshot_id, "ignoring a snapshot older than last_applied");
            return Ok(());
        }
        let data = snapshot.into_inner();
        let mut dump: StateDump = codec::decode(&data).map_err(snapshot_err)?;
        // The snapshot's own meta is the truth about what it covers.
        dump.meta = SmMeta {
            last_applied: Some(codec::encode(&meta.last_log_id).map_err(snapshot_err)?),
            membership: Some(codec::encode(&meta.last_membership).map_err(snapshot_err)?),
        };
        let meta_bytes = codec::encode(meta).map_err(snapshot_err)?;
        // The log the snapshot covers is purged in the import's transaction
        // (the LogStore leaves a purge past last_applied to it).
        let purge = match &meta.last_log_id {
            Some(id) => Some((id.index, codec::encode(id).map_err(snapshot_err)?)),
            None => None,
        };
        let purge = purge
            .as_ref()
            .map(|(upto, purged)| (*upto, purged.as_slice()));
        with_retry("import", || {
            self.store.import(&dump, &meta_bytes, &data, purge)
        })
        .await
        .map_err(snapshot_err)?;
        self.membership = dump.meta.membership;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some((meta_bytes, data)) = with_retry("get_snapshot", || self.store.get_snapshot())
            .await
            .map_err(read_err)?
        else {
            return Ok(None);
        };
        let meta: SnapshotMeta = codec::decode(&meta_bytes).map_err(read_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests;
