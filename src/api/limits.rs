//! Bounds on what clients may ask of a node: message sizes, and how many
//! public calls it serves at once. Past that bound a call is shed at once
//! with RESOURCE_EXHAUSTED and a `RetryInfo`, so that the admitted calls
//! keep their latency instead of every call queueing behind the others.
//! Peer calls (Raft, read-index) and health are never shed: a busy leader
//! must go on heartbeating.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tower::limit::{ConcurrencyLimit, GlobalConcurrencyLimitLayer};
use tower::load_shed::error::Overloaded;
use tower::load_shed::{LoadShed, LoadShedLayer};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// The largest response a default gRPC client accepts (grpc-go, grpcio,
/// grpcurl, tonic): no response of the public API may exceed it.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How soon a shed client is told to retry.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// HTTP/2 streams one connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Bounds on public API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request message, after decompression.
    pub max_request_bytes: usize,
    /// Public calls served at once; more are shed.
    pub max_concurrent_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 4 * 1024 * 1024,
            max_concurrent_calls: 1024,
        }
    }
}

/// Whether a call to `path` counts against the node's call limit.
fn is_public_call(path: &str) -> bool {
    path.starts_with("/taskd.v1.TaskService/")
}

/// Sheds public calls past `max_concurrent_calls` (tower's load-shed over a
/// concurrency limit shared by every connection of the node).
#[derive(Clone)]
pub struct ShedLayer {
    semaphore: Arc<Semaphore>,
}

impl ShedLayer {
    pub fn new(limits: &Limits) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(limits.max_concurrent_calls)),
        }
    }
}

impl<S: Clone> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        let limited = ServiceBuilder::new()
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(
                self.semaphore.clone(),
            ))
            .service(inner.clone());
        Shed { inner, limited }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    /// Peer calls and health: never shed.
    inner: S,
    /// Public calls: shed past the node's bound.
    limited: LoadShed<ConcurrencyLimit<S>>,
}

impl<S> Service<http::Request<Body>> for Shed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError> + Send,
{
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !is_public_call(request.uri().path()) {
            // The service that was polled ready serves this call; a clone waits for the next.
            let clone = self.inner.clone();
            let call = std::mem::replace(&mut self.inner, clone).oneshot(request);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        // A clone holds no permit: `oneshot` takes one, or is shed.
        let call = self.limited.clone().oneshot(request);
        Box::pin(async move {
            match call.await {
                Ok(response) => Ok(response),
                Err(e) if e.is::<Overloaded>() => Ok(overloaded()),
                Err(e) => Err(e),
            }
        })
    }
}

/// RESOURCE_EXHAUSTED with a `RetryInfo`: the call did nothing; retry soon.
fn overloaded() -> http::Response<Body> {
    use tonic_types::{ErrorDetails, StatusExt};
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        "this node is serving as many calls as it may; nothing was done, retry after the delay in RetryInfo or on another node",
        ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
    )
    .into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_task_service_calls_are_shed() {
        assert!(is_public_call("/taskd.v1.TaskService/CreateTask"));
        assert!(!is_public_call("/taskd.v1.RaftService/AppendEntries"));
        assert!(!is_public_call("/grpc.health.v1.Health/Check"));
    }

    #[test]
    fn shed_answer_is_resource_exhausted_with_retry_info() {
        use tonic_types::StatusExt;
        let response = overloaded();
        let status = tonic::Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(RETRY_AFTER));
    }
}
