//! Who may call what: one tower layer in front of every service of a node.
//! Handlers never look at credentials.
//!
//! A caller is a **peer** when it presents the cluster secret
//! (`x-taskd-cluster-secret`) or, over TLS, a certificate from
//! `--peer-ca-file`; a **client** with a role when it presents
//! `authorization: Bearer TOKEN` from `--auth-token-file`.
//!
//! | calls | who may |
//! | --- | --- |
//! | health, reflection | anyone |
//! | Vote, AppendEntries, InstallSnapshot, ReadIndex | peers |
//! | AddLearner, ChangeMembership, RemoveNode, TransferLeadership, StartElection, Backup | admins and peers |
//! | GetClusterStatus | any authenticated caller |
//! | GetTask, ListTasks | readers, writers, admins |
//! | CreateTask, UpdateTask, DeleteTask | writers, admins |
//!
//! What a node was not configured for stays open: without cluster
//! credentials (loopback only, or `--insecure-no-cluster-auth`) peer calls
//! are open, and without a token file so are client calls. No credential at
//! all is UNAUTHENTICATED; a wrong one, or one too weak, PERMISSION_DENIED,
//! except an unknown token, which is UNAUTHENTICATED (it proves nothing).
//! A forwarded call carries its caller's `authorization`, so the leader
//! judges the caller, not the node that forwarded it.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use futures::future::{BoxFuture, Either};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::security::tls::ServerTls;
use crate::security::tokens::{bearer, Role, TokenTable};
use crate::security::{ClusterSecret, SecurityConfig, SecurityError, CLUSTER_SECRET_HEADER};
use crate::server::incoming::ConnInfo;

/// What a call needs, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Health and reflection.
    Nothing,
    /// Raft's own RPCs between members.
    Peer,
    /// Membership, leadership and backup.
    Admin,
    /// GetClusterStatus.
    Authenticated,
    Read,
    Write,
}

impl Need {
    pub fn of(path: &str) -> Need {
        let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
            return Need::Authenticated;
        };
        match service {
            "grpc.health.v1.Health"
            | "grpc.reflection.v1.ServerReflection"
            | "grpc.reflection.v1alpha.ServerReflection" => Need::Nothing,
            "taskd.v1.RaftService" => match method {
                "Vote" | "AppendEntries" | "InstallSnapshot" | "ReadIndex" => Need::Peer,
                "GetClusterStatus" => Need::Authenticated,
                // Every other RaftService call changes the cluster or reads all of it.
                _ => Need::Admin,
            },
            "taskd.v1.TaskService" => match method {
                "GetTask" | "ListTasks" | "WatchTasks" => Need::Read,
                _ => Need::Write,
            },
            _ => Need::Authenticated,
        }
    }

    /// The weakest role that may make the call.
    fn role(self) -> Option<Role> {
        match self {
            Need::Nothing | Need::Peer => None,
            Need::Authenticated | Need::Read => Some(Role::Reader),
            Need::Write => Some(Role::Writer),
            Need::Admin => Some(Role::Admin),
        }
    }
}

/// Who the caller proved to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// The right secret, or a certificate from the peer CA.
    Yes,
    /// A secret that is not the cluster's.
    WrongSecret,
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Role(Role),
    UnknownToken,
    NoToken,
}

/// A node's credentials checker, shared by every connection; its token
/// file is read again on SIGHUP.
pub struct Auth {
    secret: Option<ClusterSecret>,
    tls: Option<Arc<ServerTls>>,
    peer_ca: bool,
    token_file: Option<PathBuf>,
    tokens: RwLock<Option<Arc<TokenTable>>>,
}

