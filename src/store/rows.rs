//! Tasks and request ids as rows: decoding (a row that fails to decode is
//! `Corrupt`, never a panic) and the multi-row statements that write them.
//!
//! Text columns are read as bytes and checked as UTF-8 here: MySQL flags
//! `utf8mb4_bin` columns as BINARY, which sqlx refuses to decode as `String`.

use std::borrow::Cow;

use crate::domain::{Micros, Task, TaskPriority, TaskStatus};

use super::pool::{chunks, multi_row_sql, placeholders, to_i64, to_u64, Arg, Stmt};
use super::{RequestIdRow, SmMeta, StoreError};

/// The `deadline` column's value for "no deadline": sorts after every date.
pub(crate) const NO_DEADLINE: i64 = i64::MAX;

pub(crate) const TASK_COLUMNS: &str = "id, title, description, status, priority, deadline, \
     assignee, labels, create_time, update_time, version";
const TASK_COLUMN_COUNT: usize = 11;

pub(crate) fn deadline_key(deadline: Option<Micros>) -> i64 {
    deadline.unwrap_or(NO_DEADLINE)
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|_| StoreError::Corrupt(format!("{what} is not UTF-8")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    id: Vec<u8>,
    title: Vec<u8>,
    description: Vec<u8>,
    status: i64,
    priority: i64,
    deadline: i64,
    assignee: Vec<u8>,
    labels: Vec<u8>,
    create_time: i64,
    update_time: i64,
    version: i64,
}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;

    fn try_from(row: TaskRow) -> Result<Task, StoreError> {
        let id = utf8(row.id, "task id")?;
        let corrupt = |what: String| StoreError::Corrupt(format!("task {id}: {what}"));
        let status = i32::try_from(row.status)
            .ok()
            .and_then(TaskStatus::from_i32)
            .ok_or_else(|| corrupt(format!("unknown status {}", row.status)))?;
        let priority = i32::try_from(row.priority)
            .ok()
            .and_then(TaskPriority::from_i32)
            .ok_or_else(|| corrupt(format!("unknown priority {}", row.priority)))?;
        let labels: Vec<String> = serde_json::from_slice(&row.labels)
            .map_err(|e| corrupt(format!("labels are not a JSON string array: {e}")))?;
        let version = to_u64(row.version, "version")?;
        Ok(Task {
            title: utf8(row.title, "task title")?,
            description: utf8(row.description, "task description")?,
            status,
            priority,
            deadline: (row.deadline != NO_DEADLINE).then_some(row.deadline),
            assignee: utf8(row.assignee, "task assignee")?,
            labels,
            create_time: row.create_time,
            update_time: row.update_time,
            version,
            id,
        })
    }
}

/// The columns [`RequestIdDbRow`] reads.
pub(crate) const REQUEST_ID_COLUMNS: &str = "request_id, task_id, create_time, fingerprint, result";

#[derive(sqlx::FromRow)]
pub(crate) struct RequestIdDbRow {
    request_id: Vec<u8>,
    task_id: Vec<u8>,
    create_time: i64,
    fingerprint: Vec<u8>,
    result: Option<Vec<u8>>,
}

impl TryFrom<RequestIdDbRow> for RequestIdRow {
    type Error = StoreError;

    fn try_from(row: RequestIdDbRow) -> Result<RequestIdRow, StoreError> {
        let request_id = utf8(row.request_id, "request id")?;
        let result = match row.result {
            None => None,
            Some(bytes) => Some(rmp_serde::from_slice(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("request id {request_id:?}: result: {e}"))
            })?),
        };
        Ok(RequestIdRow {
            task_id: utf8(row.task_id, "request id's task id")?,
            create_time: row.create_time,
            fingerprint: row.fingerprint,
            result,
            request_id,
        })
    }
}

fn task_args(task: &Task) -> Result<Vec<Arg<'_>>, StoreError> {
    let labels = serde_json::to_string(&task.labels)
        .map_err(|e| StoreError::Corrupt(format!("task {}: labels: {e}", task.id)))?;
    Ok(vec![
        Arg::text(&task.id),
        Arg::text(&task.title),
        Arg::text(&task.description),
        Arg::Int(task.status as i32 as i64),
        Arg::Int(task.priority as i32 as i64),
        Arg::Int(deadline_key(task.deadline)),
        Arg::text(&task.assignee),
        Arg::Text(Cow::Owned(labels)),
        Arg::Int(task.create_time),
        Arg::Int(task.update_time),
        Arg::Int(to_i64(task.version, "version")?),
    ])
}

fn task_size(task: &Task) -> usize {
    task.title.len() + task.description.len() + task.labels.iter().map(String::len).sum::<usize>()
}

