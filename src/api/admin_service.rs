//! The admin calls of `taskd.v1.RaftService`: membership and leadership.
//!
//! Each runs on the leader ([`crate::cluster`] does the work); any other
//! node forwards the call there, as TaskService writes are forwarded,
//! with the same hop count so that a call chasing a moving leader ends.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use crate::security::peer::PeerChannel;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::error::ApiError;
use super::route::{hops_and_timeout, FORWARDED_HEADER, MAX_HOPS};
use crate::cluster::membership::MemberInfo;
use crate::cluster::{leader_of, Cluster, ClusterError};
use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::{self, Member};

/// How long an admin call may take when its client set no deadline.
const ADMIN_WAIT: Duration = Duration::from_secs(120);
/// How long `AddLearner` waits for the learner by default.
const DEFAULT_CATCH_UP: Duration = Duration::from_secs(60);

pub fn member(m: &MemberInfo) -> Member {
    Member {
        node_id: m.id,
        address: m.addr.clone(),
        voter: m.voter,
        matched_index: m.matched_index,
    }
}

fn members(list: &[MemberInfo]) -> Vec<Member> {
    list.iter().map(member).collect()
}

/// The routing facts of one admin call.
struct AdminCall {
    hops: u32,
    deadline: Instant,
    /// The caller's `authorization`: a forwarded call keeps its caller's identity.
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

impl AdminCall {
    fn new<T>(request: &Request<T>) -> Self {
        let (hops, client_timeout) = hops_and_timeout(request);
        let budget = client_timeout.map_or(ADMIN_WAIT, |t| t - t / 20);
        Self {
            hops,
            deadline: Instant::now() + budget,
            authorization: request.metadata().get("authorization").cloned(),
        }
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Runs `here` if this node leads, else forwards `message` with `there`.
async fn on_leader<Req, Resp, H, HF, T, TF>(
    cluster: &Cluster,
    request: Request<Req>,
    here: H,
    there: T,
) -> Result<Response<Resp>, Status>
where
    Req: Clone,
    H: Fn(Req, Instant) -> HF,
    HF: Future<Output = Result<Resp, ClusterError>>,
    T: Fn(RaftServiceClient<PeerChannel>, Request<Req>) -> TF,
    TF: Future<Output = Result<Response<Resp>, Status>>,
{
    let call = AdminCall::new(&request);
    let message = request.into_inner();
    loop {
        let leader = match here(message.clone(), call.deadline).await {
            Ok(reply) => return Ok(Response::new(reply)),
            Err(ClusterError::NotLeader(Some(leader))) => leader,
            Err(ClusterError::NotLeader(None)) => wait_for_leader(cluster, &call).await?,
            Err(e) => return Err(ApiError::from(e).into()),
        };
        let (id, addr) = leader;
        if id == cluster.id() {
            // Only a stale view names this node: ask again, within the deadline.
            if Instant::now() >= call.deadline {
                return Err(ApiError::Unavailable("leadership is changing; retry".into()).into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        if call.hops >= MAX_HOPS {
            return Err(ApiError::Unavailable(format!(
                "leadership is changing (forwarded {} times, last to node {id}); retry",
                call.hops
            ))
            .into());
        }
        let client = cluster.peers().client(&addr).map_err(ApiError::from)?;
        let mut forwarded = Request::new(message);
        forwarded
            .metadata_mut()
            .insert(FORWARDED_HEADER, (call.hops + 1).into());
        if let Some(authorization) = &call.authorization {
            forwarded
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        forwarded.set_timeout(call.left());
        return there(client, forwarded).await;
    }
}

async fn wait_for_leader(cluster: &Cluster, call: &AdminCall) -> Result<(u64, String), Status> {
    let mut metrics = cluster.raft().metrics();
    loop {
        if let Some(leader) = leader_of(&metrics.borrow_and_update()) {
            return Ok(leader);
        }
        match tokio::time::timeout_at(call.deadline, metrics.changed()).await {
            Err(_) => {
                return Err(Status::unavailable(
                    "no leader: is a majority of the voters up?",
                ))
            }
            Ok(Err(_)) => return Err(Status::unavailable("this node is shutting down")),
            Ok(Ok(())) => {}
        }
    }
}

fn duration(d: Option<&prost_types::Duration>) -> Option<Duration> {
    let d = d?;
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok()?;
    Some(Duration::new(secs, nanos))
}

pub async fn add_learner(
    cluster: &Cluster,
    request: Request<proto::AddLearnerRequest>,
) -> Result<Response<proto::AddLearnerResponse>, Status> {
    if let Some(d) = &request.get_ref().wait_timeout {
        if duration(Some(d)).is_none() {
            return Err(ApiError::field("wait_timeout", "must not be negative").into());
        }
    }
    on_leader(
        cluster,
        request,
        |r, deadline| async move {
            let wait = duration(r.wait_timeout.as_ref())
                .unwrap_or(DEFAULT_CATCH_UP)
                .min(deadline.saturating_duration_since(Instant::now()));
            let p = cluster.add_learner(r.node_id, &r.address, wait).await?;
            Ok(proto::AddLearnerResponse {
                caught_up: p.caught_up,
                matched_index: p.matched_index,
                leader_last_index: p.leader_last_index,
                members: members(&p.members),
            })
        },
        |mut c, r| async move { c.add_learner(r).await },
    )
    .await
}

pub async fn change_membership(
    cluster: &Cluster,
    request: Request<proto::ChangeMembershipRequest>,
) -> Result<Response<proto::ChangeMembershipResponse>, Status> {
    on_leader(
        cluster,
        request,
        |r, _| async move {
            let voters: BTreeSet<u64> = r.voter_ids.iter().copied().collect();
            let list = cluster.change_membership(voters).await?;
            Ok(proto::ChangeMembershipResponse {
                members: members(&list),
            })
        },
        |mut c, r| async move { c.change_membership(r).await },
    )
    .await
}

pub async fn remove_node(
    cluster: &Cluster,
    request: Request<proto::RemoveNodeRequest>,
) -> Result<Response<proto::RemoveNodeResponse>, Status> {
    on_leader(
        cluster,
        request,
        |r, _| async move {
            let list = cluster.remove_node(r.node_id).await?;
            Ok(proto::RemoveNodeResponse {
                members: members(&list),
            })
        },
        |mut c, r| async move { c.remove_node(r).await },
    )
    .await
}

pub async fn transfer_leadership(
    cluster: &Cluster,
    request: Request<proto::TransferLeadershipRequest>,
) -> Result<Response<proto::TransferLeadershipResponse>, Status> {
    on_leader(
        cluster,
        request,
        |r, deadline| async move {
            let to = (r.node_id != 0).then_some(r.node_id);
            let t = cluster.transfer_leadership(to, deadline).await?;
            Ok(proto::TransferLeadershipResponse {
                leader_id: t.leader,
                term: t.term,
                writes_held: Some(prost_types::Duration {
                    seconds: t.writes_held.as_secs() as i64,
                    nanos: t.writes_held.subsec_nanos() as i32,
                }),
            })
        },
        |mut c, r| async move { c.transfer_leadership(r).await },
    )
    .await
}

pub async fn start_election(
    cluster: &Cluster,
    request: Request<proto::StartElectionRequest>,
) -> Result<Response<proto::StartElectionResponse>, Status> {
    cluster
        .start_election(request.get_ref())
        .await
        .map_err(ApiError::from)?;
    Ok(Response::new(proto::StartElectionResponse {}))
}

/// Bytes of backup file per `BackupResponse`.
const BACKUP_CHUNK_BYTES: usize = 1 << 20;

/// A stream of backup chunks (see `RaftService/Backup`).
pub type BackupStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<proto::BackupResponse, Status>> + Send>>;

/// `Backup`: on the leader, once it has confirmed its leadership and
/// applied everything committed before the call, streams a snapshot file
/// of its state read in one transaction; elsewhere, relays the leader's.
pub async fn backup(
    cluster: &Cluster,
    store: &crate::store::Store,
    read_index: &crate::raft::read_index::ReadIndex,
    request: Request<proto::BackupRequest>,
) -> Result<Response<BackupStream>, Status> {
    let call = AdminCall::new(&request);
    let leader = loop {
        match cluster.ensure_leading() {
            Ok(()) => break None,
            Err(ClusterError::NotLeader(Some(leader))) => break Some(leader),
            Err(ClusterError::NotLeader(None)) => {
                let leader = wait_for_leader(cluster, &call).await?;
                if leader.0 != cluster.id() {
                    break Some(leader);
                }
            }
            Err(e) => return Err(ApiError::from(e).into()),
        }
    };
    if let Some((id, addr)) = leader {
        if call.hops >= MAX_HOPS {
            return Err(ApiError::Unavailable(format!(
                "leadership is changing (forwarded {} times, last to node {id}); retry",
                call.hops
            ))
            .into());
        }
        let mut forwarded = Request::new(proto::BackupRequest {});
        forwarded
            .metadata_mut()
            .insert(FORWARDED_HEADER, (call.hops + 1).into());
        if let Some(authorization) = &call.authorization {
            forwarded
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        forwarded.set_timeout(call.left());
        let mut client = cluster.peers().client(&addr).map_err(ApiError::from)?;
        let stream = client.backup(forwarded).await?.into_inner();
        return Ok(Response::new(Box::pin(stream)));
    }

    // Every write acknowledged before this call is in what is read next.
    let asked = read_index.read_index(crate::raft::read_index::Asker::Local);
    let index = tokio::time::timeout_at(call.deadline, asked)
        .await
        .map_err(|_| Status::unavailable("no quorum confirmed this leader in time"))?
        .map_err(|e| Status::unavailable(format!("cannot confirm leadership: {e}")))?;
    cluster
        .wait_applied(index, call.deadline)
        .await
        .map_err(ApiError::from)?;

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<proto::BackupResponse, Status>>(2);
    let store = store.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (pipe_in, mut pipe_out) = tokio::io::duplex(BACKUP_CHUNK_BYTES);
        let write = async move {
            let (mut pipe_in, summary) = store.write_snapshot(pipe_in).await?;
            let _ = pipe_in.shutdown().await;
            Ok::<_, crate::store::StoreError>(summary)
        };
        let send = async {
            let mut chunk = vec![0u8; BACKUP_CHUNK_BYTES];
            loop {
                let mut filled = 0;
                while filled < chunk.len() {
                    match pipe_out.read(&mut chunk[filled..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => filled += n,
                    }
                }
                if filled == 0 {
                    return;
                }
                let message = proto::BackupResponse {
                    chunk: chunk[..filled].to_vec(),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return; // the client went away: the writer sees a broken pipe
                }
            }
        };
        let (written, ()) = tokio::join!(write, send);
        match written {
            Ok(summary) => tracing::info!(
                tasks = summary.tasks,
                request_ids = summary.request_ids,
                "backup sent"
            ),
            Err(e) => {
                tracing::error!(error = %e, "backup failed");
                let _ = tx
                    .send(Err(Status::internal(
                        "the backup failed on the leader; its log has the details",
                    )))
                    .await;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(Response::new(Box::pin(stream)))
}
