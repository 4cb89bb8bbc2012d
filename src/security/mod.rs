//! Who may call what, and over what: cluster credentials (a shared secret or
//! peer certificates), TLS, and client tokens with roles.
//!
//! - [`SecurityConfig`]: what a node was started with (`--cluster-secret-file`,
//!   `--peer-ca-file`, `--tls-*`, `--auth-token-file`), loaded and checked at start.
//! - [`tls`]: the server's TLS configuration, reloaded on SIGHUP, and the
//!   client side a node dials its peers with.
//! - [`tokens`]: the `TOKEN ROLE` file and its constant-time lookup.
//! - [`peer`]: what a node adds to every call it makes to a peer.
//!
//! The checks themselves are one tower layer, `api::auth`: handlers never
//! look at credentials.

pub mod peer;
pub mod tls;
pub mod tokens;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// The metadata key on which nodes send the cluster secret to their peers.
pub const CLUSTER_SECRET_HEADER: &str = "x-taskd-cluster-secret";

/// A secret shorter than this is refused: it could be guessed.
pub const MIN_SECRET_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("{what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("--cluster-secret-file {path}: the secret must be at least {MIN_SECRET_BYTES} bytes (after trimming white space), not {len}")]
    ShortSecret { path: String, len: usize },
    #[error("--cluster-secret-file {path}: the secret must be one line of visible ASCII (it travels in a gRPC header)")]
    SecretNotAscii { path: String },
    #[error("{what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("tls: {0}")]
    Tls(String),
    #[error("--auth-token-file {path} line {line}: {reason}")]
    TokenLine {
        path: String,
        line: usize,
        reason: String,
    },
}

/// The shared secret every member sends on its peer calls. Never printed.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// Reads the secret from `path`: its content, white space trimmed.
    pub fn from_file(path: &Path) -> Result<Self, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
            what: "--cluster-secret-file",
            path: path.display().to_string(),
            source,
        })?;
        Self::new(text.trim()).map_err(|e| match e {
            SecretError::Short(len) => SecurityError::ShortSecret {
                path: path.display().to_string(),
                len,
            },
            SecretError::NotAscii => SecurityError::SecretNotAscii {
                path: path.display().to_string(),
            },
        })
    }

    pub fn new(secret: &str) -> Result<Self, SecretError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::Short(secret.len()));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecretError::NotAscii);
        }
        Ok(Self(secret.into()))
    }

    /// A new random secret (64 hex digits), for `taskd dev`.
    pub fn generate() -> Self {
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", fastrand::u8(..)))
            .collect();
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        // Equal-length digests: the comparison time says nothing about the length either.
        use sha2::{Digest, Sha256};
        let ours = Sha256::digest(self.0.as_bytes());
        let theirs = Sha256::digest(presented);
        ours.ct_eq(&theirs).into()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum SecretError {
    Short(usize),
    NotAscii,
}

/// TLS files of a node: its certificate and key, the CA its clients'
/// certificates must come from (mTLS, optional) and the CA of its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `--tls-client-ca-file`: every client must present a certificate from it.
    pub client_ca: Option<PathBuf>,
    /// `--peer-ca-file`: a caller whose certificate comes from it is a peer;
    /// also what this node checks its peers' server certificates against.
    pub peer_ca: Option<PathBuf>,
}

/// A node's security settings, as given on its command line. The default
/// is open: no TLS, no cluster credentials, no client tokens (loopback only).
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    pub cluster_secret: Option<ClusterSecret>,
    pub tls: Option<TlsFiles>,
    /// `--auth-token-file`: clients must then present a token.
    pub token_file: Option<PathBuf>,
}

impl SecurityConfig {
    /// Whether peers must prove they are members (a secret or a peer CA).
    pub fn cluster_auth(&self) -> bool {
        self.cluster_secret.is_some() || self.peer_ca().is_some()
    }

    pub fn peer_ca(&self) -> Option<&Path> {
        self.tls.as_ref().and_then(|t| t.peer_ca.as_deref())
    }
}
