//! A tower layer around the whole gRPC server: counts and times every call
//! (`taskd_grpc_requests_total`, `taskd_grpc_request_duration_seconds`) and
//! runs each in a `grpc` span carrying the node, the method and, for writes,
//! the request id (see [`record_request_id`]), so that every log line of a
//! call says where it belongs. Nothing of the request's headers is logged:
//! no tokens, no `authorization`.
//!
//! A call's code is read where gRPC puts it: the `grpc-status` header of a
//! trailers-only response (an error before any message), else the trailers
//! at the end of the body. A body that ends without a status under an OK
//! HTTP response counts as OK; one dropped before its end (the client went
//! away) as CANCELLED; a non-gRPC HTTP error by gRPC's HTTP-to-code mapping.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use prost::Message;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::raft::NodeId;

/// Wraps a gRPC server so that its calls are measured (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct ObserveLayer {
    node: NodeId,
}

impl ObserveLayer {
    pub fn new(node: NodeId) -> Self {
        Self { node }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            node: self.node,
        }
    }
}

/// The service [`ObserveLayer`] makes.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    node: NodeId,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observe<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was made ready is the one that serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut call = CallEnd {
            node: self.node,
            method: method_label(request.uri().path()),
            started: Instant::now(),
            ended: false,
        };
        let span = tracing::info_span!(
            "grpc",
            node = self.node,
            method = call.method.as_ref(),
            request_id = tracing::field::Empty,
        );
        let served = inner.call(request);
        Box::pin(
            async move {
                let response = match served.await {
                    Ok(response) => response,
                    Err(e) => {
                        call.end(Code::Unknown);
                        return Err(e);
                    }
                };
                let (parts, body) = response.into_parts();
                let pending = match header_code(&parts.headers) {
                    // Trailers-only: the status is all there is.
                    Some(code) => {
                        call.end(code);
                        None
                    }
                    None if parts.status != StatusCode::OK => {
                        call.end(http_code(parts.status));
                        None
                    }
                    None => Some(call),
                };
                Ok(Response::from_parts(
                    parts,
                    ObservedBody {
                        inner: body,
                        pending,
                    },
                ))
            }
            .instrument(span),
        )
    }
}

/// Names the current call's request id in its span, so that every line
/// logged for the write from here on carries `request_id`.
pub fn record_request_id(request_id: Option<&str>) {
    if let Some(request_id) = request_id {
        tracing::Span::current().record("request_id", request_id);
    }
}

/// A call whose status is not known yet; recorded once, when it is.
struct CallEnd {
    node: NodeId,
    method: Arc<str>,
    started: Instant,
    ended: bool,
}

impl CallEnd {
    fn end(&mut self, code: Code) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let method = if code == Code::Unimplemented {
            // Whatever path a caller made up is not a series of its own.
            UNKNOWN_METHOD
        } else {
            &self.method
        };
        crate::metrics::grpc_request(self.node, method, code_name(code), self.started.elapsed());
    }
}

impl Drop for CallEnd {
    /// The body was dropped before its end: the client went away.
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the status goes by.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        pending: Option<CallEnd>,
    }
}

impl<B: Body> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = ready!(this.inner.poll_frame(cx));
        if let Some(call) = this.pending {
            match &polled {
                Some(Ok(frame)) => {
                    if let Some(code) = frame.trailers_ref().and_then(header_code) {
                        call.end(code);
                    }
                }
                Some(Err(_)) => call.end(Code::Unknown),
                None => call.end(Code::Ok),
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `method` label of paths that name no method served here.
const UNKNOWN_METHOD: &str = "unknown";

/// Every `/package.Service/Method` this node serves: TaskService,
/// RaftService, health and reflection.
static KNOWN_METHODS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let sets = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashSet::new();
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    let method = method.name.unwrap_or_default();
                    methods.insert(format!("/{package}.{service_name}/{method}"));
                }
            }
        }
    }
    methods
});

/// The path as a label, when it names a method served here: a made-up path
/// must not make a series of its own.
fn method_label(path: &str) -> Arc<str> {
    if KNOWN_METHODS.contains(path) {
        Arc::from(path)
    } else {
        Arc::from(UNKNOWN_METHOD)
    }
}

fn header_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.trim().parse().ok()?))
}

/// gRPC's mapping of an HTTP status without a gRPC status
/// (doc/http-grpc-status-mapping.md).
fn http_code(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The code's canonical name, as grpc-go and Prometheus exporters spell it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_served_here_are_labels_and_others_are_not() {
        for known in [
            "/taskd.v1.TaskService/CreateTask",
            "/taskd.v1.RaftService/AppendEntries",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(&*method_label(known), known);
        }
        assert_eq!(&*method_label("/taskd.v1.TaskService/Nope"), UNKNOWN_METHOD);
        assert_eq!(&*method_label("/x"), UNKNOWN_METHOD);
    }

    #[test]
    fn status_codes() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_code(&headers), None);
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(header_code(&headers), Some(Code::NotFound));
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(
            http_code(StatusCode::SERVICE_UNAVAILABLE),
            Code::Unavailable
        );
    }
}
