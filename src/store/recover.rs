//! The store's side of `taskd recover --force-new-cluster` and `taskd
//! restore`: forget the
//! Raft group, keep the state machine.

use super::{Store, StoreError};

impl Store {
    /// Deletes everything that ties this database to its old Raft group —
    /// the log, the vote, the commit and purge marks, the stored snapshot,
    /// and the applied position and membership — in one transaction, and
    /// keeps the tasks and request ids. Started with `--initial-cluster`
    /// naming only itself, the node then founds a new one-node cluster on
    /// this state.
    pub async fn forget_raft_group(&self) -> Result<(), StoreError> {
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            for table in [
                "raft_log",
                "raft_state",
                "snapshot",
                "snapshot_data",
                "sm_meta",
            ] {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

impl Store {
    /// Whether this database holds nothing of a node yet: no task, request
    /// id, log entry, vote or applied position (a restore's precondition).
    pub async fn is_pristine(&self) -> Result<bool, StoreError> {
        for table in ["tasks", "request_ids", "raft_log", "raft_state", "sm_meta"] {
            let (n,): (i64,) = on_pool!(self, read, |pool| {
                sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
                    .fetch_one(pool)
                    .await?
            });
            if n > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Store {
    /// Seeds this (pristine) database with the tasks and request ids of
    /// the backup file at `path`, in one transaction after the whole file
    /// verified, with no Raft state: no applied position, no membership, no
    /// stored snapshot.
    pub async fn restore_from(&self, path: &std::path::Path) -> Result<(), StoreError> {
        let nothing = super::SmMeta::default();
        let options = super::ImportOptions {
            meta: Some(&nothing),
            snapshot_meta: &[],
            purge: None,
        };
        self.import_snapshot_from(path, options).await.map(drop)
    }
}
