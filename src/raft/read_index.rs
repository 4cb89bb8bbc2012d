//! Read indexes for linearizable reads on every node, one quorum round
//! shared by every read that waits for it.
//!
//! A linearizable read needs a log index that covers every write
//! acknowledged before the read began: the leader's commit index, taken
//! after the leader has confirmed with a quorum that it still leads. The
//! reader then waits until its own node has applied that far and reads its
//! own database. On the leader the index comes from openraft's
//! `get_read_log_id`; a follower asks the leader over `RaftService/ReadIndex`,
//! so followers serve linearizable reads too and read throughput grows with
//! the number of nodes.
//!
//! Rounds are single-flight ([`Batcher`]): while one confirmation (or one
//! request to the leader) is in flight, the reads that arrive wait, and the
//! next round serves all of them. A read that arrives during a round never
//! uses that round's answer: the index must be taken after the read began.

use std::sync::{Arc, Mutex};

use openraft::error::{CheckIsLeaderError, RaftError};

use super::batcher::{BatchLimits, Batcher};
use super::{NodeId, Raft, QUORUM_WAIT};
use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::ReadIndexRequest;
use crate::security::peer::{Dialer, PeerChannel};

/// Who wants a read index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// A read on this node: served by this node's leader round, or asked of the leader.
    Local,
    /// Another node's `ReadIndex` request: only a leader answers it.
    Peer,
}

/// Why no read index was had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadIndexError {
    /// A peer asked, and this node does not lead.
    #[error("node {0} does not lead")]
    NotLeader(NodeId),
    /// This node knows no leader.
    #[error("no leader is known")]
    NoLeader,
    /// This node believed it led, and Raft found it does not any more.
    #[error("leadership was lost")]
    LeadershipLost,
    /// The node believed to lead could not give a read index.
    #[error("leader {leader} could not give a read index: {why}")]
    LeaderFailed { leader: NodeId, why: String },
    #[error("no quorum: {0}")]
    NoQuorum(String),
    #[error("raft has stopped: {0}")]
    Stopped(String),
}

type RoundResult = Result<u64, ReadIndexError>;

/// Reads far outnumber what one round needs to carry: no real bound.
const LIMITS: BatchLimits = BatchLimits {
    max_items: 1 << 16,
    max_weight: usize::MAX,
};

/// Shared read-index rounds of one node. Cheap to clone.
#[derive(Clone)]
pub struct ReadIndex {
    batcher: Batcher<Asker, RoundResult>,
}

impl ReadIndex {
    /// Starts the rounds of node `id`; call inside a tokio runtime.
    pub fn start(id: NodeId, raft: Raft, dialer: Dialer) -> Self {
        let leader_client = Arc::new(Mutex::new(None));
        let batcher = Batcher::start(
            LIMITS,
            |_| 1,
            move |askers: Vec<Asker>| {
                let (raft, leader_client) = (raft.clone(), Arc::clone(&leader_client));
                let dialer = dialer.clone();
                async move { round(id, &raft, &dialer, &leader_client, askers).await }
            },
        );
        Self { batcher }
    }

    /// A log index that covers every write acknowledged before this call.
    pub async fn read_index(&self, asker: Asker) -> RoundResult {
        self.batcher
            .call(asker)
            .await
            .unwrap_or_else(|| Err(ReadIndexError::Stopped("read-index rounds stopped".into())))
    }
}

/// The cached client of the node last asked for a read index.
type LeaderClient = Mutex<Option<(String, RaftServiceClient<PeerChannel>)>>;

async fn round(
    id: NodeId,
    raft: &Raft,
    dialer: &Dialer,
    leader_client: &LeaderClient,
    askers: Vec<Asker>,
) -> Vec<RoundResult> {
    let (leader, addr) = {
        let m = raft.metrics();
        let m = m.borrow();
        let addr = m.current_leader.and_then(|l| {
            let node = m.membership_config.membership().get_node(&l)?;
            Some(node.addr.clone())
        });
        (m.current_leader, addr)
    };
    let answer = match (leader, addr) {
        (Some(leader), _) if leader == id => leader_round(raft).await,
        _ if askers.iter().all(|a| *a == Asker::Peer) => Err(ReadIndexError::NotLeader(id)),
        (Some(leader), Some(addr)) => ask_leader(leader, &addr, dialer, leader_client).await,
        _ => Err(ReadIndexError::NoLeader),
    };
    let led_here = leader == Some(id);
    askers
        .into_iter()
        .map(|asker| match asker {
            Asker::Peer if !led_here => Err(ReadIndexError::NotLeader(id)),
            Asker::Peer if answer == Err(ReadIndexError::LeadershipLost) => {
                Err(ReadIndexError::NotLeader(id))
            }
            _ => answer.clone(),
        })
        .collect()
}

/// One quorum confirmation on this node, which believes it leads.
async fn leader_round(raft: &Raft) -> RoundResult {
    match tokio::time::timeout(QUORUM_WAIT, raft.get_read_log_id()).await {
        Err(_) => Err(ReadIndexError::NoQuorum(format!(
            "leadership not confirmed within {}s",
            QUORUM_WAIT.as_secs()
        ))),
        Ok(Ok((read_log_id, _applied))) => Ok(read_log_id.map_or(0, |l| l.index)),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => {
            Err(ReadIndexError::LeadershipLost)
        }
        Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
            Err(ReadIndexError::NoQuorum(e.to_string()))
        }
        Ok(Err(RaftError::Fatal(fatal))) => Err(ReadIndexError::Stopped(fatal.to_string())),
    }
}

/// One `ReadIndex` request to the leader at `addr`.
async fn ask_leader(
    leader: NodeId,
    addr: &str,
    dialer: &Dialer,
    cached: &LeaderClient,
) -> RoundResult {
    let failed = |why: String| ReadIndexError::LeaderFailed { leader, why };
    let mut client = {
        let mut cached = cached.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((a, client)) if a == addr => client.clone(),
            _ => {
                let client = RaftServiceClient::new(
                    dialer.channel(addr).map_err(|e| failed(e.to_string()))?,
                );
                *cached = Some((addr.to_string(), client.clone()));
                client
            }
        }
    };
    let mut request = tonic::Request::new(ReadIndexRequest {});
    request.set_timeout(QUORUM_WAIT);
    match client.read_index(request).await {
        Ok(reply) => Ok(reply.into_inner().read_index),
        Err(status) => Err(failed(format!("{:?}: {}", status.code(), status.message()))),
    }
}
