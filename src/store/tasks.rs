//! Reads of the task table: one task by id, and keyset-paged lists.

use std::borrow::Cow;

use crate::domain::Task;

use super::pool::{Arg, Stmt};
use super::rows::{TaskRow, NO_DEADLINE, TASK_COLUMNS};
use super::{ListOrder, ListQuery, Store, StoreError};

/// The `SELECT` for one page: filters, then `(key, id) > cursor` written as
/// `key > ? OR (key = ? AND id > ?)`, `ORDER BY key, id LIMIT ?`. No OFFSET.
pub(crate) fn list_stmt(query: &ListQuery) -> Stmt<'_> {
    let key = match query.order {
        ListOrder::CreateTime => "create_time",
        ListOrder::Deadline => "deadline",
    };
    let mut conditions: Vec<Cow<'static, str>> = Vec::new();
    let mut args = Vec::new();
    if let Some(status) = query.status {
        conditions.push("status = ?".into());
        args.push(Arg::Int(status as i32 as i64));
    }
    if let Some(assignee) = &query.assignee {
        conditions.push("assignee = ?".into());
        args.push(Arg::text(assignee));
    }
    if let Some(label) = &query.label {
        conditions.push(
            "EXISTS (SELECT 1 FROM task_labels l WHERE l.task_id = tasks.id AND l.label = ?)"
                .into(),
        );
        args.push(Arg::text(label));
    }
    if let Some(before) = query.deadline_before {
        // "No deadline" is stored as i64::MAX, which no `<` can include.
        conditions.push("deadline < ?".into());
        args.push(Arg::Int(before));
    }
    if let Some(after) = query.deadline_after {
        conditions.push("deadline > ? AND deadline < ?".into());
        args.push(Arg::Int(after));
        args.push(Arg::Int(NO_DEADLINE));
    }
    if let Some(cursor) = &query.after {
        conditions.push(format!("({key} > ? OR ({key} = ? AND id > ?))").into());
        args.push(Arg::Int(cursor.key));
        args.push(Arg::Int(cursor.key));
        args.push(Arg::text(&cursor.id));
    }
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY {key}, id LIMIT ?"));
    args.push(Arg::Int(i64::from(query.limit)));
    Stmt::new(sql, args)
}

impl Store {
    /// The task with this id, as of the last applied entry on this node.
    pub async fn get_task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let row: Option<TaskRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(Task::try_from).transpose()
    }

    /// At most `query.limit` tasks matching the filters, in `query.order`,
    /// strictly after `query.after`.
    pub async fn list_tasks(&self, query: &ListQuery) -> Result<Vec<Task>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let stmt = list_stmt(query);
        let rows: Vec<TaskRow> = on_pool!(self, read, |pool| {
            bind_args!(sqlx::query_as(&stmt.sql), stmt.args)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(Task::try_from).collect()
    }
}

#[cfg(test)]
mod tests;
