//! How long a call may take, how hard it retries, and how it proves who it
//! talks to and who it is (TLS and a bearer token).

use std::fmt;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tonic::metadata::{Ascii, MetadataValue};

use crate::error::Error;

/// The bounds of every [`TaskClient`](crate::TaskClient) call, and its security.
///
/// A call ends at the first of: an answer that is not retryable, `max_retries`
/// retries, or `timeout` after it started (the deadline covers every attempt and
/// every backoff pause, and is sent to the server as `grpc-timeout`).
///
/// # TLS and tokens
///
/// An endpoint given as `https://host:port` is reached over TLS; `host:port` and
/// `http://host:port` are plaintext, unless a CA certificate or a client
/// identity is set here: then every endpoint uses TLS, whatever its scheme (a
/// plaintext connection would carry neither). The server's certificate is
/// checked against [`ca_certificate`](Self::ca_certificate) when given, else
/// against the system's trusted roots, and must name the endpoint's host (a
/// DNS name or an IP address SAN). With a [`token`](Self::token) every call
/// carries `authorization: Bearer TOKEN`.
///
/// The TLS settings are read when the client connects
/// ([`TaskClient::connect_with`](crate::TaskClient::connect_with)); a handle
/// from [`TaskClient::with_options`](crate::TaskClient::with_options) keeps its
/// parent's connections, so only its token, deadline and retry bounds change.
///
/// `Debug` never shows the token or the private key.
#[derive(Clone)]
pub struct ClientOptions {
    /// The deadline of one call, retries included. Longer rides out a leader
    /// election (1.5–3 s) more often; shorter fails faster when the cluster is down.
    pub timeout: Duration,
    /// How many times a call is retried after UNAVAILABLE or a transport error.
    pub max_retries: usize,
    /// The first backoff pause; each next pause doubles up to `max_backoff`, and
    /// each gets a random jitter of up to +100% so that clients do not retry in step.
    pub min_backoff: Duration,
    /// The longest backoff pause.
    pub max_backoff: Duration,
    /// How long opening a TCP connection to one endpoint may take before the
    /// client moves on to the next one.
    pub connect_timeout: Duration,
    /// PEM certificate(s) of the CA(s) that sign the nodes' certificates.
    ca_certificate: Option<Vec<u8>>,
    /// PEM certificate chain and private key shown to nodes that ask for a
    /// client certificate (mutual TLS).
    identity: Option<Identity>,
    /// The bearer token sent with every call.
    token: Option<String>,
}

#[derive(Clone)]
struct Identity {
    certificate: Vec<u8>,
    key: Vec<u8>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_retries: 10,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            ca_certificate: None,
            identity: None,
            token: None,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |set: bool| if set { Some("<redacted>") } else { None };
        f.debug_struct("ClientOptions")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "ca_certificate",
                &self
                    .ca_certificate
                    .as_ref()
                    .map(|pem| format!("<{} bytes of PEM>", pem.len())),
            )
            .field("identity", &redacted(self.identity.is_some()))
            .field("token", &redacted(self.token.is_some()))
            .finish()
    }
}

impl ClientOptions {
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn max_retries(mut self, max_retries: usize) -> Self {
        self.max_retries = max_retries;
        self
    }

    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Trusts the CA certificate(s) in `pem` (instead of the system's roots)
    /// for the nodes' certificates, and turns TLS on for every endpoint.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate = Some(pem.into());
        self
    }

    /// Presents this certificate chain and private key (both PEM) to nodes
    /// that require client certificates (`taskd serve --tls-client-ca-file`),
    /// and turns TLS on for every endpoint.
    pub fn identity(
        mut self,
        certificate_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some(Identity {
            certificate: certificate_pem.into(),
            key: key_pem.into(),
        });
        self
    }

