//! The operator's subcommands: thin gRPC clients of the admin calls of
//! `RaftService`. Each takes `--endpoints` (any live members) and tries
//! them in turn; the node asked forwards to the leader.
//!
//! - [`cluster`]: `taskd cluster status|health|add-learner|promote|remove|transfer-leader`.
//! - [`recover`]: `taskd recover --force-new-cluster`, offline, on a node's data.
//! - [`backup`]: `taskd backup` through the leader, `taskd restore` offline.

pub mod backup;
pub mod cluster;
pub mod recover;

use std::time::Duration;

use anyhow::{anyhow, Context};
use tonic::transport::Channel;

use crate::proto::raft_service_client::RaftServiceClient;
use crate::raft::network::{channel, MAX_MESSAGE_BYTES};

/// Member addresses to reach the cluster by.
#[derive(Debug, Clone, clap::Args)]
pub struct Endpoints {
    /// Addresses (host:port,…) of any live members; tried in turn.
    #[arg(
        long,
        env = "TASKD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051"
    )]
    pub endpoints: Vec<String>,

    /// How long one call may take, in seconds.
    #[arg(long, env = "TASKD_TIMEOUT", default_value_t = 60)]
    pub timeout: u64,
}

impl Endpoints {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Calls `call` on each endpoint in turn until one answers; a refusal
    /// that another node would repeat (bad input, a failed precondition)
    /// ends the tries.
    pub async fn call<T, F, Fut>(&self, call: F) -> anyhow::Result<T>
    where
        F: Fn(RaftServiceClient<Channel>, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = anyhow!("no --endpoints given");
        for addr in &self.endpoints {
            let client = client(addr)?;
            match call(client, self.timeout()).await {
                Ok(reply) => return Ok(reply.into_inner()),
                Err(status) if final_answer(status.code()) => {
                    return Err(anyhow!("{addr}: {}", status.message()))
                }
                Err(status) => {
                    last = anyhow!("{addr}: {:?}: {}", status.code(), status.message());
                }
            }
        }
        Err(last)
    }
}

/// Codes that mean "asking another node will not help".
fn final_answer(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        InvalidArgument | FailedPrecondition | NotFound | AlreadyExists | PermissionDenied
    )
}

pub fn client(addr: &str) -> anyhow::Result<RaftServiceClient<Channel>> {
    let ch = channel(addr).with_context(|| format!("bad endpoint {addr:?}"))?;
    Ok(RaftServiceClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// A request with a deadline.
pub fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}