/// `REPLACE INTO tasks …` for `tasks` (rows at the same id are replaced) and
/// their `task_labels` rows. Old labels must be deleted first.
pub(crate) fn write_tasks<'a>(tasks: &[&'a Task]) -> Result<Vec<Stmt<'a>>, StoreError> {
    let mut stmts = Vec::new();
    for chunk in chunks(tasks, |t| task_size(t)) {
        let mut args = Vec::with_capacity(chunk.len() * TASK_COLUMN_COUNT);
        for task in chunk {
            args.extend(task_args(task)?);
        }
        let sql = multi_row_sql(
            &format!("REPLACE INTO tasks ({TASK_COLUMNS})"),
            TASK_COLUMN_COUNT,
            chunk.len(),
        );
        stmts.push(Stmt::new(sql, args));
    }

    let mut labels: Vec<(&'a str, &'a str)> = tasks
        .iter()
        .flat_map(|t| t.labels.iter().map(|l| (l.as_str(), t.id.as_str())))
        .collect();
    // A label given twice is one row.
    labels.sort_unstable();
    labels.dedup();
    for chunk in chunks(&labels, |(l, t)| l.len() + t.len()) {
        let args = chunk
            .iter()
            .flat_map(|(l, t)| [Arg::text(l), Arg::text(t)])
            .collect();
        let sql = multi_row_sql("INSERT INTO task_labels (label, task_id)", 2, chunk.len());
        stmts.push(Stmt::new(sql, args));
    }
    Ok(stmts)
}

/// `DELETE FROM table WHERE column IN (…)`, chunked.
pub(crate) fn delete_in<'a>(table: &str, column: &str, keys: &[&'a str]) -> Vec<Stmt<'a>> {
    chunks(keys, |k| k.len())
        .into_iter()
        .map(|chunk| {
            Stmt::new(
                format!(
                    "DELETE FROM {table} WHERE {column} IN {}",
                    placeholders(chunk.len())
                ),
                chunk.iter().map(|k| Arg::text(k)).collect(),
            )
        })
        .collect()
}

/// `SELECT columns FROM table WHERE key IN (…)`, chunked.
pub(crate) fn select_in<'a>(
    columns: &str,
    table: &str,
    key: &str,
    keys: &[&'a str],
) -> Vec<Stmt<'a>> {
    chunks(keys, |k| k.len())
        .into_iter()
        .map(|chunk| {
            Stmt::new(
                format!(
                    "SELECT {columns} FROM {table} WHERE {key} IN {}",
                    placeholders(chunk.len())
                ),
                chunk.iter().map(|k| Arg::text(k)).collect(),
            )
        })
        .collect()
}

/// `REPLACE INTO request_ids …`, chunked.
pub(crate) fn write_request_ids<'a>(
    rows: &[&'a RequestIdRow],
) -> Result<Vec<Stmt<'a>>, StoreError> {
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let encoded = match &row.result {
            None => None,
            Some(result) => Some(rmp_serde::to_vec(result).map_err(|e| {
                StoreError::Corrupt(format!("request id {:?}: result: {e}", row.request_id))
            })?),
        };
        results.push((*row, encoded));
    }
    let size = |(r, result): &(&RequestIdRow, Option<Vec<u8>>)| {
        r.request_id.len()
            + r.task_id.len()
            + r.fingerprint.len()
            + result.as_ref().map_or(0, Vec::len)
    };
    Ok(chunks(&results, size)
        .into_iter()
        .map(|chunk| {
            let args = chunk
                .iter()
                .flat_map(|(r, result)| {
                    let r: &'a RequestIdRow = r;
                    [
                        Arg::text(&r.request_id),
                        Arg::text(&r.task_id),
                        Arg::Int(r.create_time),
                        Arg::bytes(&r.fingerprint),
                        Arg::Bytes(result.clone().map(Cow::Owned)),
                    ]
                })
                .collect();
            let sql = multi_row_sql(
                "REPLACE INTO request_ids (request_id, task_id, create_time, fingerprint, result)",
                5,
                chunk.len(),
            );
            Stmt::new(sql, args)
        })
        .collect())
}

pub(crate) fn write_sm_meta(meta: &SmMeta) -> Stmt<'_> {
    Stmt::new(
        "REPLACE INTO sm_meta (id, last_applied, membership) VALUES (1, ?, ?)",
        vec![
            Arg::opt_bytes(meta.last_applied.as_deref()),
            Arg::opt_bytes(meta.membership.as_deref()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: i64, labels: &str) -> TaskRow {
        TaskRow {
            id: b"t1".to_vec(),
            title: b"title".to_vec(),
            description: Vec::new(),
            status,
            priority: 0,
            deadline: NO_DEADLINE,
            assignee: Vec::new(),
            labels: labels.as_bytes().to_vec(),
            create_time: 1,
            update_time: 2,
            version: 3,
        }
    }

    #[test]
    fn bad_rows_are_corrupt_not_panics() {
        let task = Task::try_from(row(1, r#"["a","b"]"#)).unwrap();
        assert_eq!(task.labels, vec!["a", "b"]);
        assert_eq!(task.deadline, None);
        assert!(matches!(
            Task::try_from(row(9, "[]")),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            Task::try_from(row(1, "{")),
            Err(StoreError::Corrupt(_))
        ));
        let mut bad = row(1, "[]");
        bad.id = vec![0xff];
        assert!(matches!(Task::try_from(bad), Err(StoreError::Corrupt(_))));
        let mut bad = row(1, "[]");
        bad.version = -1;
        assert!(matches!(Task::try_from(bad), Err(StoreError::Corrupt(_))));
    }
}
