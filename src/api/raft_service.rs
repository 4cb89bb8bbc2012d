//! `taskd.v1.RaftService`: openraft's RPCs arriving from peers, the
//! cluster status, and the admin calls (see [`super::admin_service`]).

use tonic::{Request, Response, Status};

use super::admin_service;
use crate::cluster::membership::{members, Role};
use crate::cluster::Cluster;

use crate::failpoint;
use crate::proto::raft_service_server::RaftService;
use crate::proto::{self, NodeRole};
use crate::raft::codec::{self, CodecError, Format, FORMAT_HEADER};
use crate::raft::network::NOT_A_MEMBER_HEADER;
use crate::raft::read_index::{Asker, ReadIndex, ReadIndexError};
use crate::raft::{NodeId, Raft, SnapshotTuning, TypeConfig};
use crate::store::Store;

/// The internal API of one node.
pub struct RaftApi {
    id: NodeId,
    raft: Raft,
    read_index: ReadIndex,
    cluster: Cluster,
    /// Read by `Backup`.
    store: Store,
    /// `InstallSnapshot` chunks reaching past this many bytes are refused.
    max_snapshot_bytes: u64,
}

impl RaftApi {
    pub fn new(
        id: NodeId,
        raft: Raft,
        read_index: ReadIndex,
        cluster: Cluster,
        store: Store,
    ) -> Self {
        Self {
            id,
            raft,
            read_index,
            cluster,
            store,
            max_snapshot_bytes: SnapshotTuning::default().max_bytes,
        }
    }

    /// Refuses snapshots larger than `max` bytes (`--max-snapshot-bytes`).
    pub fn with_max_snapshot_bytes(mut self, max: u64) -> Self {
        self.max_snapshot_bytes = max;
        self
    }
}

/// A peer's payload, in any format this node reads. One in a format it
/// does not know is refused, FAILED_PRECONDITION naming both versions, and
/// never misread.
fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    codec::decode(payload).map_err(|e| {
        let mut status = match e {
            CodecError::UnknownFormat { .. } => {
                tracing::error!(error = %e, "refused a raft payload");
                Status::failed_precondition(format!("raft payload refused: {e}"))
            }
            _ => Status::invalid_argument(format!("undecodable raft payload: {e}")),
        };
        advertise(status.metadata_mut());
        status
    })
}

/// The format to answer `request` in: the newest its sender advertised
/// reading (legacy when it advertised none: an older release).
fn reply_format<T>(request: &Request<T>) -> Format {
    Format::negotiated(
        request
            .metadata()
            .get(FORMAT_HEADER)
            .and_then(|v| v.to_str().ok()),
    )
}

fn encode<T: serde::Serialize>(reply: &T, format: Format) -> Result<Vec<u8>, Status> {
    codec::encode_as(reply, format).map_err(|e| {
        tracing::error!(error = %e, "encoding a raft reply");
        Status::internal("internal error")
    })
}

