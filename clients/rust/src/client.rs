//! [`TaskClient`]: one handle over several taskd endpoints.
//!
//! Every node serves every call (followers forward writes and linearizable
//! reads to the leader), so the client needs no leader tracking: it sticks to
//! one endpoint until that endpoint fails with UNAVAILABLE or a transport
//! error, then moves to the next one and retries after a jittered, exponential
//! pause, within [`ClientOptions::max_retries`] and the call's deadline.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::error::Error;
use crate::options::ClientOptions;
use crate::pb;
use crate::pb::task_service_client::TaskServiceClient;

/// A list page may hold 1000 tasks of up to ~11 KB each: more than tonic's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Whether a call changes anything: only a write whose answer was lost can end
/// as [`Error::OutcomeUnknown`]; a read that never got an answer is just
/// [`Error::Unavailable`] (e.g. a plaintext call to a TLS-only port, whose
/// connection the node closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Read,
    Write,
}

/// A client of a taskd cluster. Cheap to clone; clones share the connections
/// and the endpoint currently in use.
#[derive(Clone)]
pub struct TaskClient {
    shared: Arc<Shared>,
    options: ClientOptions,
}

struct Shared {
    endpoints: Vec<Endpoint>,
    /// Index into `endpoints` of the one calls go to until it fails.
    current: AtomicUsize,
}

struct Endpoint {
    address: String,
    stub: TaskServiceClient<Channel>,
}

impl std::fmt::Debug for TaskClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskClient")
            .field("endpoints", &self.endpoints())
            .field("options", &self.options)
            .finish()
    }
}

