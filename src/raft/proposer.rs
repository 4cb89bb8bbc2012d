//! The proposer: the leader's writes, batched into Raft entries.
//!
//! While one proposal is in flight (appended, replicated, committed and
//! applied), the writes that arrive wait; then all of them go together as
//! ONE entry: one log append, one AppendEntries per follower, one apply
//! transaction. No timer: a lone write goes at once. Each write gets its own
//! result back (version checks run in order at apply, and a rejected write
//! rejects only itself).

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};

use super::batcher::{BatchLimits, Batcher};
use super::{NodeId, Raft, QUORUM_WAIT};
use crate::domain::{Command, CommandResult, WriteBatch};

/// The bounds of one entry. 1 MiB keeps an AppendEntries of
/// `max_payload_entries` entries far below the gRPC message limit.
pub const LIMITS: BatchLimits = BatchLimits {
    max_items: 1024,
    max_weight: 1 << 20,
};

/// Why a proposal did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node does not lead (any more); the leader's id and address if known.
    #[error("not the leader")]
    NotLeader(Option<(NodeId, String)>),
    /// The Raft core has stopped (shutdown or a storage failure).
    #[error("raft has stopped: {0}")]
    Stopped(String),
    /// The entry did not commit within [`QUORUM_WAIT`]: it may still.
    #[error("no commit within {}s", QUORUM_WAIT.as_secs())]
    NoQuorum,
    #[error("{0}")]
    Internal(String),
}

pub type Proposal = Result<CommandResult, ProposeError>;

/// The queue into the leader's proposing task. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    batcher: Batcher<Command, Proposal>,
    /// Each proposal holds it shared while it is in flight; a leadership
    /// transfer holds it exclusively, so that the log stops growing.
    gate: Arc<RwLock<()>>,
}

/// While alive, no new entry is proposed (see [`Proposer::hold`]).
pub type Held = OwnedRwLockWriteGuard<()>;

impl Proposer {
    /// Starts the proposing task of `raft`; call inside a tokio runtime.
    pub fn start(raft: Raft) -> Self {
        let gate = Arc::new(RwLock::new(()));
        let batch_gate = gate.clone();
        let node = raft.metrics().borrow().id;
        let batcher = Batcher::start(LIMITS, Command::weight, move |writes: Vec<Command>| {
            let raft = raft.clone();
            let gate = batch_gate.clone();
            async move {
                let _open = gate.read().await;
                crate::metrics::proposal_batch(node, writes.len());
                propose_batch(&raft, writes).await
            }
        });
        Self { batcher, gate }
    }

    /// Waits for the proposal in flight, then holds every new one until
    /// the guard is dropped: the leader's log stops growing, so that a
    /// transfer target can catch up with all of it. Held writes are not
    /// lost: they are proposed when the guard goes (and, if leadership
    /// moved meanwhile, answered NotLeader and forwarded).
    pub async fn hold(&self) -> Held {
        self.gate.clone().write_owned().await
    }

    /// Proposes `command` in the next entry and waits for its own result.
    pub async fn propose(&self, command: Command) -> Proposal {
        self.batcher
            .call(command)
            .await
            .unwrap_or_else(|| Err(ProposeError::Stopped("the proposer has stopped".into())))
    }
}

async fn propose_batch(raft: &Raft, writes: Vec<Command>) -> Vec<Proposal> {
    let n = writes.len();
    // Every caller gives up after QUORUM_WAIT at the latest, so waiting
    // longer would only hold back the writes queued behind this entry.
    let written = tokio::time::timeout(QUORUM_WAIT, raft.client_write(WriteBatch { writes })).await;
    let error = match written {
        Ok(Ok(response)) if response.data.results.len() == n => {
            return response.data.results.into_iter().map(Ok).collect();
        }
        Ok(Ok(response)) => ProposeError::Internal(format!(
            "an entry of {n} writes returned {} results",
            response.data.results.len()
        )),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            ProposeError::NotLeader(f.leader_id.zip(f.leader_node.map(|node| node.addr)))
        }
        Ok(Err(RaftError::APIError(e))) => ProposeError::Internal(e.to_string()),
        Ok(Err(RaftError::Fatal(fatal))) => ProposeError::Stopped(fatal.to_string()),
        Err(_) => ProposeError::NoQuorum,
    };
    vec![Err(error); n]
}
