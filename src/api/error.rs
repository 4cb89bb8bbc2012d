//! The one place that decides which gRPC code a failure gets.
//!
//! Bad input → INVALID_ARGUMENT with `google.rpc.BadRequest` field
//! violations; missing → NOT_FOUND; duplicate → ALREADY_EXISTS; version
//! mismatch → ABORTED with an `ErrorInfo` carrying the current version; no
//! leader / no quorum → UNAVAILABLE; everything else → INTERNAL with a
//! generic message, the detail going to the log only (never SQL text).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::cluster::ClusterError;
use crate::domain::Rejection;

/// The `ErrorInfo.domain` of taskd's errors.
pub const ERROR_DOMAIN: &str = "taskd.v1";
/// The `ErrorInfo.reason` of a write whose outcome is unknown.
pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";
/// The `ErrorInfo.reason` of a request_id reused for a different request.
pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("task {id:?} not found")]
    NotFound { id: String },
    #[error("request_id {request_id:?} was already used to create task {id:?}, which has since been deleted")]
    RequestIdTaskDeleted { request_id: String, id: String },
    #[error("request_id {request_id:?} was already used for a different request; use a new request_id for a new request")]
    RequestIdReused { request_id: String },
    #[error("task {id:?} is at version {current}, not the expected version {expected}; nothing was changed")]
    VersionMismatch {
        id: String,
        expected: u64,
        current: u64,
    },
    /// The request does not fit the state it meets (a cluster operation on
    /// a node that is not a member, say); retrying it unchanged will not help.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A write was proposed, or sent to the leader, and no outcome came
    /// back: it may have been applied, or may still be. Never UNAVAILABLE,
    /// which clients read as "nothing happened" and retry blindly: this is
    /// DEADLINE_EXCEEDED when the client's deadline ran out, else UNKNOWN,
    /// each with ErrorInfo reason `OUTCOME_UNKNOWN`. Retrying with the same
    /// `request_id` is safe.
    #[error("{message}")]
    OutcomeUnknown {
        message: String,
        client_deadline: bool,
    },
    /// A failure that is not the caller's: logged in full, answered generically.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// One bad field.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {error}"))
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::NotFound { id } => Self::NotFound { id },
            Rejection::VersionMismatch {
                id,
                expected,
                current,
            } => Self::VersionMismatch {
                id,
                expected,
                current,
            },
            Rejection::RequestIdTaskDeleted { request_id, id } => {
                Self::RequestIdTaskDeleted { request_id, id }
            }
            Rejection::RequestIdReused { request_id } => Self::RequestIdReused { request_id },
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::InvalidArgument { field, description } => Self::field(field, description),
            ClusterError::FailedPrecondition(why) => Self::FailedPrecondition(why),
            ClusterError::NotLeader(leader) => Self::Unavailable(match leader {
                Some((id, addr)) => format!("not the leader; node {id} at {addr} leads"),
                None => "not the leader, and no leader is known yet".into(),
            }),
            ClusterError::Unavailable(why) => Self::Unavailable(why),
            ClusterError::DeadlineExceeded(why) => Self::DeadlineExceeded(why),
            ClusterError::Internal(why) => Self::Internal(why),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let message = error.to_string();
        match error {
            ApiError::InvalidArgument(violations) => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request(violations),
            ),
            ApiError::NotFound { .. } => Status::not_found(message),
            ApiError::RequestIdTaskDeleted { .. } => Status::already_exists(message),
            ApiError::RequestIdReused { .. } => {
                let mut details =
                    ErrorDetails::with_error_info(REQUEST_ID_REUSED, ERROR_DOMAIN, HashMap::new());
                details.add_bad_request_violation(
                    "request_id",
                    "was already used for a different request",
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::VersionMismatch {
                expected, current, ..
            } => {
                let metadata = HashMap::from([
                    ("expected_version".to_string(), expected.to_string()),
                    ("current_version".to_string(), current.to_string()),
                ]);
                Status::with_error_details(
                    Code::Aborted,
                    message,
                    ErrorDetails::with_error_info("VERSION_MISMATCH", ERROR_DOMAIN, metadata),
                )
            }
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            ApiError::Unavailable(_) => Status::unavailable(message),
            ApiError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ApiError::OutcomeUnknown {
                client_deadline, ..
            } => {
                let code = if client_deadline {
                    Code::DeadlineExceeded
                } else {
                    Code::Unknown
                };
                Status::with_error_details(
                    code,
                    message,
                    ErrorDetails::with_error_info(OUTCOME_UNKNOWN, ERROR_DOMAIN, HashMap::new()),
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                Status::internal("internal error; the server log has the details")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_mismatch_is_aborted_with_current_version() {
        let status = Status::from(ApiError::from(Rejection::VersionMismatch {
            id: "t".into(),
            expected: 1,
            current: 3,
        }));
        assert_eq!(status.code(), Code::Aborted);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.metadata["current_version"], "3");
    }

    #[test]
    fn invalid_argument_names_fields() {
        let status = Status::from(ApiError::field("title", "must not be empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("title"));
        let bad = status.get_details_bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "title");
    }

    #[test]
    fn internal_never_leaks_detail() {
        let status = Status::from(ApiError::internal("apply", "SELECT * FROM tasks failed"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"));
    }
}
