//! The connections a node accepts: TCP_NODELAY, TLS when configured, a
//! bounded number of them, and a refusal clients see when the process is
//! out of file descriptors.
//!
//! A node that runs out of descriptors cannot `accept()`: the connection
//! then waits in the kernel's backlog and its client hangs until its
//! deadline. So connections are capped below the descriptor limit (a
//! connection past the cap is accepted and closed at once: the client sees
//! the connection fail and tries another node), and when `accept()` fails
//! with EMFILE anyway, a reserved descriptor is freed to accept and close
//! the waiting connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

use crate::security::tls::ServerTls;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Descriptors kept free for everything but client connections: the
/// database pool, peers, snapshot files, the log.
fn reserved_fds(limit: u64) -> u64 {
    (limit / 4).min(256)
}

/// How many connections a node holds at once, from its descriptor limit.
pub fn max_connections() -> usize {
    let soft = fd_limit();
    soft.saturating_sub(reserved_fds(soft)).max(16) as usize
}

/// The soft RLIMIT_NOFILE of this process.
pub fn fd_limit() -> u64 {
    rlimit::Resource::NOFILE
        .get()
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, as Go servers such as
/// etcd do at start, and returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    Ok(rlimit::Resource::NOFILE.get()?.0)
}

/// What the auth layer learns of a call's connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    /// The client's certificate chain, when it presented one over TLS.
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// Whether the peer RPCs are served on this listener.
    pub peer_listener: bool,
}

/// One accepted connection.
pub struct Conn {
    io: ConnIo,
    info: ConnInfo,
    /// Frees its place under the connection cap when the connection closes.
    _slot: OwnedSemaphorePermit,
}

enum ConnIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// One listener's settings.
pub struct Listener {
    pub listener: TcpListener,
    pub tls: Option<Arc<ServerTls>>,
    /// Whether the peer RPCs are served here.
    pub peer_listener: bool,
}

/// The connections accepted on `listeners`, sharing one cap of `max_conns`.
/// The accept loops end (and close their ports) when the stream is dropped.
pub fn incoming(
    listeners: Vec<Listener>,
    max_conns: usize,
) -> impl futures::Stream<Item = io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(max_conns));
    for listener in listeners {
        tokio::spawn(accept_loop(listener, slots.clone(), max_conns, tx.clone()));
    }
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: Listener,
    slots: Arc<Semaphore>,
    max_conns: usize,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let Listener {
        listener,
        tls,
        peer_listener,
    } = listener;
    let mut reserve = std::fs::File::open("/dev/null").ok();
    let mut refused: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_out_of_fds(&e) => {
                // Free the reserve, take the waiting connection and close it:
                // its client fails at once instead of hanging in the backlog.
                drop(reserve.take());
                if let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                }
                reserve = std::fs::File::open("/dev/null").ok();
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(
                        refused,
                        limit = fd_limit(),
                        "out of file descriptors: refusing connections"
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            Err(e) => {
                // ECONNABORTED and friends: that connection is gone, the next is fine.
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    max = max_conns,
                    "too many connections: refusing new ones"
                );
            }
            drop(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        let mut info = ConnInfo {
            remote: Some(remote),
            peer_certs: None,
            peer_listener,
        };
        match &tls {
            None => {
                let conn = Conn {
                    io: ConnIo::Plain(stream),
                    info,
                    _slot: slot,
                };
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    info.peer_certs = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|certs| Arc::new(certs.to_vec()));
                    let conn = Conn {
                        io: ConnIo::Tls(Box::new(stream)),
                        info,
                        _slot: slot,
                    };
                    let _ = tx.send(Ok(conn)).await;
                });
            }
        }
    }
}

fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            ConnIo::Plain(s) => s.is_write_vectored(),
            ConnIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ConnIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// Every accepted connection has TCP_NODELAY, whatever the client set.
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listeners = vec![Listener {
            listener,
            tls: None,
            peer_listener: true,
        }];
        let mut accepted = Box::pin(incoming(listeners, 4));
        let client = TcpStream::connect(addr).await.unwrap();
        client.set_nodelay(false).unwrap();
        let conn = accepted.next().await.expect("a connection").unwrap();
        let ConnIo::Plain(stream) = &conn.io else {
            panic!("plain listener gave TLS")
        };
        assert!(
            stream.nodelay().unwrap(),
            "accepted socket without TCP_NODELAY"
        );
    }

    /// Past the cap, a connection is closed at once (the client reads EOF),
    /// and a freed place takes the next one.
    #[tokio::test]
    async fn connections_past_the_cap_are_closed_at_once() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listeners = vec![Listener {
            listener,
            tls: None,
            peer_listener: false,
        }];
        let mut accepted = Box::pin(incoming(listeners, 1));
        let _first = TcpStream::connect(addr).await.unwrap();
        let held = accepted.next().await.unwrap().unwrap();
        assert!(!held.connect_info().peer_listener);
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
            .await
            .expect("a refused connection is closed, not left hanging");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        drop(held);
        let _third = TcpStream::connect(addr).await.unwrap();
        let conn = tokio::time::timeout(Duration::from_secs(10), accepted.next())
            .await
            .expect("a freed place takes the next connection");
        assert!(conn.unwrap().is_ok());
    }
}
