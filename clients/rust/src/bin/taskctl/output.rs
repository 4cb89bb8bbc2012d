//! How taskctl prints tasks: an aligned table for people, proto3 JSON for scripts.
//!
//! The JSON is the canonical proto3 mapping, encoded from the message
//! descriptors (prost-reflect): lowerCamelCase keys, enums by name, 64-bit
//! integers as strings, RFC 3339 UTC times, default-valued fields left out —
//! what grpcurl prints.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use taskd_client::pb;

static TASK_DESCRIPTOR: LazyLock<prost_reflect::MessageDescriptor> = LazyLock::new(|| {
    DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set built with the stubs decodes")
        .get_message_by_name("taskd.v1.Task")
        .expect("taskd.v1.Task is in the descriptor set")
});

/// One task as a message that serializes to proto3 JSON, fields in proto order.
fn task_message(task: &pb::Task) -> DynamicMessage {
    DynamicMessage::decode(TASK_DESCRIPTOR.clone(), task.encode_to_vec().as_slice())
        .expect("a task re-decodes with its own descriptor")
}

/// One task as a pretty-printed JSON object.
pub fn json_one(task: &pb::Task) -> String {
    pretty(&task_message(task))
}

/// Tasks as a pretty-printed JSON array (`[]` when there are none).
pub fn json_list(tasks: &[pb::Task]) -> String {
    pretty(&tasks.iter().map(task_message).collect::<Vec<_>>())
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("a task serializes to JSON") + "\n"
}

const HEADER: [&str; 8] = [
    "ID", "TITLE", "STATUS", "PRIORITY", "ASSIGNEE", "DEADLINE", "LABELS", "VERSION",
];

/// Tasks as a table with a header line; columns are left-aligned and
/// separated by two spaces; empty values print as `-`.
pub fn table(tasks: &[pb::Task]) -> String {
    let rows: Vec<[String; 8]> = tasks.iter().map(row).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = HEADER.map(String::from);
    for cells in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            let pad = width - cell.chars().count();
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(task: &pb::Task) -> [String; 8] {
    let or_dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    [
        task.id.clone(),
        // One task, one line: a title's line breaks would break the table.
        task.title.replace(['\n', '\r', '\t'], " "),
        status_name(task.status()).to_string(),
        priority_name(task.priority()).to_string(),
        or_dash(task.assignee.clone()),
        task.deadline
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into()),
        or_dash(task.labels.join(",")),
        task.version.to_string(),
    ]
}

pub fn status_name(status: pb::TaskStatus) -> &'static str {
    match status {
        pb::TaskStatus::Unspecified => "-",
        pb::TaskStatus::Todo => "todo",
        pb::TaskStatus::InProgress => "in_progress",
        pb::TaskStatus::Done => "done",
        pb::TaskStatus::Cancelled => "cancelled",
    }
}

pub fn priority_name(priority: pb::TaskPriority) -> &'static str {
    match priority {
        pb::TaskPriority::Unspecified => "-",
        pb::TaskPriority::Low => "low",
        pb::TaskPriority::Medium => "medium",
        pb::TaskPriority::High => "high",
        pb::TaskPriority::Urgent => "urgent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> pb::Task {
        pb::Task {
            id: "0190-a".into(),
            title: "Ship it".into(),
            status: pb::TaskStatus::InProgress.into(),
            priority: pb::TaskPriority::High.into(),
            deadline: Some("2030-01-02T03:04:05Z".parse().unwrap()),
            labels: vec!["a".into(), "b".into()],
            create_time: Some("2024-05-01T10:00:00.123456Z".parse().unwrap()),
            version: 18446744073709551615,
            ..Default::default()
        }
    }

    #[test]
    fn json_is_canonical_proto3() {
        let text = json_one(&sample());
        assert!(
            text.find("\"id\"") < text.find("\"title\""),
            "proto field order: {text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "0190-a",
                "title": "Ship it",
                "status": "TASK_STATUS_IN_PROGRESS",
                "priority": "TASK_PRIORITY_HIGH",
                "deadline": "2030-01-02T03:04:05Z",
                "labels": ["a", "b"],
                "createTime": "2024-05-01T10:00:00.123456Z",
                "version": "18446744073709551615",
            })
        );
    }

    #[test]
    fn json_list_is_an_array() {
        assert_eq!(json_list(&[]), "[]\n");
        let list: serde_json::Value = serde_json::from_str(&json_list(&[sample()])).unwrap();
        assert_eq!(list[0]["id"], "0190-a");
    }

    #[test]
    fn table_aligns_columns_and_dashes_empty_cells() {
        let other = pb::Task {
            id: "b".into(),
            title: "x".into(),
            version: 1,
            ..Default::default()
        };
        assert_eq!(
            table(&[sample(), other]),
            "\
ID      TITLE    STATUS       PRIORITY  ASSIGNEE  DEADLINE              LABELS  VERSION
0190-a  Ship it  in_progress  high      -         2030-01-02T03:04:05Z  a,b     18446744073709551615
b       x        -            -         -         -                     -       1
"
        );
    }
}
