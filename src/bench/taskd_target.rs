//! The workloads on taskd: `taskd.v1.TaskService` calls over shared channels.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;
use tonic::Code;

use super::load::{self, label, Op, LABELS, PADDING};
use super::report::code_name;
use crate::cli::Connection;
use crate::proto::raft_service_client::RaftServiceClient;
use crate::proto::task_service_client::TaskServiceClient;
use crate::proto::{
    CreateTaskRequest, GetClusterStatusRequest, GetTaskRequest, ListTasksRequest, ReadConsistency,
    Task, UpdateTaskRequest,
};
use crate::security::peer::PeerChannel;

/// The highest Raft term any of `endpoints` reports (`GetClusterStatus`),
/// or `None` if none answers. Its growth over a run bounds the leader
/// changes during it.
pub async fn highest_term(endpoints: &[String], connection: &Connection) -> Option<u64> {
    let mut highest = None;
    let dialer = connection.dialer().ok()?;
    for endpoint in endpoints {
        let Ok(channel) = dialer.channel(endpoint) else {
            continue;
        };
        let mut client = RaftServiceClient::new(channel);
        if let Ok(status) = client.get_cluster_status(GetClusterStatusRequest {}).await {
            highest = highest.max(Some(status.into_inner().term));
        }
    }
    highest
}

/// How many times a preload create is tried while the cluster settles.
const PRELOAD_TRIES: u32 = 5;

/// K connections (one `Channel` each, one HTTP/2 connection), round-robin over the endpoints.
pub struct TaskdTarget {
    channels: Vec<PeerChannel>,
    tag: String,
}

/// A channel with TCP_NODELAY and a bound on every call.
pub fn channel(endpoint: &str, call_timeout: Duration) -> anyhow::Result<Endpoint> {
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    Ok(Endpoint::from_shared(uri)
        .with_context(|| format!("{endpoint:?} is not host:port"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(call_timeout))
}

impl TaskdTarget {
    /// Opens `connections` connections now, so an unreachable node fails here.
    pub async fn connect(
        endpoints: &[String],
        connections: usize,
        call_timeout: Duration,
        connection: &Connection,
    ) -> anyhow::Result<Self> {
        let tls = connection.client_tls()?;
        let credentials = connection.credentials()?;
        let mut channels = Vec::with_capacity(connections);
        for i in 0..connections {
            let endpoint = &endpoints[i % endpoints.len()];
            let mut dial = channel(endpoint, call_timeout)?;
            if let Some(tls) = &tls {
                let https = format!(
                    "https://{}",
                    endpoint.rsplit("://").next().unwrap_or(endpoint)
                );
                dial = channel(&https, call_timeout)?.tls_config(tls.clone())?;
            }
            let channel = dial
                .connect()
                .await
                .with_context(|| format!("cannot connect to {endpoint}"))?;
            channels.push(InterceptedService::new(channel, credentials.clone()));
        }
        Ok(Self {
            channels,
            tag: load::run_tag(),
        })
    }

    /// Creates `n` tasks, task i labelled [`label`]`(i)`; returns their ids.
    pub async fn preload(&self, n: usize) -> anyhow::Result<Arc<[String]>> {
        if n > 0 && n < LABELS * 100 {
            eprintln!(
                "bench: with --preload {n} < {}, list pages are not full",
                LABELS * 100
            );
        }
        let ids = load::preload("tasks", n, |i| {
            let mut client = TaskServiceClient::new(self.channels[i % self.channels.len()].clone());
            let request = new_task(&format!("{} preload", self.tag), i as u64);
            async move {
                let mut tries = 0;
                loop {
                    tries += 1;
                    match client.create_task(request.clone()).await {
                        Ok(response) => {
                            let task = response.into_inner().task.context("a task")?;
                            return Ok(task.id);
                        }
                        Err(status) if tries < PRELOAD_TRIES && retryable(status.code()) => {
                            tokio::time::sleep(Duration::from_millis(100) * tries).await;
                        }
                        Err(status) => {
                            return Err(anyhow::anyhow!(
                                "preload create: {}: {}",
                                code_name(status.code()),
                                status.message()
                            ))
                        }
                    }
                }
            }
        })
        .await?;
        Ok(ids.into())
    }

    /// The caller of client `i`, on connection `i mod K`.
    pub fn caller(&self, i: usize, ids: Arc<[String]>) -> TaskdCaller {
        TaskdCaller {
            client: TaskServiceClient::new(self.channels[i % self.channels.len()].clone()),
            ids,
            tag: format!("{} {i}", self.tag),
            seq: 0,
        }
    }
}

fn retryable(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded)
}

/// A new task of about 200 bytes with a unique title.
fn new_task(tag: &str, seq: u64) -> CreateTaskRequest {
    CreateTaskRequest {
        title: format!("bench {tag}-{seq}"),
        description: PADDING.to_string(),
        labels: vec![label(seq)],
        ..Default::default()
    }
}

pub struct TaskdCaller {
    client: TaskServiceClient<PeerChannel>,
    ids: Arc<[String]>,
    tag: String,
    seq: u64,
}

impl TaskdCaller {
    pub async fn call(&mut self, op: Op, rng: &mut fastrand::Rng) -> Result<(), &'static str> {
        let outcome = match op {
            Op::Create => {
                self.seq += 1;
                let request = new_task(&self.tag, self.seq);
                self.client.create_task(request).await.map(drop)
            }
            Op::Get | Op::GetStale => {
                let consistency = if op == Op::GetStale {
                    ReadConsistency::Stale
                } else {
                    ReadConsistency::Unspecified
                };
                let request = GetTaskRequest {
                    id: self.random_id(rng),
                    consistency: consistency as i32,
                };
                self.client.get_task(request).await.map(drop)
            }
            Op::List => {
                let request = ListTasksRequest {
                    label: label(rng.u64(..)),
                    page_size: 100,
                    ..Default::default()
                };
                self.client.list_tasks(request).await.map(drop)
            }
            Op::Update => {
                self.seq += 1;
                let request = UpdateTaskRequest {
                    task: Some(Task {
                        id: self.random_id(rng),
                        title: format!("bench {} updated {}", self.tag, self.seq),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["title".into()],
                    }),
                    // No request_id: the bench never retries a write.
                    ..Default::default()
                };
                self.client.update_task(request).await.map(drop)
            }
        };
        outcome.map_err(|status| code_name(status.code()))
    }

    fn random_id(&self, rng: &mut fastrand::Rng) -> String {
        self.ids[rng.usize(..self.ids.len())].clone()
    }
}
