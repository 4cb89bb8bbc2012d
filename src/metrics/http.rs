//! `--metrics-listen`: `/metrics` (Prometheus text format), `/healthz`
//! (liveness) and `/readyz` (readiness) over plain HTTP/1.1, beside the
//! node's gRPC port, for Prometheus and for probes that do not speak gRPC.
//!
//! - `/healthz`: 200 whenever the process answers at all: its event loop runs.
//! - `/readyz`: 200 exactly while the node's gRPC health says SERVING (it
//!   knows a leader, its Raft runs, it has caught up), else 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Whether the node is ready (its gRPC health is SERVING).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// The running HTTP server; dropping it stops it (gracefully: a scrape in
/// progress finishes).
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    upkeep: JoinHandle<()>,
}

impl MetricsServer {
    /// The address it listens on (the bound port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.upkeep.abort();
    }
}

/// When `addr` is given, binds it and serves the endpoints until the
/// returned server is dropped; `ready` answers `/readyz`. Installs the
/// process's metrics recorder.
pub async fn start(
    addr: Option<SocketAddr>,
    ready: impl Fn() -> bool + Send + Sync + 'static,
) -> std::io::Result<Option<MetricsServer>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    super::install();
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let ready: Readiness = Arc::new(ready);
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ready);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = served.await {
            tracing::warn!(%addr, error = %e, "metrics endpoint stopped");
        }
    });
    let upkeep = tokio::spawn(async {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            super::upkeep();
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    Ok(Some(MetricsServer {
        addr,
        stop: Some(stop),
        upkeep,
    }))
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::render(),
    )
}

async fn readyz(axum::extract::State(ready): axum::extract::State<Readiness>) -> impl IntoResponse {
    if ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
