//! Request validation and proto → domain conversion (`api::convert`,
//! `api::list`): any protobuf bytes, decoded as one of the TaskService
//! requests, are either accepted with every documented invariant holding,
//! or rejected as INVALID_ARGUMENT naming only fields of that request.
//!
//! Input: one byte choosing the request type, then its protobuf encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use taskd::api::convert::{self, *};
use taskd::api::list::{ListRequest, MAX_PAGE_SIZE};
use taskd::proto;
use taskd_fuzz::invalid_fields;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => create(bytes),
        1 => update(bytes),
        2 => by_id(bytes),
        _ => list(bytes),
    }
});

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The deadline a valid Timestamp converts to: the same instant, truncated
/// to microseconds.
fn same_instant(micros: i64, ts: &prost_types::Timestamp) {
    let back = convert::timestamp(micros);
    assert_eq!(back.seconds, ts.seconds);
    assert_eq!(back.nanos, ts.nanos / 1_000 * 1_000);
}

fn labels_valid(labels: &[String]) {
    assert!(labels.len() <= MAX_LABELS);
    for (i, label) in labels.iter().enumerate() {
        assert!(!label.is_empty() && chars(label) <= MAX_LABEL_CHARS);
        assert!(!label.chars().any(char::is_whitespace));
        assert!(!labels[..i].contains(label));
    }
}

fn create(bytes: &[u8]) {
    let Ok(req) = proto::CreateTaskRequest::decode(bytes) else {
        return;
    };
    match convert::new_task(&req) {
        Ok((task, request_id)) => {
            assert!(!task.title.trim().is_empty() && chars(&task.title) <= MAX_TITLE_CHARS);
            assert_eq!(task.title, req.title);
            assert!(chars(&task.description) <= MAX_DESCRIPTION_CHARS);
            assert!(chars(&task.assignee) <= MAX_ASSIGNEE_CHARS);
            assert_eq!(task.assignee, req.assignee);
            labels_valid(&task.labels);
            assert_eq!(task.labels, req.labels);
            assert_eq!(request_id.is_some(), !req.request_id.is_empty());
            assert!(chars(&req.request_id) <= MAX_REQUEST_ID_CHARS);
            assert_eq!(task.status as i32 == req.status, req.status != 0);
            assert_eq!(task.priority as i32, req.priority);
            match (task.deadline, &req.deadline) {
                (Some(m), Some(ts)) => same_instant(m, ts),
                (None, None) => {}
                other => panic!("deadline lost or invented: {other:?}"),
            }
        }
        Err(e) => {
            invalid_fields(
                e,
                &[
                    "title",
                    "description",
                    "status",
                    "priority",
                    "deadline",
                    "assignee",
                    "labels",
                    "request_id",
                ],
            );
        }
    }
}

fn update(bytes: &[u8]) {
    let Ok(req) = proto::UpdateTaskRequest::decode(bytes) else {
        return;
    };
    match convert::task_patch(&req) {
        Ok(UpdateRequest {
            id,
            patch,
            request_id,
        }) => {
            assert!(chars(&req.request_id) <= MAX_REQUEST_ID_CHARS);
            assert_eq!(request_id.unwrap_or_default(), req.request_id);
            let task = req.task.as_ref().expect("an accepted update has a task");
            assert_eq!(id, task.id);
            assert!(!id.is_empty() && chars(&id) <= MAX_ID_CHARS);
            let paths = &req.update_mask.as_ref().expect("a mask").paths;
            let named = |field: &str| paths.iter().any(|p| p == field || p == "*");
            // The patch changes exactly the fields the mask names.
            assert_eq!(patch.title.is_some(), named("title"));
            assert_eq!(patch.description.is_some(), named("description"));
            assert_eq!(patch.status.is_some(), named("status"));
            assert_eq!(patch.priority.is_some(), named("priority"));
            assert_eq!(patch.deadline.is_some(), named("deadline"));
            assert_eq!(patch.assignee.is_some(), named("assignee"));
            assert_eq!(patch.labels.is_some(), named("labels"));
            if let Some(title) = &patch.title {
                assert!(!title.trim().is_empty() && chars(title) <= MAX_TITLE_CHARS);
            }
            if let Some(labels) = &patch.labels {
                labels_valid(labels);
            }
            if let Some(deadline) = patch.deadline {
                match (deadline, &task.deadline) {
                    (Some(m), Some(ts)) => same_instant(m, ts),
                    (None, None) => {}
                    other => panic!("deadline lost or invented: {other:?}"),
                }
            }
            assert_ne!(patch.status.map(|s| s as i32), Some(0));
        }
        Err(e) => {
            invalid_fields(e, &["task", "update_mask", "request_id"]);
        }
    }
}

fn by_id(bytes: &[u8]) {
    // GetTaskRequest and DeleteTaskRequest both carry the id as field 1.
    let Ok(req) = proto::GetTaskRequest::decode(bytes) else {
        return;
    };
    match convert::task_id("id", &req.id) {
        Ok(()) => assert!(!req.id.is_empty() && chars(&req.id) <= MAX_ID_CHARS),
        Err(e) => {
            assert_eq!(invalid_fields(e, &["id"]), ["id"]);
        }
    }
    let Ok(delete) = proto::DeleteTaskRequest::decode(bytes) else {
        return;
    };
    match convert::delete_request(&delete) {
        Ok(request_id) => {
            assert!(!delete.id.is_empty() && chars(&delete.id) <= MAX_ID_CHARS);
            assert!(chars(&delete.request_id) <= MAX_REQUEST_ID_CHARS);
            assert_eq!(request_id.unwrap_or_default(), delete.request_id);
        }
        Err(e) => {
            invalid_fields(e, &["id", "request_id"]);
        }
    }
}

fn list(bytes: &[u8]) {
    let Ok(req) = proto::ListTasksRequest::decode(bytes) else {
        return;
    };
    match ListRequest::parse(&req) {
        Ok(parsed) => {
            let q = &parsed.query;
            assert!((1..=MAX_PAGE_SIZE).contains(&q.limit));
            assert_eq!(q.status.map(|s| s as i32).unwrap_or(0), req.status);
            assert_eq!(q.assignee.as_deref().unwrap_or(""), req.assignee);
            assert_eq!(q.label.as_deref().unwrap_or(""), req.label);
            assert_eq!(q.after.is_some(), !req.page_token.is_empty());
        }
        Err(e) => {
            invalid_fields(
                e,
                &[
                    "page_size",
                    "page_token",
                    "status",
                    "assignee",
                    "label",
                    "deadline_before",
                    "deadline_after",
                    "order_by",
                    "consistency",
                ],
            );
        }
    }
}
