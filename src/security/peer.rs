//! The one way this node (and taskd's own command-line clients) dial a
//! node: TLS when configured, and credentials on every call.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::tls::PeerClientTls;
use super::{ClusterSecret, CLUSTER_SECRET_HEADER};

/// A channel whose every call carries the dialer's credentials.
pub type PeerChannel = InterceptedService<Channel, Credentials>;

/// Metadata added to every call that does not carry it already (a
/// forwarded call keeps its caller's `authorization`).
#[derive(Clone, Default)]
pub struct Credentials {
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "Credentials({keys:?})")
    }
}

impl Credentials {
    /// The cluster secret, as members send it to each other.
    pub fn cluster_secret(mut self, secret: &ClusterSecret) -> Self {
        self.add(CLUSTER_SECRET_HEADER, secret.expose());
        self
    }

    /// `authorization: Bearer TOKEN`, as a client sends it.
    pub fn bearer_token(mut self, token: &str) -> Self {
        self.add("authorization", &format!("Bearer {token}"));
        self
    }

    fn add(&mut self, key: &'static str, value: &str) {
        let Ok(mut value) = AsciiMetadataValue::try_from(value) else {
            // Checked where the secret or token was read; a value that is not
            // ASCII would fail every call with UNAUTHENTICATED, which says why.
            tracing::error!(header = key, "credential is not ASCII; not sent");
            return;
        };
        value.set_sensitive(true);
        self.headers
            .push((AsciiMetadataKey::from_static(key), value));
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        for (key, value) in &self.headers {
            if !metadata.contains_key(key) {
                metadata.insert(key.clone(), value.clone());
            }
        }
        Ok(request)
    }
}

/// How to reach a node: plaintext or TLS, and with which credentials.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<ClientTlsConfig>,
    /// A node's own TLS to its peers, reloaded on SIGHUP.
    peer_tls: Option<Arc<PeerClientTls>>,
    credentials: Credentials,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("tls", &self.tls())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl Dialer {
    pub fn new(tls: Option<ClientTlsConfig>, credentials: Credentials) -> Self {
        Self {
            tls,
            peer_tls: None,
            credentials,
        }
    }

    /// How a node dials its peers: TLS from its reloadable configuration.
    pub fn peer(tls: Option<Arc<PeerClientTls>>, credentials: Credentials) -> Self {
        Self {
            tls: None,
            peer_tls: tls,
            credentials,
        }
    }

    /// Whether calls go over TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some() || self.peer_tls.is_some()
    }

    /// A lazily connected, reconnecting channel to `addr` (`host:port`).
    pub fn channel(&self, addr: &str) -> Result<PeerChannel, tonic::transport::Error> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let channel = match (&self.tls, &self.peer_tls) {
            (_, Some(peer_tls)) => {
                // Plain "http" to tonic: the connector below does the TLS,
                // with the configuration current at each (re)connection.
                let peer_tls = peer_tls.clone();
                let connector = tower::service_fn(move |uri: http::Uri| {
                    let config = peer_tls.config();
                    async move { connect_tls(uri, config).await }
                });
                endpoint.connect_with_connector_lazy(connector)
            }
            (Some(tls), None) => endpoint.tls_config(tls.clone())?.connect_lazy(),
            (None, None) => endpoint.connect_lazy(),
        };
        Ok(InterceptedService::new(channel, self.credentials.clone()))
    }
}

/// One TLS connection to the peer at `uri`, its certificate checked for the
/// host the member address names.
async fn connect_tls(
    uri: http::Uri,
    config: Arc<rustls::ClientConfig>,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, std::io::Error> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::other(format!("no host in {uri}")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.clone())
        .map_err(|e| std::io::Error::other(format!("{host}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    Ok(TokioIo::new(tls))
}
