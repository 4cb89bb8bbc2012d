//! proto ↔ domain conversions, with validation.
//!
//! Every check of user input lives here and reports *all* bad fields at
//! once, named by their proto path, before anything is proposed to Raft.

use prost_types::Timestamp;
use tonic_types::FieldViolation;

use super::error::ApiError;
use crate::domain::{Micros, NewTask, Task, TaskPatch, TaskPriority, TaskStatus};
use crate::proto;

pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 8192;
pub const MAX_ASSIGNEE_CHARS: usize = 256;
pub const MAX_LABELS: usize = 32;
pub const MAX_LABEL_CHARS: usize = 64;
pub const MAX_REQUEST_ID_CHARS: usize = 128;
pub const MAX_ID_CHARS: usize = 64;

/// The fields an `update_mask` may name.
pub const UPDATABLE_FIELDS: [&str; 7] = [
    "title",
    "description",
    "status",
    "priority",
    "deadline",
    "assignee",
    "labels",
];
const OUTPUT_ONLY_FIELDS: [&str; 4] = ["id", "create_time", "update_time", "version"];

/// Collects field violations; `finish` turns them into one error.
#[derive(Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

pub fn check_title(v: &mut Violations, field: &str, title: &str) {
    if title.trim().is_empty() {
        v.add(field, "must not be empty or only white space");
    } else if chars(title) > MAX_TITLE_CHARS {
        v.add(
            field,
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        );
    }
}

fn check_max(v: &mut Violations, field: &str, value: &str, max: usize) {
    if chars(value) > max {
        v.add(field, format!("must be at most {max} characters"));
    }
}

fn check_labels(v: &mut Violations, field: &str, labels: &[String]) {
    if labels.len() > MAX_LABELS {
        v.add(field, format!("at most {MAX_LABELS} labels"));
        return;
    }
    for (i, label) in labels.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if label.is_empty() || chars(label) > MAX_LABEL_CHARS {
            v.add(f, format!("must be 1 to {MAX_LABEL_CHARS} characters"));
        } else if label.chars().any(char::is_whitespace) {
            v.add(f, "must not contain white space");
        } else if labels[..i].contains(label) {
            v.add(f, format!("duplicate label {label:?}"));
        }
    }
}

fn status(
    v: &mut Violations,
    field: &str,
    value: i32,
    unspecified: Option<TaskStatus>,
) -> TaskStatus {
    if value == 0 {
        if let Some(default) = unspecified {
            return default;
        }
        v.add(
            field,
            "must be set (TASK_STATUS_UNSPECIFIED is not a status)",
        );
        return TaskStatus::Todo;
    }
    TaskStatus::from_i32(value).unwrap_or_else(|| {
        v.add(field, format!("unknown TaskStatus value {value}"));
        TaskStatus::Todo
    })
}

fn priority(v: &mut Violations, field: &str, value: i32) -> TaskPriority {
    TaskPriority::from_i32(value).unwrap_or_else(|| {
        v.add(field, format!("unknown TaskPriority value {value}"));
        TaskPriority::Unspecified
    })
}

/// The smallest and largest instants a `google.protobuf.Timestamp` may hold
/// (0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z).
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// A Timestamp as microseconds (sub-microsecond digits are dropped).
pub fn micros(v: &mut Violations, field: &str, ts: &Timestamp) -> Micros {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos)
    {
        v.add(field, "not a valid timestamp (years 0001 to 9999)");
        return 0;
    }
    ts.seconds * 1_000_000 + i64::from(ts.nanos / 1_000)
}

pub fn timestamp(micros: Micros) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

pub fn check_id(v: &mut Violations, field: &str, id: &str) {
    if id.is_empty() {
        v.add(field, "must not be empty");
    } else if chars(id) > MAX_ID_CHARS {
        v.add(field, format!("must be at most {MAX_ID_CHARS} characters"));
    }
}

