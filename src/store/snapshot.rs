//! The state machine as a whole: its metadata, streaming it out as a
//! snapshot file (to build a snapshot or a backup) and replacing it with
//! one (to install a snapshot or restore a backup). The file format is
//! [`super::snapshot_file`]'s.
//!
//! Memory stays bounded on both paths: a build reads keyset pages of
//! [`EXPORT_PAGE_ROWS`] rows, an import writes batches of at most
//! [`IMPORT_BATCH_ROWS`] rows or [`IMPORT_BATCH_BYTES`].
//!
//! An import is ONE transaction, fed batch by batch: the old state stays
//! whole until it commits, so a crash mid-install (or a damaged file,
//! found at its checksum) leaves the old state intact. Staging tables
//! swapped in by a rename would keep the write transaction shorter, but a
//! rename is DDL, which MySQL commits on its own, outside the transaction
//! that must also move `last_applied` and purge the log. The cost is one
//! long write transaction: on SQLite it holds the single write connection
//! while it runs (the node is installing a snapshot, so it has nothing of
//! its own to append meanwhile).

use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncSeek, AsyncSeekExt, AsyncWrite, BufReader};

use crate::domain::Task;
use crate::failpoint;

use super::pool::{BeginSnapshot, Stmt};
use super::rows::{
    write_request_ids, write_sm_meta, write_tasks, RequestIdDbRow, TaskRow, REQUEST_ID_COLUMNS,
    TASK_COLUMNS,
};
use super::snapshot_file::{self, Record, SnapshotReader, SnapshotSummary, SnapshotWriter};
use super::{RequestIdRow, SmMeta, StateDump, Store, StoreError};

/// Rows per keyset page read while a snapshot is built.
pub const EXPORT_PAGE_ROWS: i64 = 1000;
/// Rows per batch written while a snapshot is imported.
pub const IMPORT_BATCH_ROWS: usize = 1000;
/// Record bytes per batch written while a snapshot is imported.
pub const IMPORT_BATCH_BYTES: usize = 1 << 20;
/// Read-ahead of snapshot files.
const FILE_BUFFER_BYTES: usize = 1 << 16;

#[derive(sqlx::FromRow)]
struct SmMetaRow {
    last_applied: Option<Vec<u8>>,
    membership: Option<Vec<u8>>,
}

impl From<SmMetaRow> for SmMeta {
    fn from(row: SmMetaRow) -> SmMeta {
        SmMeta {
            last_applied: row.last_applied,
            membership: row.membership,
        }
    }
}

const SELECT_SM_META: &str = "SELECT last_applied, membership FROM sm_meta WHERE id = 1";

/// How [`Store::import_snapshot`] records what it installed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions<'a> {
    /// The `sm_meta` to record; `None`: the file header's. (An installed
    /// snapshot's own openraft meta is the truth about what it covers.)
    pub meta: Option<&'a SmMeta>,
    /// Stored as the meta of the node's current snapshot (opaque); empty:
    /// the file is not kept as the node's snapshot (a restore).
    pub snapshot_meta: &'a [u8],
    /// `Some((upto, purged))`: the same transaction deletes the log up to
    /// `upto` and records raft_state "purged", so the log the snapshot
    /// covers goes exactly when the snapshot is in.
    pub purge: Option<(u64, &'a [u8])>,
}

/// The records of an import not yet written.
#[derive(Default)]
struct ImportBatch {
    tasks: Vec<Task>,
    request_ids: Vec<RequestIdRow>,
    bytes: usize,
}

impl ImportBatch {
    fn push(&mut self, record: Record) {
        match record {
            Record::Task(task) => {
                self.bytes += task.title.len() + task.description.len() + task.id.len();
                self.tasks.push(task);
            }
            Record::RequestId(row) => {
                self.bytes += row.request_id.len() + row.fingerprint.len() + 64;
                self.request_ids.push(row);
            }
        }
    }

    fn len(&self) -> usize {
        self.tasks.len() + self.request_ids.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn full(&self) -> bool {
        self.len() >= IMPORT_BATCH_ROWS || self.bytes >= IMPORT_BATCH_BYTES
    }

    fn stmts(&self) -> Result<Vec<Stmt<'_>>, StoreError> {
        let tasks: Vec<&Task> = self.tasks.iter().collect();
        let mut stmts = write_tasks(&tasks)?;
        let rows: Vec<&RequestIdRow> = self.request_ids.iter().collect();
        stmts.extend(write_request_ids(&rows)?);
        Ok(stmts)
    }