impl Auth {
    pub fn new(
        config: &SecurityConfig,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<Self, SecurityError> {
        let tokens = config
            .token_file
            .as_deref()
            .map(TokenTable::from_file)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            secret: config.cluster_secret.clone(),
            peer_ca: config.peer_ca().is_some(),
            tls,
            token_file: config.token_file.clone(),
            tokens: RwLock::new(tokens),
        })
    }

    /// Reads the token file again; on error keeps the tokens it had.
    pub fn reload(&self) -> Result<(), SecurityError> {
        let Some(path) = &self.token_file else {
            return Ok(());
        };
        let table = TokenTable::from_file(path)?;
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(table));
        Ok(())
    }

    fn cluster_auth(&self) -> bool {
        self.secret.is_some() || self.peer_ca
    }

    fn peer(&self, headers: &http::HeaderMap, conn: Option<&ConnInfo>) -> Peer {
        if let Some(presented) = headers.get(CLUSTER_SECRET_HEADER) {
            return match &self.secret {
                Some(secret) if secret.matches(presented.as_bytes()) => Peer::Yes,
                _ => Peer::WrongSecret,
            };
        }
        let certs = conn.and_then(|c| c.peer_certs.as_deref());
        match (&self.tls, certs) {
            (Some(tls), Some(chain)) if self.peer_ca && tls.is_peer(chain) => Peer::Yes,
            _ => Peer::No,
        }
    }

    fn client(&self, headers: &http::HeaderMap) -> Option<Client> {
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Some(Client::NoToken);
        };
        Some(
            match bearer(value.as_bytes()).and_then(|t| tokens.role_of(t)) {
                Some(role) => Client::Role(role),
                None => Client::UnknownToken,
            },
        )
    }

    /// Whether the call may go on, or the status that refuses it.
    pub fn check(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        conn: Option<&ConnInfo>,
    ) -> Result<(), tonic::Status> {
        let need = Need::of(path);
        if need == Need::Nothing {
            return Ok(());
        }
        if need == Need::Peer && conn.is_some_and(|c| !c.peer_listener) {
            return Err(tonic::Status::permission_denied(
                "peer calls are served on this node's --peer-listen address only",
            ));
        }
        let peer = self.peer(headers, conn);
        if peer == Peer::WrongSecret {
            return Err(tonic::Status::permission_denied(
                "the cluster secret presented is not this cluster's",
            ));
        }
        let client = self.client(headers);
        match need {
            Need::Nothing => Ok(()),
            Need::Peer => match peer {
                Peer::Yes => Ok(()),
                _ if !self.cluster_auth() => Ok(()),
                _ if matches!(client, Some(Client::Role(_))) => Err(tonic::Status::permission_denied(
                    "only cluster members may make peer calls, and this caller did not present cluster credentials",
                )),
                _ => Err(tonic::Status::unauthenticated(
                    "peer calls need cluster credentials (the cluster secret, or a certificate from the peer CA)",
                )),
            },
            need => {
                if peer == Peer::Yes && matches!(need, Need::Admin | Need::Authenticated) {
                    return Ok(());
                }
                let wanted = need.role().unwrap_or(Role::Reader);
                match client {
                    Some(Client::Role(role)) if role >= wanted => Ok(()),
                    Some(Client::Role(role)) => Err(tonic::Status::permission_denied(format!(
                        "a {} token may not make this call: it needs {} (or stronger)",
                        role.name(),
                        wanted.name()
                    ))),
                    Some(Client::UnknownToken) => Err(tonic::Status::unauthenticated(
                        "the bearer token is not known to this node",
                    )),
                    Some(Client::NoToken) => Err(tonic::Status::unauthenticated(
                        "this call needs `authorization: Bearer TOKEN`",
                    )),
                    // No token file: client calls are open, but the admin
                    // calls still need cluster credentials where they exist.
                    None if need == Need::Admin && self.cluster_auth() => {
                        Err(tonic::Status::unauthenticated(
                            "membership and backup calls need an admin token or cluster credentials",
                        ))
                    }
                    None => Ok(()),
                }
            }
        }
    }
}

/// The tower layer that runs [`Auth::check`] before every call.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Auth>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Auth>) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Arc<Auth>,
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let conn = request.extensions().get::<ConnInfo>();
        match self
            .auth
            .check(request.uri().path(), request.headers(), conn)
        {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(status) => {
                tracing::info!(
                    method = request.uri().path(),
                    remote = ?conn.and_then(|c| c.remote),
                    code = ?status.code(),
                    reason = status.message(),
                    "call refused"
                );
                Either::Right(Box::pin(async move { Ok(status.into_http()) }))
            }
        }
    }
}

#[cfg(test)]
mod tests;