/// Validates a CreateTask request: the new task and its idempotency key.
pub fn new_task(req: &proto::CreateTaskRequest) -> Result<(NewTask, Option<String>), ApiError> {
    let mut v = Violations::default();
    check_title(&mut v, "title", &req.title);
    check_max(
        &mut v,
        "description",
        &req.description,
        MAX_DESCRIPTION_CHARS,
    );
    check_max(&mut v, "assignee", &req.assignee, MAX_ASSIGNEE_CHARS);
    check_labels(&mut v, "labels", &req.labels);
    check_max(&mut v, "request_id", &req.request_id, MAX_REQUEST_ID_CHARS);
    let task = NewTask {
        title: req.title.clone(),
        description: req.description.clone(),
        status: status(&mut v, "status", req.status, Some(TaskStatus::Todo)),
        priority: priority(&mut v, "priority", req.priority),
        deadline: req
            .deadline
            .as_ref()
            .map(|ts| micros(&mut v, "deadline", ts)),
        assignee: req.assignee.clone(),
        labels: req.labels.clone(),
    };
    v.finish()?;
    Ok((task, optional(&req.request_id)))
}

/// A validated UpdateTask: the task's id, the patch its mask names, and the
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRequest {
    pub id: String,
    pub patch: TaskPatch,
    pub request_id: Option<String>,
}

/// Validates an UpdateTask request: the id and the patch its mask names.
pub fn task_patch(req: &proto::UpdateTaskRequest) -> Result<UpdateRequest, ApiError> {
    let mut v = Violations::default();
    check_max(&mut v, "request_id", &req.request_id, MAX_REQUEST_ID_CHARS);
    let Some(task) = &req.task else {
        return Err(ApiError::field("task", "is required"));
    };
    check_id(&mut v, "task.id", &task.id);
    let paths = req
        .update_mask
        .as_ref()
        .map(|m| m.paths.as_slice())
        .unwrap_or_default();
    if paths.is_empty() {
        v.add(
            "update_mask",
            "must name at least one field to change (or \"*\")",
        );
    }
    let mut patch = TaskPatch::default();
    for (i, path) in paths.iter().enumerate() {
        let names: Vec<&str> = if path == "*" {
            UPDATABLE_FIELDS.to_vec()
        } else {
            vec![path.as_str()]
        };
        for name in names {
            let field = format!("task.{name}");
            match name {
                "title" => {
                    check_title(&mut v, &field, &task.title);
                    patch.title = Some(task.title.clone());
                }
                "description" => {
                    check_max(&mut v, &field, &task.description, MAX_DESCRIPTION_CHARS);
                    patch.description = Some(task.description.clone());
                }
                "status" => patch.status = Some(status(&mut v, &field, task.status, None)),
                "priority" => patch.priority = Some(priority(&mut v, &field, task.priority)),
                "deadline" => {
                    patch.deadline =
                        Some(task.deadline.as_ref().map(|ts| micros(&mut v, &field, ts)));
                }
                "assignee" => {
                    check_max(&mut v, &field, &task.assignee, MAX_ASSIGNEE_CHARS);
                    patch.assignee = Some(task.assignee.clone());
                }
                "labels" => {
                    check_labels(&mut v, &field, &task.labels);
                    patch.labels = Some(task.labels.clone());
                }
                other if OUTPUT_ONLY_FIELDS.contains(&other) => {
                    v.add(
                        format!("update_mask.paths[{i}]"),
                        format!("{other:?} is output only"),
                    );
                }
                other => v.add(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "unknown field {other:?}; updatable: {}",
                        UPDATABLE_FIELDS.join(", ")
                    ),
                ),
            }
        }
    }
    v.finish()?;
    Ok(UpdateRequest {
        id: task.id.clone(),
        patch,
        request_id: optional(&req.request_id),
    })
}

pub fn task_id(field: &str, id: &str) -> Result<(), ApiError> {
    let mut v = Violations::default();
    check_id(&mut v, field, id);
    v.finish()
}

/// Validates a DeleteTask request; its idempotency key, if any.
pub fn delete_request(req: &proto::DeleteTaskRequest) -> Result<Option<String>, ApiError> {
    let mut v = Violations::default();
    check_id(&mut v, "id", &req.id);
    check_max(&mut v, "request_id", &req.request_id, MAX_REQUEST_ID_CHARS);
    v.finish()?;
    Ok(optional(&req.request_id))
}

/// An empty proto string is "not set".
fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

