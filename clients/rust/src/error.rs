//! [`Error`]: what a [`TaskClient`](crate::TaskClient) call fails with, decoded
//! from the server's `tonic::Status` and its `google.rpc` details.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// One bad field of a request, from the server's `google.rpc.BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field's path, e.g. `title` or `labels[2]`.
    pub field: String,
    pub description: String,
}

/// Why a call failed. Every variant keeps the server's message, which says
/// what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No task has the id (NOT_FOUND).
    #[error("not found: {message}")]
    NotFound { message: String },
    /// The request was rejected before anything changed (INVALID_ARGUMENT);
    /// `field_violations` names every bad field.
    #[error("invalid argument: {}", describe_violations(.message, .field_violations))]
    InvalidArgument {
        message: String,
        field_violations: Vec<FieldViolation>,
    },
    /// The task is not at the expected version (ABORTED or
    /// FAILED_PRECONDITION); nothing changed. `current_version` is the version
    /// the task is at, when the server said so: re-read and try again.
    #[error("conflict: {message}")]
    Conflict {
        message: String,
        current_version: Option<u64>,
    },
    /// The create's `request_id` already created a task that has since been
    /// deleted (ALREADY_EXISTS).
    #[error("already exists: {message}")]
    AlreadyExists { message: String },
    /// No endpoint could serve the call within the retries and the deadline:
    /// nodes down, unreachable, or without a leader (UNAVAILABLE).
    #[error("unavailable: {message}")]
    Unavailable { message: String },
    /// The deadline passed before an answer came (DEADLINE_EXCEEDED). A write
    /// may still have been applied.
    #[error("deadline exceeded: {message}")]
    DeadlineExceeded { message: String },
    /// A write may or may not have been applied, and the retries ran out
    /// before an answer said which (the server's OUTCOME_UNKNOWN, or a
    /// connection lost after the call was sent). Read before acting on it.
    #[error("outcome unknown: {message}")]
    OutcomeUnknown { message: String },
    /// The server does not know who is calling (UNAUTHENTICATED): no token,
    /// or one it does not accept. Not retried: set a valid token
    /// ([`ClientOptions::token`](crate::ClientOptions::token)).
    #[error("unauthenticated: {message}")]
    Unauthenticated { message: String },
    /// The caller's role may not make this call (PERMISSION_DENIED), e.g. a
    /// reader token creating a task. Not retried.
    #[error("permission denied: {message}")]
    PermissionDenied { message: String },
    /// The [`ClientOptions`](crate::ClientOptions) cannot be used: a token
    /// that is not printable ASCII, or a CA certificate or client identity
    /// that is not usable PEM.
    #[error("invalid options: {message}")]
    InvalidOptions { message: String },
    /// An endpoint given to [`TaskClient::connect`](crate::TaskClient::connect)
    /// is not a usable address, or none was given.
    #[error("invalid endpoint {endpoint:?}: {message}")]
    InvalidEndpoint { endpoint: String, message: String },
    /// Any other status (INTERNAL, RESOURCE_EXHAUSTED, …).
    #[error("{}: {message}", code_name(*.code))]
    Other { code: Code, message: String },
}

impl Error {
    /// The gRPC code this error stands for.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound { .. } => Code::NotFound,
            Error::InvalidArgument { .. }
            | Error::InvalidEndpoint { .. }
            | Error::InvalidOptions { .. } => Code::InvalidArgument,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::Conflict { .. } => Code::Aborted,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Unavailable { .. } => Code::Unavailable,
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Error::OutcomeUnknown { .. } => Code::Unknown,
            Error::Other { code, .. } => *code,
        }
    }

    pub(crate) fn missing_field(what: &str) -> Self {
        Error::Other {
            code: Code::Internal,
            message: format!("the server's response carried no {what}"),
        }
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let message = status.message().to_string();
        match status.code() {
            Code::NotFound => Error::NotFound { message },
            Code::InvalidArgument => {
                let field_violations = status
                    .get_details_bad_request()
                    .map(|bad| {
                        bad.field_violations
                            .into_iter()
                            .map(|v| FieldViolation {
                                field: v.field,
                                description: v.description,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Error::InvalidArgument {
                    message,
                    field_violations,
                }
            }
            Code::Aborted | Code::FailedPrecondition => {
                let current_version = status
                    .get_details_error_info()
                    .and_then(|info| info.metadata.get("current_version")?.parse().ok());
                Error::Conflict {
                    message,
                    current_version,
                }
            }
            Code::AlreadyExists => Error::AlreadyExists { message },
            Code::Unauthenticated => Error::Unauthenticated { message },
            Code::PermissionDenied => Error::PermissionDenied { message },
            Code::Unavailable => Error::Unavailable { message },
            Code::DeadlineExceeded => Error::DeadlineExceeded { message },
            Code::Unknown
                if status
                    .get_details_error_info()
                    .is_some_and(|info| info.reason == "OUTCOME_UNKNOWN") =>
            {
                Error::OutcomeUnknown { message }
            }
            code => Error::Other { code, message },
        }
    }
}

/// `field: description; …` when the server named fields, else its message.
fn describe_violations(message: &str, violations: &[FieldViolation]) -> String {
    if violations.is_empty() {
        return message.to_string();
    }
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `Code::PermissionDenied` → `permission denied`.
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push(' ');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid argument: title: must not be empty",
            ErrorDetails::with_bad_request_violation("title", "must not be empty"),
        );
        let error = Error::from(status);
        let Error::InvalidArgument {
            field_violations, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(
            field_violations,
            &[FieldViolation {
                field: "title".into(),
                description: "must not be empty".into()
            }]
        );
        assert_eq!(
            error.to_string(),
            "invalid argument: title: must not be empty"
        );
    }

    #[test]
    fn aborted_is_conflict_with_current_version() {
        let metadata = HashMap::from([
            ("current_version".to_string(), "3".to_string()),
            ("expected_version".to_string(), "1".to_string()),
        ]);
        let status = Status::with_error_details(
            Code::Aborted,
            "task \"t\" is at version 3",
            ErrorDetails::with_error_info("VERSION_MISMATCH", "taskd.v1", metadata),
        );
        let Error::Conflict {
            current_version, ..
        } = Error::from(status)
        else {
            panic!("not a conflict");
        };
        assert_eq!(current_version, Some(3));
    }

    #[test]
    fn codes_map_to_variants() {
        assert!(matches!(
            Error::from(Status::not_found("task \"x\" not found")),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            Error::from(Status::unavailable("no leader")),
            Error::Unavailable { .. }
        ));
        assert!(matches!(
            Error::from(Status::deadline_exceeded("late")),
            Error::DeadlineExceeded { .. }
        ));
        assert!(matches!(
            Error::from(Status::already_exists("used")),
            Error::AlreadyExists { .. }
        ));
        let denied = Error::from(Status::permission_denied("role reader may not create"));
        assert!(
            matches!(denied, Error::PermissionDenied { .. }),
            "{denied:?}"
        );
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(
            denied.to_string(),
            "permission denied: role reader may not create"
        );
        let unknown = Error::from(Status::unauthenticated("unknown token"));
        assert!(
            matches!(unknown, Error::Unauthenticated { .. }),
            "{unknown:?}"
        );
        assert_eq!(unknown.code(), Code::Unauthenticated);
        assert_eq!(unknown.to_string(), "unauthenticated: unknown token");
        let other = Error::from(Status::resource_exhausted("too big"));
        assert_eq!(other.code(), Code::ResourceExhausted);
        assert_eq!(other.to_string(), "resource exhausted: too big");
    }
}
