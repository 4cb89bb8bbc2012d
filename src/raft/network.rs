//! The network between nodes: openraft's RPCs over the internal gRPC
//! `RaftService`, on the same port as the public API.
//!
//! Each payload is an openraft message encoded by [`super::codec`], in the
//! format negotiated with the peer (its module doc has the rule); each
//! reply carries `Result<response, RaftError>` so a remote Raft error reaches
//! openraft as a `RemoteError`, and a transport failure as `Unreachable`
//! (openraft then backs off instead of hammering a dead peer).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{self, Format, FORMAT_HEADER};
use super::{NodeId, TypeConfig};
use crate::proto;
use crate::proto::raft_service_client::RaftServiceClient;
use crate::security::peer::{Dialer, PeerChannel};

/// The largest gRPC message a node sends or accepts: room for a full batch
/// of `max_payload_entries` large tasks, and a snapshot chunk.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The metadata key with which a node marks a vote refused because the
/// candidate is not a member of its cluster (see `api::raft_service`).
pub const NOT_A_MEMBER_HEADER: &str = "x-taskd-not-a-member";

/// The last refusal of this node's votes by peers that do not count it as
/// a member: how a removed node that missed its removal learns of it.
pub type Refusal = Arc<Mutex<Option<String>>>;

/// Peers this node sends no AppendEntries (nor heartbeats) to for now: a
/// leadership transfer lets their leader lease run out so that they may
/// vote for the target (see `cluster::transfer`). A muted peer's call fails
/// at once as unreachable.
pub type Muted = Arc<Mutex<HashSet<NodeId>>>;

/// Makes one [`PeerClient`] per target node.
#[derive(Clone, Default)]
pub struct Network {
    refusal: Refusal,
    muted: Muted,
    dialer: Dialer,
    /// One channel (one HTTP/2 connection) per peer address, shared by every
    /// client openraft makes: it makes a new one for each read-index round
    /// and each election, and a connection each would cost a TCP (and TLS)
    /// handshake every time (measured: with TLS, linearizable reads ran at
    /// 40% of the plaintext rate, the leader busy in ECDH).
    channels: Arc<Mutex<HashMap<String, RaftServiceClient<PeerChannel>>>>,
}

impl Network {
    /// Dials peers with `dialer` (TLS and cluster credentials).
    pub fn new(dialer: Dialer) -> Self {
        Self {
            dialer,
            ..Self::default()
        }
    }

    /// Where refusals of this node's votes are recorded.
    pub fn refusal(&self) -> Refusal {
        self.refusal.clone()
    }

    /// The set of muted peers.
    pub fn muted(&self) -> Muted {
        self.muted.clone()
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let client = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            match channels.get(&node.addr) {
                Some(client) => Ok(client.clone()),
                None => self
                    .dialer
                    .channel(&node.addr)
                    .map(|ch| {
                        let client = RaftServiceClient::new(ch)
                            .max_decoding_message_size(MAX_MESSAGE_BYTES)
                            .max_encoding_message_size(MAX_MESSAGE_BYTES);
                        channels.insert(node.addr.clone(), client.clone());
                        client
                    })
                    .map_err(|e| format!("bad address {:?}: {e}", node.addr)),
            }
        };
        PeerClient {
            target,
            addr: node.addr.clone(),
            client,
            refusal: self.refusal.clone(),
            muted: self.muted.clone(),
            format: Format::Legacy,
        }
    }
}

/// The RPC client for one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Result<RaftServiceClient<PeerChannel>, String>,
    refusal: Refusal,
    muted: Muted,
    /// The payload format of requests to this peer: what its last answer
    /// advertised (legacy until it answers: it may run an older release).
    format: Format,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    fn client(&self) -> Result<RaftServiceClient<PeerChannel>, Unreachable> {
        self.client
            .clone()
            .map_err(|e| Unreachable::new(&std::io::Error::other(e)))
    }

    /// Learns the peer's format from its answer (an error too: an answer
    /// without the header is from an older release, or from no peer at all).
    fn answered<T, E: std::error::Error>(
        &mut self,
        reply: Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let metadata = match &reply {
            Ok(response) => response.metadata(),
            Err(status) => status.metadata(),
        };
        let format = Format::negotiated(metadata.get(FORMAT_HEADER).and_then(|v| v.to_str().ok()));
        if format != self.format {
            tracing::info!(peer = self.target, ?format, "payload format of the peer");
            self.format = format;
        }
        reply
            .map(tonic::Response::into_inner)
            .map_err(status_to_rpc_error)
    }

    fn decode_reply<T, E>(&self, payload: &[u8]) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let reply: Result<T, RaftError<NodeId, E>> =
            codec::decode(payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        reply.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                BasicNode::new(&self.addr),
                e,
            ))
        })
    }
}

fn encode_rpc<T: Serialize>(rpc: &T, format: Format) -> Result<Vec<u8>, NetworkError> {
    codec::encode_as(rpc, format).map_err(|e| NetworkError::new(&e))
}

/// Maps a failed gRPC call: a peer that cannot be reached is `Unreachable`
/// (openraft backs off), anything else a retryable network error.
fn status_to_rpc_error<E: std::error::Error>(
    status: tonic::Status,
) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

/// A request with openraft's deadline, advertising the newest format this node reads.
fn with_deadline<T>(message: T, option: &RPCOption) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(option.hard_ttl());
    request
        .metadata_mut()
        .insert(FORMAT_HEADER, (Format::NEWEST as u32).into());
    request
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        if self
            .muted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&self.target)
        {
            let muted = std::io::Error::other("muted for a leadership transfer");
            return Err(RPCError::Unreachable(Unreachable::new(&muted)));
        }
        let payload = encode_rpc(&rpc, self.format).map_err(RPCError::Network)?;
        let reply = self
            .client()?
            .append_entries(with_deadline(
                proto::AppendEntriesRequest { payload },
                &option,
            ))
            .await;
        let reply = self.answered(reply)?;
        self.decode_reply(&reply.payload)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        if rpc.offset > 0 {
            crate::failpoint::hit(crate::failpoint::SNAPSHOT_CHUNK_SEND);
        }
        let payload = encode_rpc(&rpc, self.format).map_err(RPCError::Network)?;
        let reply = self
            .client()?
            .install_snapshot(with_deadline(
                proto::InstallSnapshotRequest { payload },
                &option,
            ))
            .await;
        let reply = self.answered(reply)?;
        self.decode_reply(&reply.payload)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        let payload = encode_rpc(&rpc, self.format).map_err(RPCError::Network)?;
        let reply = self
            .client()?
            .vote(with_deadline(proto::VoteRequest { payload }, &option))
            .await;
        if let Err(status) = &reply {
            if status.metadata().contains_key(NOT_A_MEMBER_HEADER) {
                let why = format!(
                    "node {} refused its vote: {}",
                    self.target,
                    status.message()
                );
                tracing::warn!(peer = self.target, reason = %status.message(), "this node is not a member of the cluster it knew");
                *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            }
        }
        let reply = self.answered(reply)?;
        self.decode_reply(&reply.payload)
    }
}
