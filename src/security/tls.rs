//! TLS: the server side with certificates reloaded on SIGHUP, and the
//! client side a node dials its peers with.
//!
//! The server's handshakes take the configuration current when the
//! connection arrives, so a reload (new certificate, key or CA files)
//! takes effect for every new connection at once, without a restart;
//! open connections keep the one they began with.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::{SecurityError, TlsFiles};

/// The server's TLS configuration and the verifier that says who is a peer.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Loaded>,
}

#[derive(Clone)]
struct Loaded {
    config: Arc<ServerConfig>,
    /// Checks a client certificate against `--peer-ca-file` alone.
    peer_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

/// ring, as tonic's `tls-ring` uses for the client side. (rustls marks
/// ring's provider deprecated for lacking post-quantum key exchange;
/// aws-lc-rs would need cmake and a C toolchain at build time.)
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem_err = |reason: String| SecurityError::Pem {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn roots(what: &'static str, paths: &[&Path]) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        for cert in certs(what, path)? {
            roots.add(cert).map_err(|e| SecurityError::Pem {
                what,
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| SecurityError::Pem {
        what: "--tls-key-file",
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl ServerTls {
    /// Loads every file now: a node with a bad certificate never starts.
    pub fn load(files: TlsFiles) -> Result<Self, SecurityError> {
        let loaded = load(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(loaded),
        })
    }

    /// Reads the files again; on any error keeps serving with what it had.
    pub fn reload(&self) -> Result<(), SecurityError> {
        let loaded = load(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// The acceptor for a connection arriving now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        TlsAcceptor::from(current.config.clone())
    }

    /// Whether `chain` (end entity first, as the client presented it)
    /// comes from `--peer-ca-file`.
    pub fn is_peer(&self, chain: &[CertificateDer<'static>]) -> bool {
        let verifier = {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            current.peer_verifier.clone()
        };
        let (Some(verifier), Some((end, intermediates))) = (verifier, chain.split_first()) else {
            return false;
        };
        verifier
            .verify_client_cert(end, intermediates, UnixTime::now())
            .is_ok()
    }

    /// Whether this server requires client certificates (`--tls-client-ca-file`).
    pub fn requires_client_certs(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn load(files: &TlsFiles) -> Result<Loaded, SecurityError> {
    let chain = certs("--tls-cert-file", &files.cert)?;
    let key = key(&files.key)?;
    let tls_err = |e: rustls::Error| SecurityError::Tls(e.to_string());
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let client_cas: Vec<&Path> = [files.client_ca.as_deref(), files.peer_ca.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let mut config = if client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        // Peers present certificates from --peer-ca-file; clients from
        // --tls-client-ca-file (required then) or none at all.
        let roots = roots("CA file", &client_cas)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        let verifier = if files.client_ca.is_some() {
            verifier.build()
        } else {
            verifier.allow_unauthenticated().build()
        }
        .map_err(|e| SecurityError::Tls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    }
    .with_single_cert(chain, key)
    .map_err(|e| SecurityError::Tls(format!("--tls-cert-file and --tls-key-file: {e}")))?;
    // gRPC is HTTP/2 only; clients such as grpc-go insist on ALPN saying so.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let peer_verifier = match &files.peer_ca {
        Some(peer_ca) => Some(
            WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots("--peer-ca-file", &[peer_ca])?),
                provider(),
            )
            .build()
            .map_err(|e| SecurityError::Tls(e.to_string()))?,
        ),
        None => None,
    };
    Ok(Loaded {
        config: Arc::new(config),
        peer_verifier,
    })
}

/// How this node dials its peers over TLS: their certificates are checked
/// against `--peer-ca-file`, and it presents its own as a client
/// certificate. Reloaded with the server side on SIGHUP: every connection
/// made after it (a reconnect, a new peer) presents the new certificate.
pub struct PeerClientTls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ClientConfig>>,
}

impl PeerClientTls {
    pub fn load(files: TlsFiles) -> Result<Self, SecurityError> {
        let config = client_config(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    pub fn reload(&self) -> Result<(), SecurityError> {
        let config = Arc::new(client_config(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The configuration for a connection made now.
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, SecurityError> {
    let roots = match &files.peer_ca {
        Some(ca) => roots("--peer-ca-file", &[ca])?,
        None => RootCertStore::empty(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs("--tls-cert-file", &files.cert)?, key(&files.key)?)
        .map_err(|e| SecurityError::Tls(format!("--tls-cert-file and --tls-key-file: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
