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

use std::path::PathBuf;

use anyhow::{anyhow, Context};

use crate::proto::raft_service_client::RaftServiceClient;
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::security::peer::{Credentials, Dialer, PeerChannel};
use crate::security::ClusterSecret;

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

    #[command(flatten)]
    pub connection: Connection,
}

/// How to reach secured nodes: TLS, and a token or the cluster secret.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Connection {
    /// CA certificate (PEM) that the nodes' certificates come from; the
    /// endpoints are then dialed over TLS.
    #[arg(long, env = "TASKD_CACERT")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM) to present, for nodes that require one
    /// (`--tls-client-ca-file`); needs --key.
    #[arg(long, env = "TASKD_CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = "TASKD_KEY", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Token sent as `authorization: Bearer TOKEN` (an `admin` token for the
    /// membership and backup commands).
    #[arg(long, env = "TASKD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The cluster secret file, instead of a token: cluster credentials
    /// may make the membership and backup calls too.
    #[arg(long, env = "TASKD_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
}

impl Connection {
    /// The dialer these options describe.
    pub fn dialer(&self) -> anyhow::Result<Dialer> {
        Ok(Dialer::new(self.client_tls()?, self.credentials()?))
    }

    /// What every call carries: the token, or the cluster secret.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let mut credentials = Credentials::default();
        if let Some(token) = &self.token {
            credentials = credentials.bearer_token(token.trim());
        }
        if let Some(path) = &self.cluster_secret_file {
            credentials = credentials.cluster_secret(&ClusterSecret::from_file(path)?);
        }
        Ok(credentials)
    }

    /// TLS, when a CA or a client certificate is given.
    pub fn client_tls(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let tls = if self.cacert.is_some() || self.cert.is_some() {
            let mut tls = tonic::transport::ClientTlsConfig::new();
            if let Some(ca) = &self.cacert {
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity(tonic::transport::Identity::from_pem(
                    read(cert)?,
                    read(key)?,
                ));
            }
            Some(tls)
        } else {
            None
        };
        Ok(tls)
    }
}

impl Endpoints {
    /// The client of the node at `addr`, with these options' TLS and credentials.
    pub fn client(&self, addr: &str) -> anyhow::Result<RaftServiceClient<PeerChannel>> {
        client(&self.connection.dialer()?, addr)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Calls `call` on each endpoint in turn until one answers; a refusal
    /// that another node would repeat (bad input, a failed precondition)
    /// ends the tries.
    pub async fn call<T, F, Fut>(&self, call: F) -> anyhow::Result<T>
    where
        F: Fn(RaftServiceClient<PeerChannel>, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = anyhow!("no --endpoints given");
        let dialer = self.connection.dialer()?;
        for addr in &self.endpoints {
            let client = client(&dialer, addr)?;
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

pub fn client(dialer: &Dialer, addr: &str) -> anyhow::Result<RaftServiceClient<PeerChannel>> {
    let ch = dialer
        .channel(addr)
        .with_context(|| format!("bad endpoint {addr:?}"))?;
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
