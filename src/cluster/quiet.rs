//! No elections from a node while it receives a snapshot.
//!
//! A follower far behind gets a snapshot; while the chunks stream and
//! while the last one is installed (seconds for a big state: one import
//! transaction), the leader's replication to it sends nothing else, so no
//! heartbeat renews its lease and its election timer fires. openraft 0.9
//! has no pre-vote: the follower stands, its higher term deposes the
//! leader (it cannot win, its log is behind), the snapshot starts over,
//! and so on — a vote storm that stops the cluster's writes. So a node
//! stops calling elections while a snapshot arrives, and for a grace
//! period after its last chunk, then calls them again. Safety does not
//! depend on it: only this node's own candidacy is held back; the others
//! still elect a leader if the real one dies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::raft::Raft;

#[derive(Default)]
struct State {
    /// InstallSnapshot calls being served.
    in_flight: usize,
    /// When the last one ended.
    last_end: Option<Instant>,
    /// Whether elections are off because of a snapshot.
    quiet: bool,
}

/// The election switch of one node, shared by its InstallSnapshot calls.
#[derive(Clone)]
pub struct SnapshotQuiet {
    raft: Raft,
    state: Arc<Mutex<State>>,
}

/// Held while one InstallSnapshot call is served.
pub struct Receiving {
    state: Arc<Mutex<State>>,
}

impl SnapshotQuiet {
    /// Starts the watchdog that turns elections back on `grace` after the
    /// last snapshot chunk; call inside a tokio runtime.
    pub fn start(raft: Raft, grace: Duration) -> Self {
        let quiet = Self {
            raft,
            state: Arc::default(),
        };
        let watched = quiet.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(grace / 4);
            loop {
                tick.tick().await;
                let wake = {
                    let mut s = watched.state.lock().unwrap_or_else(|e| e.into_inner());
                    let done = s.in_flight == 0 && s.last_end.is_none_or(|t| t.elapsed() >= grace);
                    let wake = s.quiet && done;
                    if wake {
                        s.quiet = false;
                    }
                    wake
                };
                if wake {
                    tracing::info!("snapshot received: this node may call elections again");
                    watched.raft.runtime_config().elect(true);
                }
                if Arc::strong_count(&watched.state) == 1 {
                    return; // every handle is gone
                }
            }
        });
        quiet
    }

    /// Marks a snapshot chunk being received: no elections until `grace`
    /// after the last such call ends.
    pub fn receiving(&self) -> Receiving {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.in_flight += 1;
        if !s.quiet {
            s.quiet = true;
            tracing::info!("receiving a snapshot: this node calls no elections meanwhile");
            self.raft.runtime_config().elect(false);
        }
        Receiving {
            state: self.state.clone(),
        }
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.in_flight -= 1;
        s.last_end = Some(Instant::now());
    }
}
