//! What every fuzz target checks of a rejected input: it is INVALID_ARGUMENT,
//! it names only fields of the request, and the gRPC status carries the same
//! field violations as `google.rpc.BadRequest`.

use taskd::api::error::ApiError;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The field names of `error`, after checking that it is a proper
/// INVALID_ARGUMENT naming only `allowed` fields (or their elements / subfields).
pub fn invalid_fields(error: ApiError, allowed: &[&str]) -> Vec<String> {
    let ApiError::InvalidArgument(violations) = &error else {
        panic!("bad input must be INVALID_ARGUMENT, got {error:?}");
    };
    assert!(!violations.is_empty(), "an INVALID_ARGUMENT names no field");
    let fields: Vec<String> = violations.iter().map(|v| v.field.clone()).collect();
    for violation in violations {
        let field = violation.field.as_str();
        let known = allowed.iter().any(|a| {
            field == *a
                || field
                    .strip_prefix(a)
                    .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
        });
        assert!(known, "violation names an unknown field {field:?}");
        assert!(!violation.description.is_empty(), "{field}: no description");
    }
    let status = Status::from(error);
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries a BadRequest");
    let in_details: Vec<String> = details
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(in_details, fields, "BadRequest differs from the error");
    fields
}
