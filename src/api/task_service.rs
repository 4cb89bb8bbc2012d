//! `taskd.v1.TaskService`: validate, route (writes: propose on the leader or
//! forward to it; reads: read-index, then this node's database), answer.

use std::future::Future;

use crate::security::peer::PeerChannel;
use tonic::{Request, Response, Status};

use super::convert;
use super::error::ApiError;
use super::list::ListRequest;
use super::route::{now_micros, Call, NodeContext, Routed};
use crate::domain::{Command, CommandResult, Task};
use crate::proto::task_service_client::TaskServiceClient;
use crate::proto::task_service_server::TaskService;
use crate::proto::{self, ReadConsistency};

/// A ListTasks page's bound: what default clients accept, less room for
/// the page token, the framing and the headers.
const MAX_LIST_PAGE_BYTES: usize = super::limits::MAX_RESPONSE_BYTES - 64 * 1024;

/// The public API of one node.
pub struct TaskApi {
    ctx: NodeContext,
}

impl TaskApi {
    pub fn new(ctx: NodeContext) -> Self {
        Self { ctx }
    }

    /// A write: proposed here when this node leads (the command is built
    /// only then), else the leader's answer to the forwarded `message`.
    async fn write<Req: Clone, Resp, Fut>(
        &self,
        call: &Call,
        command: impl Fn() -> Command,
        message: Req,
        forward: impl Fn(Client, Request<Req>) -> Fut,
    ) -> Result<Served<Resp>, Status>
    where
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        loop {
            match self.ctx.write(call, &command).await? {
                Routed::Here(result) => return Ok(Served::Here(result)),
                Routed::Leader(to) => {
                    let sent = forward(to.client.clone(), to.request(message.clone())).await;
                    if let Some(reply) = self.ctx.forwarded(call, &to, sent).await? {
                        return Ok(Served::Forwarded(reply));
                    }
                }
            }
        }
    }
}

/// Makes the read that follows linearizable unless it asked for STALE:
/// either way it is then served from this node's own database.
async fn before_read(ctx: &NodeContext, call: &Call, consistency: i32) -> Result<(), ApiError> {
    // A removed node's copy stops moving: even a STALE read is refused.
    ctx.ensure_member()?;
    if is_stale("consistency", consistency)? {
        return Ok(());
    }
    #[cfg(feature = "chaos-break")]
    if crate::chaos_break::active(crate::chaos_break::Mode::StaleReads) {
        return Ok(());
    }
    ctx.linearize(call).await
}

type Client = TaskServiceClient<PeerChannel>;

/// Who answered a write.
enum Served<Resp> {
    Here(CommandResult),
    Forwarded(Response<Resp>),
}

/// The task a write left behind, or why it changed nothing.
fn applied_task(result: CommandResult) -> Result<Task, ApiError> {
    match result {
        CommandResult::Task(task) => Ok(task),
        CommandResult::Rejected(rejection) => Err(rejection.into()),
        other => Err(ApiError::internal(
            "apply",
            format!("unexpected result {other:?}"),
        )),
    }
}

/// Whether a read must go through the leader's read-index.
fn is_stale(field: &str, consistency: i32) -> Result<bool, ApiError> {
    match ReadConsistency::try_from(consistency) {
        Ok(ReadConsistency::Stale) => Ok(true),
        Ok(_) => Ok(false),
        Err(_) => Err(ApiError::field(
            field,
            format!("unknown ReadConsistency value {consistency}"),
        )),
    }
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::internal("read", e)
}

#[tonic::async_trait]
impl TaskService for TaskApi {
    async fn create_task(
        &self,
        request: Request<proto::CreateTaskRequest>,
    ) -> Result<Response<proto::CreateTaskResponse>, Status> {
        let (task, request_id) = convert::new_task(request.get_ref())?;
        let call = Call::new(&request);
        let make = || Command::CreateTask {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: request_id.clone(),
            now: now_micros(),
            task: task.clone(),
        };
        let message = request.into_inner();
        let forward = |mut c: Client, r| async move { c.create_task(r).await };
        match self.write(&call, make, message, forward).await? {
            Served::Here(result) => Ok(Response::new(proto::CreateTaskResponse {
                task: Some(applied_task(result)?.into()),
            })),
            Served::Forwarded(reply) => Ok(reply),
        }
    }

    async fn get_task(
        &self,
        request: Request<proto::GetTaskRequest>,
    ) -> Result<Response<proto::GetTaskResponse>, Status> {
        let call = Call::new(&request);
        let message = request.into_inner();
        convert::task_id("id", &message.id)?;
        before_read(&self.ctx, &call, message.consistency).await?;
        let id = &message.id;
        let task = self.ctx.store.get_task(id).await.map_err(store_error)?;
        let task = task.ok_or_else(|| ApiError::NotFound { id: id.clone() })?;
        Ok(Response::new(proto::GetTaskResponse {
            task: Some(task.into()),
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<proto::ListTasksRequest>,
    ) -> Result<Response<proto::ListTasksResponse>, Status> {
        let call = Call::new(&request);
        let message = request.into_inner();
        let list = ListRequest::parse(&message)?;
        before_read(&self.ctx, &call, message.consistency).await?;
        // One more than a page tells whether another page follows.
        let mut query = list.query.clone();
        query.limit += 1;
        let rows = self
            .ctx
            .store
            .list_tasks(&query)
            .await
            .map_err(store_error)?;
        Ok(Response::new(list.page(rows, MAX_LIST_PAGE_BYTES)))
    }

    async fn update_task(
        &self,
        request: Request<proto::UpdateTaskRequest>,
    ) -> Result<Response<proto::UpdateTaskResponse>, Status> {
        let update = convert::task_patch(request.get_ref())?;
        let expected_version = request.get_ref().expected_version;
        let call = Call::new(&request);
        let make = || Command::UpdateTask {
            id: update.id.clone(),
            expected_version,
            now: now_micros(),
            patch: update.patch.clone(),
            request_id: update.request_id.clone(),
        };
        let message = request.into_inner();
        let forward = |mut c: Client, r| async move { c.update_task(r).await };
        match self.write(&call, make, message, forward).await? {
            Served::Here(result) => Ok(Response::new(proto::UpdateTaskResponse {
                task: Some(applied_task(result)?.into()),
            })),
            Served::Forwarded(reply) => Ok(reply),
        }
    }

    async fn delete_task(
        &self,
        request: Request<proto::DeleteTaskRequest>,
    ) -> Result<Response<proto::DeleteTaskResponse>, Status> {
        let req = request.get_ref();
        let request_id = convert::delete_request(req)?;
        let (id, expected_version) = (req.id.clone(), req.expected_version);
        let call = Call::new(&request);
        let make = || Command::DeleteTask {
            id: id.clone(),
            expected_version,
            now: now_micros(),
            request_id: request_id.clone(),
        };
        let message = request.into_inner();
        let forward = |mut c: Client, r| async move { c.delete_task(r).await };
        match self.write(&call, make, message, forward).await? {
            Served::Here(CommandResult::Deleted { .. }) => {
                Ok(Response::new(proto::DeleteTaskResponse {}))
            }
            Served::Here(result) => Err(applied_task(result)
                .err()
                .unwrap_or_else(|| ApiError::internal("apply", "a delete returned a task"))
                .into()),
            Served::Forwarded(reply) => Ok(reply),
        }
    }
}
