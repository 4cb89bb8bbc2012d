//! The state machine: applies committed commands to the task tables.
//!
//! Thin by design: all SQL lives in [`crate::store`]. Each entry carries a
//! [`crate::domain::WriteBatch`]; every write of every entry handed over at
//! once goes to one `Store::apply_batch` call, i.e. one transaction that also records
//! `last_applied` (and the membership), so a crash can neither apply an entry
//! twice nor skip one.
//!
//! Snapshots are files ([`crate::store::snapshot_file`]'s format) in the
//! node's snapshot directory, streamed record by record: a build writes one
//! from a consistent read, a receive writes the chunks openraft hands over
//! into one, an install imports one in bounded batches. Scratch files are
//! anonymous or removed on drop, and the durable copy of a snapshot is in
//! the database; the current one also has a file of its own, for sending
//! ([`super::snapshot_files`]).

use std::path::PathBuf;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, BufReader, BufWriter};

use super::codec;
use super::retry::with_retry;
use super::snapshot_files::SnapshotFiles;
use super::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::domain::{BatchResults, Command};
use crate::store::snapshot_file::legacy;
use crate::store::{ImportOptions, SmMeta, SnapshotFileError, Store, StoreError};

/// openraft's state machine over a [`Store`].
#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    /// The encoded membership as last applied; rewritten with every batch so
    /// that `sm_meta` is always whole.
    membership: Option<Vec<u8>>,
    /// Where snapshot files live while they are built, sent or installed.
    files: SnapshotFiles,
}

/// Read-ahead and write-behind of snapshot files.
const FILE_BUFFER_BYTES: usize = 1 << 16;

fn io_err(e: std::io::Error) -> StoreError {
    SnapshotFileError::Io(e).into()
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
    /// The state machine over `store`, with its snapshot files in
    /// `snapshot_dir` (created if missing; `<data-dir>/snapshots`).
    pub async fn new(store: Store, snapshot_dir: PathBuf) -> Result<Self, StorageError> {
        let files = SnapshotFiles::open(snapshot_dir).await.map_err(read_err)?;
        let meta = store.sm_meta().await.map_err(read_err)?;
        Ok(Self {
            store,
            membership: meta.membership,
            files,
        })
    }

    /// `snapshot` in the current format: a legacy blob (from a node of a
    /// release before snapshot format 1) is converted into a new file.
    async fn upgraded(&self, mut snapshot: File) -> Result<File, StoreError> {
        snapshot.rewind().await.map_err(io_err)?;
        let mut first = [0u8; 1];
        let n = snapshot.read(&mut first).await.map_err(io_err)?;
        if n == 0 || !legacy::is_legacy(first[0]) {
            return Ok(snapshot);
        }
        tracing::info!("converting a snapshot of the format before version 1");
        snapshot.rewind().await.map_err(io_err)?;
        let converted = self.files.anonymous().await?;
        let out = BufWriter::with_capacity(FILE_BUFFER_BYTES, converted);
        let (out, _) = legacy::convert(snapshot.into_std().await, out).await?;
        Ok(out.into_inner())
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
        // One consistent read of the tables and the last_applied they
        // reflect, streamed into a file.
        let files = &self.files;
        let store = &self.store;
        let (file, summary, scratch) = with_retry("write_snapshot", || async {
            let (file, scratch) = files.scratch().await?;
            let out = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
            let (out, summary) = store.write_snapshot(out).await?;
            Ok((out.into_inner(), summary, scratch))
        })
        .await
        .map_err(snapshot_err)?;
        let (last_log_id, last_membership) = Self::decode_meta(&summary.meta)?;
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
        tracing::info!(snapshot = %meta.snapshot_id, tasks = summary.tasks, bytes = summary.bytes, "built a snapshot");
        let meta_bytes = codec::encode(&meta).map_err(snapshot_err)?;
        // An install may have stored a newer snapshot meanwhile: keep it.
        let replaces = |stored: &[u8]| {
            codec::decode::<SnapshotMeta>(stored).map_or(true, |s| s.last_log_id < meta.last_log_id)
        };
        let stored = with_retry("put_snapshot", || async {
            let mut file = file.try_clone().await.map_err(io_err)?;
            file.rewind().await.map_err(io_err)?;
            let input = BufReader::with_capacity(FILE_BUFFER_BYTES, file);
            store.put_snapshot(&meta_bytes, input, replaces).await
        })
        .await
        .map_err(snapshot_err)?;
        if stored {
            files
                .keep(&file, scratch, &meta.snapshot_id)
                .await
                .map_err(snapshot_err)?;
        }
        let mut file = file;
        file.rewind().await.map_err(snapshot_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<File>, StorageError> {
        // Its import, not the log store, purges the log it covers.
        self.store.expect_import();
        let file = self.files.anonymous().await.map_err(snapshot_err)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<File>,
    ) -> Result<(), StorageError> {
        let (last_applied, _) = self.applied_state().await?;
        if last_applied >= meta.last_log_id && last_applied.is_some() {
            // Installing it would move the state machine back in time.
            tracing::warn!(snapshot = %meta.snapshot_id, "ignoring a snapshot older than last_applied");
            return Ok(());
        }
        let file = self.upgraded(*snapshot).await.map_err(snapshot_err)?;
        // The snapshot's own meta is the truth about what it covers.
        let sm_meta = SmMeta {
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
        let options = ImportOptions {
            meta: Some(&sm_meta),
            snapshot_meta: &meta_bytes,
            purge: purge
                .as_ref()
                .map(|(upto, purged)| (*upto, purged.as_slice())),
        };
        let store = &self.store;
        let file = &file;
        let summary = with_retry("import_snapshot", || async move {
            let mut file = file.try_clone().await.map_err(io_err)?;
            store.import_snapshot(&mut file, options).await
        })
        .await
        .map_err(snapshot_err)?;
        tracing::info!(snapshot = %meta.snapshot_id, tasks = summary.tasks, bytes = summary.bytes, "installed a snapshot");
        self.membership = sm_meta.membership;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let store = &self.store;
        let files = &self.files;
        let Some(meta_bytes) = with_retry("snapshot_meta", || store.snapshot_meta())
            .await
            .map_err(read_err)?
        else {
            return Ok(None);
        };
        let meta: SnapshotMeta = codec::decode(&meta_bytes).map_err(read_err)?;
        if let Some(file) = files.current(&meta.snapshot_id).await {
            return Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(file),
            }));
        }
        // No copy yet (an installed snapshot, or the first send since a
        // restart): rebuild it from the database, a chunk at a time.
        let stored = with_retry("read_snapshot", || async {
            let (file, scratch) = files.scratch().await?;
            let mut out = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
            Ok(store
                .read_snapshot_into(&mut out)
                .await?
                .map(|meta| (meta, out.into_inner(), scratch)))
        })
        .await
        .map_err(read_err)?;
        let Some((meta_bytes, mut file, scratch)) = stored else {
            return Ok(None);
        };
        // The stored snapshot may have changed since its meta was read.
        let meta: SnapshotMeta = codec::decode(&meta_bytes).map_err(read_err)?;
        // A legacy snapshot stored before an upgrade goes out as it is:
        // receivers of this release convert it, those of the last one still
        // read it.
        if let Err(e) = files.keep(&file, scratch, &meta.snapshot_id).await {
            tracing::warn!(error = %e, "could not keep a copy of the current snapshot");
        }
        file.rewind().await.map_err(read_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

#[cfg(test)]
mod tests;
