//! The state machine as a whole: its metadata, a consistent dump of its
//! tables (to build a snapshot) and the wholesale replacement of them (to
//! install one).

use std::sync::atomic::Ordering;

use crate::domain::Task;

use super::pool::{BeginSnapshot, Stmt};
use super::rows::{
    write_request_ids, write_sm_meta, write_tasks, RequestIdDbRow, TaskRow, REQUEST_ID_COLUMNS,
    TASK_COLUMNS,
};
use super::{RequestIdRow, SmMeta, StateDump, Store, StoreError};

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

    /// `sm_meta`, tasks and request ids as of one instant, read in one
    /// snapshot transaction while writes go on.
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
    /// `sm_meta`) with `dump` and stores the snapshot blobs, in one
    /// transaction. With `purge = Some((upto, purged))` the same transaction
    /// deletes the log entries up to `upto` and records raft_state "purged"
    /// (the log the snapshot covers goes exactly when the snapshot is in).
    pub async fn import(
        &self,
        dump: &StateDump,
        snapshot_meta: &[u8],
        snapshot_data: &[u8],
        purge: Option<(u64, &[u8])>,
    ) -> Result<(), StoreError> {
        crate::failpoint::hit(crate::failpoint::SNAPSHOT_IMPORT);
        // The blob first, chunk by chunk outside the transaction (see `snapshot_data`).
        let generation = self.stage_snapshot_data(snapshot_data).await?;
        let mut stmts = vec![
            Stmt::new("DELETE FROM task_labels", vec![]),
            Stmt::new("DELETE FROM tasks", vec![]),
            Stmt::new("DELETE FROM request_ids", vec![]),
            Stmt::new("DELETE FROM sm_meta", vec![]),
        ];
        let tasks: Vec<&Task> = dump.tasks.iter().collect();
        stmts.extend(write_tasks(&tasks)?);
        let request_ids: Vec<&RequestIdRow> = dump.request_ids.iter().collect();
        stmts.extend(write_request_ids(&request_ids)?);
        stmts.push(write_sm_meta(&dump.meta));
        stmts.push(Store::publish_snapshot_stmt(snapshot_meta, generation));
        if let Some((upto, purged)) = purge {
            stmts.extend(Store::purge_stmts(upto, purged));
        }
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            exec_stmts!(tx, stmts);
            tx.commit().await?;
        });
        self.import_pending.store(false, Ordering::SeqCst);
        self.drop_unpublished_snapshot_data().await
    }
}

#[cfg(test)]
mod tests;