/// A candidate this node does not count as a member (a removed node that
/// missed its removal, say) is refused: it must not disturb the cluster.
fn check_candidate(raft: &Raft, rpc: &openraft::raft::VoteRequest<NodeId>) -> Result<(), Status> {
    let candidate = rpc.vote.leader_id().voted_for();
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let known = membership.nodes().next().is_none()
        || candidate.is_some_and(|c| membership.get_node(&c).is_some());
    if known {
        return Ok(());
    }
    let mut refused = Status::failed_precondition(format!(
        "node {} is not a member of this cluster (members: {:?}); it was removed, or never joined",
        candidate.unwrap_or(0),
        membership.nodes().map(|(id, _)| *id).collect::<Vec<_>>()
    ));
    refused.metadata_mut().insert(
        NOT_A_MEMBER_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    Err(refused)
}

/// Tells the peer the newest format this node reads.
fn advertise(metadata: &mut tonic::metadata::MetadataMap) {
    metadata.insert(FORMAT_HEADER, (Format::NEWEST as u32).into());
}

fn respond<T>(message: T) -> Response<T> {
    let mut response = Response::new(message);
    advertise(response.metadata_mut());
    response
}

#[tonic::async_trait]
impl RaftService for RaftApi {
    async fn vote(
        &self,
        request: Request<proto::VoteRequest>,
    ) -> Result<Response<proto::VoteResponse>, Status> {
        let format = reply_format(&request);
        let rpc = decode(&request.into_inner().payload)?;
        check_candidate(&self.raft, &rpc)?;
        let reply = self.raft.vote(rpc).await;
        Ok(respond(proto::VoteResponse {
            payload: encode(&reply, format)?,
        }))
    }

    async fn append_entries(
        &self,
        request: Request<proto::AppendEntriesRequest>,
    ) -> Result<Response<proto::AppendEntriesResponse>, Status> {
        let format = reply_format(&request);
        let rpc = decode(&request.into_inner().payload)?;
        let reply = self.raft.append_entries(rpc).await;
        Ok(respond(proto::AppendEntriesResponse {
            payload: encode(&reply, format)?,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<proto::InstallSnapshotRequest>,
    ) -> Result<Response<proto::InstallSnapshotResponse>, Status> {
        let format = reply_format(&request);
        let rpc: openraft::raft::InstallSnapshotRequest<TypeConfig> =
            decode(&request.into_inner().payload)?;
        // openraft writes the chunk at `offset` of the receiving file: an
        // offset from the network must not size it.
        let end = rpc.offset.checked_add(rpc.data.len() as u64);
        if end.is_none_or(|end| end > self.max_snapshot_bytes) {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk at offset {} with {} bytes reaches past the largest snapshot \
                 this node accepts ({} bytes, --max-snapshot-bytes)",
                rpc.offset,
                rpc.data.len(),
                self.max_snapshot_bytes
            )));
        }
        if rpc.offset > 0 {
            failpoint::hit(failpoint::SNAPSHOT_CHUNK_RECEIVED);
        }
        let _quiet = self.cluster.receiving_snapshot();
        let reply = self.raft.install_snapshot(rpc).await;
        Ok(respond(proto::InstallSnapshotResponse {
            payload: encode(&reply, format)?,
        }))
    }

    async fn read_index(
        &self,
        _request: Request<proto::ReadIndexRequest>,
    ) -> Result<Response<proto::ReadIndexResponse>, Status> {
        let term = self.raft.metrics().borrow().current_term;
        match self.read_index.read_index(Asker::Peer).await {
            Ok(read_index) => Ok(Response::new(proto::ReadIndexResponse {
                read_index,
                leader_id: self.id,
                term,
            })),
            Err(e @ (ReadIndexError::NoQuorum(_) | ReadIndexError::Stopped(_))) => {
                Err(Status::unavailable(e.to_string()))
            }
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn get_cluster_status(
        &self,
        _request: Request<proto::GetClusterStatusRequest>,
    ) -> Result<Response<proto::GetClusterStatusResponse>, Status> {
        let m = self.raft.metrics().borrow().clone();
        let role = match self.cluster.role(&m) {
            Role::Leader => NodeRole::Leader,
            Role::Follower => NodeRole::Follower,
            Role::Candidate => NodeRole::Candidate,
            Role::Learner => NodeRole::Learner,
            Role::NotAMember => NodeRole::NotAMember,
        };
        Ok(Response::new(proto::GetClusterStatusResponse {
            node_id: self.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            members: members(&m).iter().map(admin_service::member).collect(),
            role: role.into(),
            not_serving_reason: self.cluster.not_serving_reason(&m).unwrap_or_default(),
        }))
    }

    async fn add_learner(
        &self,
        request: Request<proto::AddLearnerRequest>,
    ) -> Result<Response<proto::AddLearnerResponse>, Status> {
        admin_service::add_learner(&self.cluster, request).await
    }

    async fn change_membership(
        &self,
        request: Request<proto::ChangeMembershipRequest>,
    ) -> Result<Response<proto::ChangeMembershipResponse>, Status> {
        admin_service::change_membership(&self.cluster, request).await
    }

    async fn remove_node(
        &self,
        request: Request<proto::RemoveNodeRequest>,
    ) -> Result<Response<proto::RemoveNodeResponse>, Status> {
        admin_service::remove_node(&self.cluster, request).await
    }

    async fn transfer_leadership(
        &self,
        request: Request<proto::TransferLeadershipRequest>,
    ) -> Result<Response<proto::TransferLeadershipResponse>, Status> {
        admin_service::transfer_leadership(&self.cluster, request).await
    }

    async fn start_election(
        &self,
        request: Request<proto::StartElectionRequest>,
    ) -> Result<Response<proto::StartElectionResponse>, Status> {
        admin_service::start_election(&self.cluster, request).await
    }

    type BackupStream = admin_service::BackupStream;

    async fn backup(
        &self,
        request: Request<proto::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        admin_service::backup(&self.cluster, &self.store, &self.read_index, request).await
    }
}
