//! A node's security, loaded once at start: the server's TLS, the checker of
//! credentials (`api::auth`), and how it dials its peers. Certificates, keys,
//! CAs and the token file are read again on every SIGHUP.

use std::sync::Arc;

use crate::api::auth::Auth;
use crate::security::peer::{Credentials, Dialer};
use crate::security::tls::{PeerClientTls, ServerTls};
use crate::security::{SecurityConfig, SecurityError};

/// What a node checks its callers with, and dials its peers with.
pub struct Security {
    pub server_tls: Option<Arc<ServerTls>>,
    peer_tls: Option<Arc<PeerClientTls>>,
    pub auth: Arc<Auth>,
    pub dialer: Dialer,
}

impl Security {
    pub fn load(config: &SecurityConfig) -> Result<Self, SecurityError> {
        let server_tls = config
            .tls
            .clone()
            .map(ServerTls::load)
            .transpose()?
            .map(Arc::new);
        let auth = Arc::new(Auth::new(config, server_tls.clone())?);
        let mut credentials = Credentials::default();
        if let Some(secret) = &config.cluster_secret {
            credentials = credentials.cluster_secret(secret);
        }
        let peer_tls = config
            .tls
            .clone()
            .map(PeerClientTls::load)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            server_tls,
            dialer: Dialer::peer(peer_tls.clone(), credentials),
            peer_tls,
            auth,
        })
    }

    /// Reads the certificates and the token file again on every SIGHUP,
    /// for as long as the node runs; a bad file keeps what was loaded.
    pub fn reload_on_sighup(&self, id: crate::raft::NodeId) -> tokio::task::JoinHandle<()> {
        let (tls, peer_tls, auth) = (
            self.server_tls.clone(),
            self.peer_tls.clone(),
            self.auth.clone(),
        );
        tokio::spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!(
                    node = id,
                    "cannot watch SIGHUP: certificates will not reload"
                );
                return;
            };
            while hangups.recv().await.is_some() {
                let tls = tls.as_ref().map_or(Ok(()), |tls| tls.reload());
                let peer_tls = || peer_tls.as_ref().map_or(Ok(()), |tls| tls.reload());
                match tls.and_then(|()| peer_tls()).and_then(|()| auth.reload()) {
                    Ok(()) => tracing::info!(node = id, "SIGHUP: certificates and tokens reloaded"),
                    Err(e) => {
                        tracing::error!(node = id, error = %e, "SIGHUP: reload failed; still serving with what was loaded before")
                    }
                }
            }
        })
    }
}
