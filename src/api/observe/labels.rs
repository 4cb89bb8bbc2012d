//! The labels of the gRPC metrics: a call's method, bounded to the methods
//! served here, and its status code's name.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use http::{HeaderMap, StatusCode};
use prost::Message;
use tonic::Code;

/// The `method` label of paths that name no method served here.
pub(super) const UNKNOWN_METHOD: &str = "unknown";

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
pub(super) fn method_label(path: &str) -> Arc<str> {
    if KNOWN_METHODS.contains(path) {
        Arc::from(path)
    } else {
        Arc::from(UNKNOWN_METHOD)
    }
}

pub(super) fn header_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.trim().parse().ok()?))
}

/// gRPC's mapping of an HTTP status without a gRPC status
/// (doc/http-grpc-status-mapping.md).
pub(super) fn http_code(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

pub(super) use crate::proto::code_name;

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