impl From<Task> for proto::Task {
    fn from(task: Task) -> Self {
        proto::Task {
            id: task.id,
            title: task.title,
            description: task.description,
            status: task.status as i32,
            priority: task.priority as i32,
            deadline: task.deadline.map(timestamp),
            assignee: task.assignee,
            labels: task.labels,
            create_time: Some(timestamp(task.create_time)),
            update_time: Some(timestamp(task.update_time)),
            version: task.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::FieldMask;

    fn create(title: &str) -> proto::CreateTaskRequest {
        proto::CreateTaskRequest {
            title: title.into(),
            ..Default::default()
        }
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn create_defaults_status_to_todo() {
        let (task, request_id) = new_task(&create("write docs")).unwrap();
        assert_eq!(task.status, TaskStatus::Todo);
        assert_eq!(request_id, None);
    }

    #[test]
    fn create_reports_every_bad_field() {
        let mut req = create("  ");
        req.status = 42;
        req.labels = vec!["a".into(), "a".into(), "has space".into()];
        req.description = "x".repeat(MAX_DESCRIPTION_CHARS + 1);
        let got = fields(new_task(&req).unwrap_err());
        assert_eq!(
            got,
            ["title", "description", "labels[1]", "labels[2]", "status"]
        );
    }

    #[test]
    fn title_limit_counts_characters_not_bytes() {
        assert!(new_task(&create(&"é".repeat(MAX_TITLE_CHARS))).is_ok());
        assert!(new_task(&create(&"é".repeat(MAX_TITLE_CHARS + 1))).is_err());
    }

    #[test]
    fn bad_timestamp_is_rejected() {
        let mut req = create("t");
        req.deadline = Some(Timestamp {
            seconds: 0,
            nanos: -1,
        });
        assert_eq!(fields(new_task(&req).unwrap_err()), ["deadline"]);
    }

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        for m in [0, 1, -1, 1_700_000_000_123_456, -62_135_596_800_000_000] {
            let mut v = Violations::default();
            assert_eq!(micros(&mut v, "t", &timestamp(m)), m);
            assert!(v.finish().is_ok());
        }
    }

    fn update(paths: &[&str]) -> proto::UpdateTaskRequest {
        proto::UpdateTaskRequest {
            task: Some(proto::Task {
                id: "id1".into(),
                title: "new".into(),
                status: 3,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            expected_version: 0,
            request_id: String::new(),
        }
    }

    #[test]
    fn mask_names_exactly_the_changed_fields() {
        let UpdateRequest {
            id,
            patch,
            request_id,
        } = task_patch(&update(&["title", "status"])).unwrap();
        assert_eq!(id, "id1");
        assert_eq!(request_id, None);
        assert_eq!(patch.title.as_deref(), Some("new"));
        assert_eq!(patch.status, Some(TaskStatus::Done));
        assert_eq!(patch.description, None);
    }

    #[test]
    fn bad_masks_are_invalid_argument() {
        assert_eq!(
            fields(task_patch(&update(&[])).unwrap_err()),
            ["update_mask"]
        );
        assert_eq!(
            fields(task_patch(&update(&["nope"])).unwrap_err()),
            ["update_mask.paths[0]"]
        );
        assert_eq!(
            fields(task_patch(&update(&["version"])).unwrap_err()),
            ["update_mask.paths[0]"]
        );
    }

    #[test]
    fn clearing_the_deadline_is_expressible() {
        let patch = task_patch(&update(&["deadline"])).unwrap().patch;
        assert_eq!(patch.deadline, Some(None));
    }

    #[test]
    fn write_request_ids_are_bounded() {
        let long = "r".repeat(MAX_REQUEST_ID_CHARS + 1);
        let mut request = update(&["title"]);
        request.request_id = long.clone();
        assert_eq!(fields(task_patch(&request).unwrap_err()), ["request_id"]);
        let delete = |request_id: &str| proto::DeleteTaskRequest {
            id: "id1".into(),
            expected_version: 0,
            request_id: request_id.into(),
        };
        assert_eq!(
            fields(delete_request(&delete(&long)).unwrap_err()),
            ["request_id"]
        );
        assert_eq!(delete_request(&delete("")).unwrap(), None);
        assert_eq!(delete_request(&delete("k")).unwrap().as_deref(), Some("k"));
    }
}