impl TaskClient {
    /// A client over `endpoints` (`host:port` or `http://host:port` in
    /// plaintext, `https://host:port` over TLS), with the default
    /// [`ClientOptions`] (10 s deadline per call, no token). Connections are
    /// opened lazily, on the first call that needs them: this does no I/O, and
    /// fails only on an empty list or an unusable address. Call it inside a
    /// Tokio runtime (each endpoint's channel runs a background task).
    pub fn connect(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<TaskClient, Error> {
        Self::connect_with(endpoints, ClientOptions::default())
    }

    /// [`connect`](Self::connect) with other deadline and retry bounds, TLS
    /// settings or a token. With a CA certificate or a client identity in
    /// `options` every endpoint uses TLS, `host:port` and `http://` ones too.
    /// Fails without I/O on a bad endpoint, a token that cannot be a header,
    /// or PEM that does not parse.
    pub fn connect_with(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        options: ClientOptions,
    ) -> Result<TaskClient, Error> {
        options.validate()?;
        let endpoints = endpoints
            .into_iter()
            .map(|e| open_endpoint(e.into(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(Error::InvalidEndpoint {
                endpoint: String::new(),
                message: "no endpoints given".into(),
            });
        }
        Ok(TaskClient {
            shared: Arc::new(Shared {
                endpoints,
                current: AtomicUsize::new(0),
            }),
            options,
        })
    }

    /// A handle sharing this client's connections whose calls use `options`
    /// (e.g. a shorter deadline for one call, or another token). Its TLS
    /// settings are ignored: the connections keep the ones they were opened with.
    pub fn with_options(&self, options: ClientOptions) -> TaskClient {
        TaskClient {
            shared: self.shared.clone(),
            options,
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The endpoints, as given (normalized to URLs).
    pub fn endpoints(&self) -> Vec<&str> {
        self.shared
            .endpoints
            .iter()
            .map(|e| e.address.as_str())
            .collect()
    }

    /// The endpoint calls currently go to.
    pub fn current_endpoint(&self) -> &str {
        &self.shared.endpoints[self.shared.current.load(Ordering::Relaxed)].address
    }

    /// Creates a task and returns it as the leader stored it.
    ///
    /// An empty `request_id` is filled with a fresh UUID before the first
    /// attempt, and every retry sends the same one: the server remembers it, so
    /// a create retried after a lost answer returns the task the first attempt
    /// created instead of creating a duplicate.
    pub async fn create_task(&self, mut request: pb::CreateTaskRequest) -> Result<pb::Task, Error> {
        if request.request_id.is_empty() {
            request.request_id = uuid::Uuid::new_v4().to_string();
        }
        let response = self
            .call(request, Effect::Write, |mut stub, r| async move {
                stub.create_task(r).await
            })
            .await?;
        response.task.ok_or_else(|| Error::missing_field("task"))
    }

    /// Returns one task, read linearizably.
    pub async fn get_task(&self, id: impl Into<String>) -> Result<pb::Task, Error> {
        self.get_task_with(id, pb::ReadConsistency::Linearizable)
            .await
    }

    /// Returns one task with the given freshness: `Stale` answers from the
    /// asked node's copy, which may lag the leader.
    pub async fn get_task_with(
        &self,
        id: impl Into<String>,
        consistency: pb::ReadConsistency,
    ) -> Result<pb::Task, Error> {
        let request = pb::GetTaskRequest {
            id: id.into(),
            consistency: consistency.into(),
        };
        let response = self
            .call(request, Effect::Read, |mut stub, r| async move {
                stub.get_task(r).await
            })
            .await?;
        response.task.ok_or_else(|| Error::missing_field("task"))
    }

    /// One page of tasks; pass `next_page_token` back (with the same filters)
    /// for the next one.
    pub async fn list_tasks(
        &self,
        request: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse, Error> {
        self.call(request, Effect::Read, |mut stub, r| async move {
            stub.list_tasks(r).await
        })
        .await
    }

    /// Every task matching `request`'s filters, following the pages from
    /// `request.page_token` to the last. Each page is one call with its own deadline.
    pub async fn list_all_tasks(
        &self,
        mut request: pb::ListTasksRequest,
    ) -> Result<Vec<pb::Task>, Error> {
        let mut tasks = Vec::new();
        loop {
            let page = self.list_tasks(request.clone()).await?;
            tasks.extend(page.tasks);
            if page.next_page_token.is_empty() {
                return Ok(tasks);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// Sets the fields of `task` named by `paths` (any of title, description,
    /// status, priority, deadline, assignee, labels; `*` for all) on the task
    /// `task.id`. With `expected_version` > 0 the change applies only at that
    /// version, else [`Error::Conflict`] with the current version.
    ///
    /// Every attempt carries one fresh `request_id`, so a retry after an
    /// ambiguous failure (the connection dropped after the server got the
    /// call, or the server answered OUTCOME_UNKNOWN) gets the first attempt's
    /// result instead of updating twice.
    pub async fn update_task(
        &self,
        task: pb::Task,
        paths: impl IntoIterator<Item = impl Into<String>>,
        expected_version: u64,
    ) -> Result<pb::Task, Error> {
        let request = pb::UpdateTaskRequest {
            task: Some(task),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.into_iter().map(Into::into).collect(),
            }),
            expected_version,
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let response = self
            .call(request, Effect::Write, |mut stub, r| async move {
                stub.update_task(r).await
            })
            .await?;
        response.task.ok_or_else(|| Error::missing_field("task"))
    }

    /// Deletes a task; `expected_version` and retries as in
    /// [`update_task`](Self::update_task): a retry of an attempt that was
    /// applied succeeds again, it does not answer NOT_FOUND.
    pub async fn delete_task(
        &self,
        id: impl Into<String>,
        expected_version: u64,
    ) -> Result<(), Error> {
        let request = pb::DeleteTaskRequest {
            id: id.into(),
            expected_version,
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        self.call(request, Effect::Write, |mut stub, r| async move {
            stub.delete_task(r).await
        })
        .await?;
        Ok(())
    }

    /// Sends `request` through `send` until it gets an answer that is not
    /// retryable, moving to the next endpoint after each retryable failure.
    async fn call<Req, Resp, F, Fut>(
        &self,
        request: Req,
        effect: Effect,
        send: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(TaskServiceClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.options.timeout;
        let authorization = self.options.authorization()?;
        let mut pauses = self.options.backoff_delays();
        let mut attempts = 0;
        // Whether an attempt may have been applied (sent, then no answer).
        let mut maybe_applied = false;
        loop {
            attempts += 1;
            let index = self.shared.current.load(Ordering::Relaxed);
            let endpoint = &self.shared.endpoints[index];
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut attempt = Request::new(request.clone());
            attempt.set_timeout(remaining);
            if let Some(authorization) = &authorization {
                attempt
                    .metadata_mut()
                    .insert("authorization", authorization.clone());
            }
            let status =
                match tokio::time::timeout(remaining, send(endpoint.stub.clone(), attempt)).await {
                    Ok(Ok(response)) => return Ok(response.into_inner()),
                    Ok(Err(status)) if is_retryable(&status) => status,
                    Ok(Err(status)) => return Err(Error::from(status)),
                    Err(_elapsed) => {
                        return Err(Error::DeadlineExceeded {
                            message: format!(
                                "no answer from {} within the {:?} deadline",
                                endpoint.address, self.options.timeout
                            ),
                        })
                    }
                };
            let failure = describe(&status);
            maybe_applied |= effect == Effect::Write && may_have_been_applied(&status);
            self.move_on_from(index);
            let pause = pauses.next();
            let gave_up = match pause {
                None => true,
                Some(pause) => Instant::now() + pause >= deadline,
            };
            if gave_up {
                let message = format!(
                    "{}: {failure} (gave up after {attempts} attempts in {:.1?})",
                    endpoint.address,
                    started.elapsed()
                );
                return Err(if maybe_applied {
                    Error::OutcomeUnknown { message }
                } else {
                    Error::Unavailable { message }
                });
            }
            let pause = pause.unwrap_or(Duration::ZERO);
            tracing::debug!(
                endpoint = %endpoint.address,
                error = %failure,
                attempt = attempts,
                ?pause,
                "taskd call failed; retrying on the next endpoint"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// Moves calls from endpoint `failed` to the next, unless another call
    /// already moved them (so concurrent failures skip no endpoint).
    fn move_on_from(&self, failed: usize) {
        let next = (failed + 1) % self.shared.endpoints.len();
        let _ = self.shared.current.compare_exchange(
            failed,
            next,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

fn open_endpoint(address: String, options: &ClientOptions) -> Result<Endpoint, Error> {
    let address = address.trim().to_string();
    let invalid = |message: String| Error::InvalidEndpoint {
        endpoint: address.clone(),
        message,
    };
    let url = endpoint_url(&address, options.has_tls_settings()).map_err(invalid)?;
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| invalid(format!("{e}")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(
            "expected host:port, http://host:port or https://host:port".into(),
        ));
    }
    let mut builder = Channel::builder(uri).connect_timeout(options.connect_timeout);
    if url.starts_with("https://") {
        builder = builder
            .tls_config(options.tls_config())
            .map_err(|e| Error::InvalidOptions {
                message: format!("TLS settings for {url}: {}", error_chain(&e)),
            })?;
    }
    let stub = TaskServiceClient::new(builder.connect_lazy())
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    Ok(Endpoint { address: url, stub })
}

/// The URL of an endpoint: `https://` for TLS (asked for by the scheme, or by
/// TLS settings, which a plaintext connection could not honour), else `http://`.
fn endpoint_url(address: &str, tls_settings: bool) -> Result<String, String> {
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_string(), address),
    };
    match scheme.as_str() {
        "https" => Ok(format!("https://{rest}")),
        "http" if tls_settings => Ok(format!("https://{rest}")),
        "http" => Ok(format!("http://{rest}")),
        other => Err(format!(
            "unknown scheme {other:?}: expected host:port, http://host:port or https://host:port"
        )),
    }
}

/// `error: cause: cause…`, for errors whose own text leaves out the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    append_causes(error.to_string(), error.source())
}

/// `text` followed by each cause in `source`'s chain that `text` does not already say.
fn append_causes(mut text: String, mut source: Option<&dyn std::error::Error>) -> String {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// UNAVAILABLE from the server (no leader or quorum yet), a write the
/// server says may or may not have applied (OUTCOME_UNKNOWN), or a failure on
/// the client's side of the wire (connection refused or reset): another
/// endpoint, or the same one a moment later, may do better. Retrying is safe
/// because reads change nothing and every write carries a `request_id`.
fn is_retryable(status: &Status) -> bool {
    let from_transport = std::error::Error::source(status).is_some();
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::DeadlineExceeded => from_transport || outcome_unknown(status),
        Code::Internal | Code::Cancelled => from_transport,
        _ => false,
    }
}

/// The server's ErrorInfo reason for "proposed, no outcome".
fn outcome_unknown(status: &Status) -> bool {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .is_some_and(|info| info.reason == "OUTCOME_UNKNOWN")
}

/// Whether the failed attempt may have reached the server and been applied:
/// anything but a refused connection or the server's own UNAVAILABLE.
fn may_have_been_applied(status: &Status) -> bool {
    if outcome_unknown(status) {
        return true;
    }
    let mut source = std::error::Error::source(status);
    if source.is_none() {
        return false;
    }
    while let Some(cause) = source {
        if cause.is::<tonic::ConnectError>() {
            return false;
        }
        source = cause.source();
    }
    true
}

/// The status message plus the chain of causes tonic keeps for transport errors.
fn describe(status: &Status) -> String {
    append_causes(
        status.message().to_string(),
        std::error::Error::source(status),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_accept_host_port_and_urls() {
        let client = TaskClient::connect(["127.0.0.1:50051", "http://localhost:50052"]).unwrap();
        assert_eq!(
            client.endpoints(),
            ["http://127.0.0.1:50051", "http://localhost:50052"]
        );
        assert_eq!(client.current_endpoint(), "http://127.0.0.1:50051");
    }

    #[tokio::test]
    async fn no_or_bad_endpoints_are_rejected() {
        let none: [&str; 0] = [];
        assert!(matches!(
            TaskClient::connect(none),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            TaskClient::connect(["not a host"]),
            Err(Error::InvalidEndpoint { .. })
        ));
    }

    /// `https://` means TLS; so does any endpoint once TLS settings are given
    /// (a plaintext connection would drop them silently).
    #[tokio::test]
    async fn https_and_tls_settings_choose_tls() {
        assert_eq!(endpoint_url("h:1", false).unwrap(), "http://h:1");
        assert_eq!(endpoint_url("HTTPS://h:1", false).unwrap(), "https://h:1");
        assert_eq!(endpoint_url("h:1", true).unwrap(), "https://h:1");
        assert_eq!(endpoint_url("http://h:1", true).unwrap(), "https://h:1");
        assert!(endpoint_url("grpc://h:1", false).is_err());

        let ca = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
        let options = ClientOptions::default().ca_certificate(ca);
        let client = TaskClient::connect_with(["127.0.0.1:1", "http://localhost:2"], options)
            .expect("connect does no I/O");
        assert_eq!(
            client.endpoints(),
            ["https://127.0.0.1:1", "https://localhost:2"]
        );
        let bad_token = ClientOptions::default().token("has space");
        assert!(matches!(
            TaskClient::connect_with(["127.0.0.1:1"], bad_token),
            Err(Error::InvalidOptions { .. })
        ));
    }

    #[test]
    fn only_unavailable_and_transport_failures_are_retried() {
        assert!(is_retryable(&Status::unavailable("no leader")));
        assert!(!is_retryable(&Status::not_found("x")));
        // A token the server refuses stays refused: retrying only burns the deadline.
        assert!(!is_retryable(&Status::unauthenticated("unknown token")));
        assert!(!is_retryable(&Status::permission_denied("reader")));
        // INTERNAL from the server (no local cause) is an answer, not a transport failure.
        assert!(!is_retryable(&Status::internal("internal error")));
        assert!(!is_retryable(&Status::unknown("no details")));
        use tonic_types::StatusExt;
        let unknown = Status::with_error_details(
            Code::Unknown,
            "the write may have been applied",
            tonic_types::ErrorDetails::with_error_info(
                "OUTCOME_UNKNOWN",
                "taskd.v1",
                std::collections::HashMap::new(),
            ),
        );
        assert!(is_retryable(&unknown));
        assert!(may_have_been_applied(&unknown));
        assert!(!may_have_been_applied(&Status::unavailable("no leader")));
    }
}