    /// Sends `authorization: Bearer TOKEN` with every call (`taskd serve
    /// --auth-token-file`). Leading and trailing white space is dropped.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into().trim().to_string());
        self
    }

    /// Whether a CA certificate or a client identity is set, which makes
    /// every endpoint use TLS.
    pub fn has_tls_settings(&self) -> bool {
        self.ca_certificate.is_some() || self.identity.is_some()
    }

    /// Whether calls carry a bearer token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Catches what would otherwise fail only at the first call, or never
    /// visibly: a token that cannot be a header, PEM without the expected
    /// blocks (tonic skips what it cannot parse, leaving no trusted CA).
    pub(crate) fn validate(&self) -> Result<(), Error> {
        self.authorization()?;
        let has_block = |pem: &[u8], label: &str| {
            let marker = format!("-----BEGIN {label}");
            pem.windows(marker.len()).any(|w| w == marker.as_bytes())
        };
        let invalid = |message: &str| {
            Err(Error::InvalidOptions {
                message: message.into(),
            })
        };
        if let Some(pem) = &self.ca_certificate {
            if !has_block(pem, "CERTIFICATE-----") {
                return invalid("the CA certificate holds no PEM CERTIFICATE block");
            }
        }
        if let Some(identity) = &self.identity {
            if !has_block(&identity.certificate, "CERTIFICATE-----") {
                return invalid("the client certificate holds no PEM CERTIFICATE block");
            }
            // PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY: all end alike.
            if !String::from_utf8_lossy(&identity.key).contains("PRIVATE KEY-----") {
                return invalid("the client key holds no PEM PRIVATE KEY block");
            }
        }
        Ok(())
    }

    /// The TLS configuration of a connection: the CA (or the system's roots)
    /// and the client identity.
    pub(crate) fn tls_config(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig};
        // The handshake gets the TCP connect's bound: a node that accepts but
        // never answers the handshake is skipped like one that never accepts.
        let config = ClientTlsConfig::new().timeout(self.connect_timeout);
        let config = match &self.ca_certificate {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        match &self.identity {
            Some(identity) => config.identity(tonic::transport::Identity::from_pem(
                &identity.certificate,
                &identity.key,
            )),
            None => config,
        }
    }

    /// The `authorization` header of every call, marked sensitive so that
    /// no layer logs it; `None` without a token.
    pub(crate) fn authorization(&self) -> Result<Option<MetadataValue<Ascii>>, Error> {
        let Some(token) = &self.token else {
            return Ok(None);
        };
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidOptions {
                message: "the token must be non-empty printable ASCII without spaces".into(),
            });
        }
        let mut value: MetadataValue<Ascii> =
            format!("Bearer {token}")
                .parse()
                .map_err(|_| Error::InvalidOptions {
                    message: "the token is not a valid header value".into(),
                })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// The pauses between attempts: exponential, jittered, at most `max_retries`.
    pub(crate) fn backoff_delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff.max(self.min_backoff))
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_in_count_and_length() {
        let options = ClientOptions::default()
            .max_retries(6)
            .backoff(Duration::from_millis(10), Duration::from_millis(100));
        let delays: Vec<_> = options.backoff_delays().collect();
        assert_eq!(delays.len(), 6);
        // Jitter adds at most one more delay's worth on top of the cap.
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(200)),
            "{delays:?}"
        );
    }

    /// The token and the private key never reach `Debug` output (which ends
    /// up in logs via `TaskClient`'s own `Debug`).
    #[test]
    fn debug_hides_the_token_and_the_key() {
        let options = ClientOptions::default()
            .ca_certificate("-----BEGIN CERTIFICATE-----\nCA\n")
            .identity("CLIENT-CERT-PEM", "SECRET-KEY-PEM")
            .token("s3cret-token-0123456789");
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("SECRET-KEY"), "{shown}");
        assert!(shown.contains("token: Some(\"<redacted>\")"), "{shown}");
        assert!(shown.contains("identity: Some(\"<redacted>\")"), "{shown}");
        assert!(shown.contains("<31 bytes of PEM>"), "{shown}");
        assert!(!format!("{:?}", ClientOptions::default()).contains("redacted"));
    }

    /// The header is `Bearer TOKEN`, marked sensitive (so tonic and hyper
    /// never log it); no token, no header.
    #[test]
    fn the_token_becomes_a_sensitive_bearer_header() {
        let header = ClientOptions::default()
            .token("  reader-token-0123456789\n")
            .authorization()
            .unwrap()
            .expect("a header");
        assert_eq!(header.to_str().unwrap(), "Bearer reader-token-0123456789");
        assert!(header.is_sensitive());
        assert!(format!("{header:?}").contains("Sensitive"));
        assert!(ClientOptions::default().authorization().unwrap().is_none());
    }

    #[test]
    fn unusable_tokens_are_rejected() {
        for bad in ["", "two words", "tab\there", "caf\u{e9}"] {
            let result = ClientOptions::default().token(bad).authorization();
            assert!(
                matches!(result, Err(Error::InvalidOptions { .. })),
                "{bad:?}: {result:?}"
            );
        }
    }

    #[test]
    fn pem_without_its_blocks_is_rejected() {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
        let good = ClientOptions::default()
            .ca_certificate(cert)
            .identity(cert, key);
        assert!(good.validate().is_ok());
        for bad in [
            ClientOptions::default().ca_certificate("/etc/ssl/ca.pem"),
            ClientOptions::default().identity(key, key),
            ClientOptions::default().identity(cert, cert),
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidOptions { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ca_or_identity_turns_tls_on() {
        assert!(!ClientOptions::default().has_tls_settings());
        assert!(!ClientOptions::default()
            .token("t".repeat(16))
            .has_tls_settings());
        assert!(ClientOptions::default()
            .ca_certificate("pem")
            .has_tls_settings());
        assert!(ClientOptions::default()
            .identity("c", "k")
            .has_tls_settings());
    }
}
