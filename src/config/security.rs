//! `taskd serve`'s flags for who may call what and how much: cluster
//! credentials, TLS, client tokens, and the public API's limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::ConfigError;
use crate::api::limits::Limits;
use crate::security::{ClusterSecret, SecurityConfig, TlsFiles};

/// Who may call what, and over what (see the README's Security section).
#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// A file holding the cluster secret (at least 16 characters, the same on
    /// every node). Nodes send it on every peer call; peer RPCs without it
    /// are refused.
    #[arg(long, env = "TASKD_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// CA (PEM) of the peers' certificates: a caller presenting a
    /// certificate from it is a peer, and this node checks its peers'
    /// server certificates against it. Needs --tls-cert-file. Use a CA of
    /// its own, not the clients' one.
    #[arg(long, env = "TASKD_PEER_CA_FILE")]
    pub peer_ca_file: Option<PathBuf>,

    /// Run with no cluster credential on a non-loopback --listen: anyone who
    /// reaches the port can then vote, append entries or install a snapshot.
    #[arg(long, env = "TASKD_INSECURE_NO_CLUSTER_AUTH")]
    pub insecure_no_cluster_auth: bool,

    /// Serve the peer RPCs (Vote, AppendEntries, InstallSnapshot, ReadIndex)
    /// on this separate address only, for firewalling peers apart. The
    /// node's member address (--advertise, --initial-cluster) is then this
    /// one. Default: everything on --listen.
    #[arg(long, env = "TASKD_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,

    /// Certificate chain (PEM) this node serves TLS with, and presents to
    /// its peers. With it, the node serves TLS only and dials peers over TLS.
    #[arg(long, env = "TASKD_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert-file. Reloaded with it on SIGHUP.
    #[arg(long, env = "TASKD_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// CA (PEM) that every client's certificate must come from (mutual TLS):
    /// clients without one are refused at the handshake. Needs --tls-cert-file.
    #[arg(long, env = "TASKD_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Client tokens: lines of `TOKEN ROLE` (reader, writer or admin). Calls
    /// must then carry `authorization: Bearer TOKEN`. Reloaded on SIGHUP.
    #[arg(long, env = "TASKD_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
}

/// Bounds on what clients may ask of a node.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest public API message accepted, in bytes (after decompression).
    /// Peers keep a larger limit for log batches and snapshot chunks.
    #[arg(long, env = "TASKD_MAX_REQUEST_BYTES", default_value_t = Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,

    /// Public API calls served at once by this node; calls beyond it are
    /// refused at once with RESOURCE_EXHAUSTED (and a RetryInfo), so that
    /// the admitted ones keep their latency. Peer calls are never shed.
    #[arg(long, env = "TASKD_MAX_CONCURRENT_CALLS", default_value_t = Limits::default().max_concurrent_calls)]
    pub max_concurrent_calls: usize,
}

impl SecurityArgs {
    /// Loads the secret (the TLS and token files are loaded by
    /// `server::run` before anything else); refuses a node open to the
    /// network without cluster credentials.
    pub(super) fn validate(&self, listen: SocketAddr) -> Result<SecurityConfig, ConfigError> {
        let tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), Some(_)) if self.peer_ca_file.is_none() => {
                return Err(ConfigError::TlsNeedsPeerCa)
            }
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca_file.clone(),
                peer_ca: self.peer_ca_file.clone(),
            }),
            _ => {
                if self.peer_ca_file.is_some() {
                    return Err(ConfigError::NeedsTls {
                        flag: "--peer-ca-file",
                    });
                }
                if self.tls_client_ca_file.is_some() {
                    return Err(ConfigError::NeedsTls {
                        flag: "--tls-client-ca-file",
                    });
                }
                None
            }
        };
        let config = SecurityConfig {
            cluster_secret: self
                .cluster_secret_file
                .as_deref()
                .map(ClusterSecret::from_file)
                .transpose()?,
            tls,
            token_file: self.auth_token_file.clone(),
        };
        if !config.cluster_auth() && !self.insecure_no_cluster_auth {
            let open = [Some(listen), self.peer_listen]
                .into_iter()
                .flatten()
                .find(|addr| !addr.ip().is_loopback());
            if let Some(addr) = open {
                return Err(ConfigError::OpenToNetwork {
                    listen: if Some(addr) == self.peer_listen {
                        format!("--peer-listen {addr}")
                    } else {
                        format!("--listen {addr}")
                    },
                });
            }
        }
        Ok(config)
    }
}

impl LimitArgs {
    pub(super) fn validate(&self) -> Result<Limits, ConfigError> {
        if !(64 * 1024..=crate::raft::network::MAX_MESSAGE_BYTES).contains(&self.max_request_bytes)
        {
            return Err(ConfigError::MaxRequestBytes(self.max_request_bytes));
        }
        if self.max_concurrent_calls == 0 {
            return Err(ConfigError::ZeroConcurrentCalls);
        }
        Ok(Limits {
            max_request_bytes: self.max_request_bytes,
            max_concurrent_calls: self.max_concurrent_calls,
        })
    }
}
