//! One task per node that turns what openraft reports (`raft.metrics()`, a
//! watch of its `RaftMetrics`) and the database pool's state into the
//! gauges of [`crate::metrics`].
//!
//! The commit index is not in openraft 0.9.25's `RaftMetrics`; it comes
//! from the log store, which openraft tells every commit (`save_committed`),
//! on followers too ([`CommitIndex`]).

use std::time::Duration;

use openraft::ServerState;
use tokio::task::JoinHandle;

use super::log_store::CommitIndex;
use super::{NodeId, Raft};
use crate::metrics::{self, RaftGauges};
use crate::store::Store;

/// How often gauges are refreshed when openraft reports nothing new (the
/// pool's connections, a commit not yet applied).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The running task; dropping it stops it.
pub struct GaugesTask(JoinHandle<()>);

impl Drop for GaugesTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts following `raft` for node `id`; call inside a tokio runtime.
pub fn spawn(id: NodeId, raft: Raft, committed: CommitIndex, store: Store) -> GaugesTask {
    GaugesTask(tokio::spawn(follow(id, raft, committed, store)))
}

async fn follow(id: NodeId, raft: Raft, committed: CommitIndex, store: Store) {
    let mut changes = raft.metrics();
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_leader = None;
    loop {
        let (gauges, leader) = {
            let m = changes.borrow_and_update();
            // Entries from the first not purged to the last: an unpurged
            // log starts at index 0.
            let first = m.purged.map_or(0, |p| p.index + 1);
            let next = m.last_log_index.map_or(0, |l| l + 1);
            let applied_index = m.last_applied.map_or(0, |l| l.index);
            let gauges = RaftGauges {
                term: m.current_term,
                is_leader: m.state == ServerState::Leader,
                // An installed snapshot moves applied without a commit call.
                commit_index: committed.get().max(applied_index),
                applied_index,
                log_entries: next.saturating_sub(first),
                snapshot_last_index: m.snapshot.map_or(0, |s| s.index),
            };
            (gauges, m.current_leader)
        };
        metrics::raft(id, &gauges);
        if leader != last_leader {
            match leader {
                Some(leader) => {
                    metrics::leader_changed(id);
                    tracing::info!(node = id, term = gauges.term, leader, "leader known");
                }
                None => tracing::info!(node = id, term = gauges.term, "no leader known"),
            }
        }
        last_leader = leader;
        let pool = store.pool_connections();
        metrics::db_pool(id, pool.in_use, pool.idle);
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = refresh.tick() => {}
        }
    }
}
