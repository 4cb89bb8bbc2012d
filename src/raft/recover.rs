//! `taskd recover --force-new-cluster`: the way out when a majority of the
//! voters is lost for good and nothing can commit.
//!
//! Offline, on one surviving node's database: apply every entry of its
//! local log that it had not applied yet (committed or not: as etcd's
//! `--force-new-cluster` does, the survivor's log is taken as the truth, so
//! writes that were never acknowledged may appear), then forget the Raft
//! group (log, vote, snapshot, membership) and keep the state. Started with
//! `--initial-cluster` naming only itself, the node founds a new one-node
//! cluster that serves that state; others join it as new nodes.
//!
//! Dangerous: writes acknowledged by the lost majority but not replicated to
//! this node are gone, and running it on two survivors makes two clusters.

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::StorageError;
use crate::store::Store;

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Log entries applied that had not been applied before.
    pub applied_entries: u64,
    /// The last log index the state now reflects (0: none).
    pub last_index: u64,
}

/// Entries applied per state-machine transaction.
const APPLY_CHUNK: u64 = 256;

/// Applies the rest of the local log, then forgets the Raft group.
pub async fn force_new_cluster(
    store: &Store,
    data_dir: &std::path::Path,
) -> Result<Recovered, StorageError> {
    let mut state_machine = StateMachine::new(store.clone(), data_dir.join("snapshots")).await?;
    let (last_applied, _) = state_machine.applied_state().await?;
    let mut log = LogStore::new(store.clone());
    let last_log = log.get_log_state().await?.last_log_id;
    let mut reader = log.get_log_reader().await;
    let mut next = last_applied.map_or(0, |l| l.index + 1);
    let end = last_log.map_or(0, |l| l.index + 1);
    let mut applied_entries = 0;
    while next < end {
        let upto = (next + APPLY_CHUNK).min(end);
        let entries = reader.try_get_log_entries(next..upto).await?;
        let n = entries.len() as u64;
        if n == 0 {
            break;
        }
        state_machine.apply(entries).await?;
        applied_entries += n;
        next += n;
    }
    store.forget_raft_group().await.map_err(|e| {
        StorageError::from(openraft::StorageIOError::<super::NodeId>::write(
            openraft::AnyError::new(&e),
        ))
    })?;
    Ok(Recovered {
        applied_entries,
        last_index: next
            .saturating_sub(1)
            .max(last_applied.map_or(0, |l| l.index)),
    })
}
