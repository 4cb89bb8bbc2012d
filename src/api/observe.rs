//! A tower layer around the whole gRPC server: counts and times every call
//! (`taskd_grpc_requests_total`, `taskd_grpc_request_duration_seconds`) and
//! runs each in a `grpc` span (at DEBUG: see `Observe::call`) carrying the
//! node, the method and, for writes, the request id (see
//! [`record_request_id`]), so that every log line of a call says where it
//! belongs. Nothing of the request's headers is logged:
//! no tokens, no `authorization`.
//!
//! A call's code is read where gRPC puts it: the `grpc-status` header of a
//! trailers-only response (an error before any message), else the trailers
//! at the end of the body. A body that ends without a status under an OK
//! HTTP response counts as OK; one dropped before its end (the client went
//! away) as CANCELLED; a non-gRPC HTTP error by gRPC's HTTP-to-code mapping.

mod labels;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

use self::labels::{code_name, header_code, http_code, method_label, UNKNOWN_METHOD};
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
        // DEBUG, not INFO: at the default level a span per call (its fields
        // formatted for the log) cost 8-9% of read throughput
        // (`taskd bench --workload get`, 3 nodes); the calls' own lines
        // still carry their fields, and --log-level debug adds the span.
        let span = tracing::debug_span!(
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use http::HeaderMap;
    use http_body_util::{BodyExt, Full};
    use prost::bytes::Bytes;

    use super::*;

    /// One call through the layer of node `node`, whose service answers
    /// with `status` headers and, when given, trailers after one message;
    /// reads the whole body unless `drop_body`. Returns the node's series.
    async fn one_call(
        node: NodeId,
        path: &str,
        status_header: Option<&'static str>,
        trailer_status: Option<&'static str>,
        drop_body: bool,
    ) -> String {
        let service = tower::service_fn(move |_request: Request<()>| async move {
            let mut response = Response::builder();
            if let Some(status) = status_header {
                response = response.header("grpc-status", status);
            }
            let body = Full::new(Bytes::from_static(b"message")).with_trailers(async move {
                let status = trailer_status?;
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", status.parse().unwrap());
                Some(Ok::<_, Infallible>(trailers))
            });
            Ok::<_, Infallible>(response.body(body).unwrap())
        });
        let mut observed = ObserveLayer::new(node).layer(service);
        let request = Request::builder().uri(path).body(()).unwrap();
        let response = observed.call(request).await.unwrap();
        if drop_body {
            drop(response);
        } else {
            response.into_body().collect().await.unwrap();
        }
        crate::metrics::render()
            .lines()
            .filter(|l| {
                l.starts_with("taskd_grpc_requests_total")
                    && l.contains(&format!("node=\"{node}\""))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The code comes from the trailers-only header, else the trailers, else
    /// OK at the end of the body; a body dropped early is CANCELLED; a path
    /// served by nothing is `unknown`.
    #[tokio::test]
    async fn calls_are_counted_by_method_and_code() {
        crate::metrics::install();
        let get = "/taskd.v1.TaskService/GetTask";
        let series = |method: &str, code: &str| {
            format!(r#"taskd_grpc_requests_total{{node="{{}}",method="{method}",code="{code}"}} 1"#)
        };
        let cases = [
            (7101, get, Some("5"), None, false, series(get, "NOT_FOUND")),
            (7102, get, None, Some("10"), false, series(get, "ABORTED")),
            (7103, get, None, None, false, series(get, "OK")),
            (7104, get, None, Some("0"), true, series(get, "CANCELLED")),
            (
                7105,
                "/no.Such/Call",
                Some("12"),
                None,
                false,
                series("unknown", "UNIMPLEMENTED"),
            ),
        ];
        for (node, path, header, trailer, drop_body, want) in cases {
            let got = one_call(node, path, header, trailer, drop_body).await;
            assert_eq!(got, want.replace("{}", &node.to_string()), "node {node}");
        }
    }

    /// A line logged inside a call carries the call's node, method and the
    /// request id the handler named.
    #[test]
    fn log_lines_inside_a_call_carry_node_method_and_request_id() {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        // At --log-level debug, where the per-call span is on.
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let service = tower::service_fn(|_request: Request<()>| async {
            record_request_id(Some("req-42"));
            tracing::info!("applied");
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                let mut observed = ObserveLayer::new(7201).layer(service);
                let request = Request::builder()
                    .uri("/taskd.v1.TaskService/CreateTask")
                    .header("authorization", "Bearer secret-token")
                    .body(())
                    .unwrap();
                observed.call(request).await.unwrap();
            })
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(
                r#"grpc{node=7201 method="/taskd.v1.TaskService/CreateTask" request_id="req-42"}"#
            ),
            "{text}"
        );
        assert!(text.contains("applied"), "{text}");
        assert!(!text.contains("secret-token"), "{text}");
    }
}
