//! The store's side of `taskd recover --force-new-cluster`: forget the
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