    fn clear(&mut self) {
        self.tasks.clear();
        self.request_ids.clear();
        self.bytes = 0;
    }
}

async fn rewind<F: AsyncSeek + Unpin>(file: &mut F) -> Result<(), StoreError> {
    file.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(snapshot_file::SnapshotFileError::from)?;
    Ok(())
}

impl Store {
    /// Notes that a snapshot is being received: until its import commits,
    /// a log purge past `last_applied` is the import's to do.
    pub fn expect_import(&self) {
        self.import_pending.store(true, Ordering::SeqCst);
    }

    /// Whether a snapshot is being received and not yet imported.
    pub fn import_pending(&self) -> bool {
        self.import_pending.load(Ordering::SeqCst)
    }

    /// What the state machine last applied; the default before any apply.
    pub async fn sm_meta(&self) -> Result<SmMeta, StoreError> {
        let row: Option<SmMetaRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(SELECT_SM_META).fetch_optional(pool).await?
        });
        Ok(row.map(SmMeta::from).unwrap_or_default())
    }

    /// Writes `sm_meta`, tasks and request ids as of one instant (one
    /// snapshot read transaction, while writes go on) to `out` as a snapshot
    /// file, a keyset page at a time; flushes `out` and hands it back.
    pub async fn write_snapshot<W: AsyncWrite + Unpin>(
        &self,
        out: W,
    ) -> Result<(W, SnapshotSummary), StoreError> {
        on_pool!(self, read, |pool| {
            let mut tx = pool.begin_snapshot().await?;
            let meta: Option<SmMetaRow> = sqlx::query_as(SELECT_SM_META)
                .fetch_optional(&mut *tx)
                .await?;
            let meta = meta.map(SmMeta::from).unwrap_or_default();
            let mut writer = SnapshotWriter::new(out, &meta).await?;
            let mut after = String::new();
            loop {
                // "" sorts before every id: the first page needs no other SQL.
                let page: Vec<TaskRow> = sqlx::query_as(&format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE id > ? ORDER BY id LIMIT ?"
                ))
                .bind(&after)
                .bind(EXPORT_PAGE_ROWS)
                .fetch_all(&mut *tx)
                .await?;
                let Some(last) = page.len().checked_sub(1) else {
                    break;
                };
                for (i, row) in page.into_iter().enumerate() {
                    let task = Task::try_from(row)?;
                    writer.task(&task).await?;
                    if i == last {
                        after = task.id;
                    }
                }
            }
            let mut after = String::new();
            loop {
                let page: Vec<RequestIdDbRow> = sqlx::query_as(&format!(
                    "SELECT {REQUEST_ID_COLUMNS} FROM request_ids WHERE request_id > ? \
                     ORDER BY request_id LIMIT ?"
                ))
                .bind(&after)
                .bind(EXPORT_PAGE_ROWS)
                .fetch_all(&mut *tx)
                .await?;
                let Some(last) = page.len().checked_sub(1) else {
                    break;
                };
                for (i, row) in page.into_iter().enumerate() {
                    let row = RequestIdRow::try_from(row)?;
                    writer.request_id(&row).await?;
                    if i == last {
                        after = row.request_id;
                    }
                }
            }
            tx.commit().await?;
            Ok(writer.finish().await?)
        })
    }

    /// [`Store::write_snapshot`] into a new file at `path` (a backup), synced.
    pub async fn write_snapshot_to(
        &self,
        path: &std::path::Path,
    ) -> Result<SnapshotSummary, StoreError> {
        let io = |e| StoreError::from(snapshot_file::SnapshotFileError::Io(e));
        let file = tokio::fs::File::create(path).await.map_err(io)?;
        let out = tokio::io::BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
        let (out, summary) = self.write_snapshot(out).await?;
        out.into_inner().sync_all().await.map_err(io)?;
        Ok(summary)
    }

    /// The whole state machine in memory: for tests and small states only
    /// (snapshots stream with [`Store::write_snapshot`]).
    pub async fn export(&self) -> Result<StateDump, StoreError> {
        on_pool!(self, read, |pool| {
            let mut tx = pool.begin_snapshot().await?;
            let meta: Option<SmMetaRow> = sqlx::query_as(SELECT_SM_META)
                .fetch_optional(&mut *tx)
                .await?;
            let tasks: Vec<TaskRow> =
                sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks ORDER BY id"))
                    .fetch_all(&mut *tx)
                    .await?;
            let request_ids: Vec<RequestIdDbRow> = sqlx::query_as(&format!(
                "SELECT {REQUEST_ID_COLUMNS} FROM request_ids ORDER BY request_id"
            ))
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(StateDump {
                meta: meta.map(SmMeta::from).unwrap_or_default(),
                tasks: tasks
                    .into_iter()
                    .map(Task::try_from)
                    .collect::<Result<_, _>>()?,
                request_ids: request_ids
                    .into_iter()
                    .map(RequestIdRow::try_from)
                    .collect::<Result<_, _>>()?,
            })
        })
    }

    /// Replaces all state-machine tables (tasks, labels, request ids,
    /// `sm_meta`) with the snapshot file `file` (current format) and makes
    /// it the node's stored snapshot. The file is verified whole first,
    /// then stored chunk by chunk (outside the transaction, see
    /// `snapshot_data`), then imported in one transaction of bounded
    /// batches, which also publishes the stored copy and purges (see
    /// [`ImportOptions`]).
    pub async fn import_snapshot<F>(
        &self,
        file: &mut F,
        options: ImportOptions<'_>,
    ) -> Result<SnapshotSummary, StoreError>
    where
        F: AsyncRead + AsyncSeek + Unpin,
    {
        failpoint::hit(failpoint::SNAPSHOT_IMPORT);
        // A damaged file is refused before anything is written.
        rewind(file).await?;
        let summary =
            snapshot_file::verify(BufReader::with_capacity(FILE_BUFFER_BYTES, &mut *file)).await?;
        rewind(file).await?;
        // An empty snapshot_meta (a restore) keeps no copy as the node's snapshot.
        let publish = !options.snapshot_meta.is_empty();
        let generation = if publish {
            self.stage_snapshot_data(BufReader::with_capacity(FILE_BUFFER_BYTES, &mut *file))
                .await?
        } else {
            0
        };
        rewind(file).await?;
        let mut reader =
            SnapshotReader::open(BufReader::with_capacity(FILE_BUFFER_BYTES, &mut *file)).await?;
        let meta = options.meta.unwrap_or(reader.meta()).clone();
        let deletes = [
            Stmt::new("DELETE FROM task_labels", vec![]),
            Stmt::new("DELETE FROM tasks", vec![]),
            Stmt::new("DELETE FROM request_ids", vec![]),
            Stmt::new("DELETE FROM sm_meta", vec![]),
        ];
        let mut finals = vec![write_sm_meta(&meta)];
        if publish {
            finals.push(Store::publish_snapshot_stmt(
                options.snapshot_meta,
                generation,
            ));
        }
        if let Some((upto, purged)) = options.purge {
            finals.extend(Store::purge_stmts(upto, purged));
        }
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            exec_stmts!(tx, deletes);
            let mut batch = ImportBatch::default();
            loop {
                let record = reader.next().await?;
                let end = record.is_none();
                if let Some(record) = record {
                    batch.push(record);
                }
                if batch.full() || (end && !batch.is_empty()) {
                    let stmts = batch.stmts()?;
                    exec_stmts!(tx, stmts);
                    drop(stmts);
                    batch.clear();
                    failpoint::hit(failpoint::SNAPSHOT_IMPORT_BATCH);
                }
                if end {
                    break;
                }
            }
            exec_stmts!(tx, finals);
            tx.commit().await?;
        });
        self.import_pending.store(false, Ordering::SeqCst);
        self.drop_unpublished_snapshot_data().await?;
        Ok(summary)
    }

    /// [`Store::import_snapshot`] of the file at `path` (a restore).
    pub async fn import_snapshot_from(
        &self,
        path: &std::path::Path,
        options: ImportOptions<'_>,
    ) -> Result<SnapshotSummary, StoreError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(snapshot_file::SnapshotFileError::Io)?;
        self.import_snapshot(&mut file, options).await
    }
}

#[cfg(test)]
mod tests;
