//! The state machine's one write path: a batch of commands in one transaction.
//!
//! Two reads load everything the batch can touch (the request ids of its
//! creates, then the tasks its updates/deletes and those request ids name),
//! the commands run in order over an in-memory overlay so that later entries
//! see earlier ones, and the changes go back as multi-row statements together
//! with `sm_meta`. No clock, no randomness: every node gets the same results.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::{Command, CommandResult, Micros, Rejection, Task, REQUEST_ID_TTL_MICROS};

use super::pool::{ApplyPool, Arg, Stmt};
use super::rows::{
    delete_in, select_in, write_request_ids, write_sm_meta, write_tasks, RequestIdDbRow, TaskRow,
    REQUEST_ID_COLUMNS, TASK_COLUMNS,
};
use super::{RequestIdRow, SmMeta, Store, StoreError};

/// The batch's view of the tables: loaded rows plus the batch's own changes.
#[derive(Default)]
struct Overlay {
    /// `None` = deleted (or never existed). Ids not present were not loaded,
    /// which means no command of the batch refers to them.
    tasks: HashMap<String, Option<Task>>,
    request_ids: HashMap<String, RequestIdRow>,
    /// Ids whose row (and labels) must be rewritten or deleted.
    dirty: BTreeSet<String>,
    /// Ids this batch created that it did not load: fresh UUIDv7s from the
    /// proposer, so the tables hold no row or label of theirs to delete
    /// first (and every node decides this the same way).
    fresh: BTreeSet<String>,
    new_request_ids: BTreeMap<String, RequestIdRow>,
    /// The largest `now` seen so far in the batch: request-id expiry is
    /// measured against it, never against a local clock.
    now_max: Option<Micros>,
}

impl Overlay {
    /// One write, deduplicated by its request_id: a key seen before answers
    /// the first call's result (a create: the task as it is now), or
    /// REQUEST_ID_REUSED when the first call asked for something else.
    fn apply(&mut self, command: &Command) -> CommandResult {
        let now = match command {
            Command::CreateTask { now, .. }
            | Command::UpdateTask { now, .. }
            | Command::DeleteTask { now, .. } => *now,
        };
        self.see_now(now);
        let Some(request_id) = command.request_id() else {
            return self.apply_once(command);
        };
        let fingerprint = command.fingerprint();
        if let Some(known) = self.live_request_id(request_id) {
            // Rows from before fingerprints were kept have none: trust them.
            if !known.fingerprint.is_empty() && known.fingerprint != fingerprint {
                return CommandResult::Rejected(Rejection::RequestIdReused {
                    request_id: request_id.to_owned(),
                });
            }
            if let Some(first) = &known.result {
                return first.clone();
            }
            let task_id = known.task_id.clone();
            return match self.tasks.get(&task_id).cloned().flatten() {
                Some(task) => CommandResult::Task(task),
                None => CommandResult::Rejected(Rejection::RequestIdTaskDeleted {
                    request_id: request_id.to_owned(),
                    id: task_id,
                }),
            };
        }
        let result = self.apply_once(command);
        let (task_id, kept) = match command {
            Command::CreateTask { id, .. } => (id.clone(), None),
            Command::UpdateTask { id, .. } | Command::DeleteTask { id, .. } => {
                (id.clone(), Some(result.clone()))
            }
        };
        let row = RequestIdRow {
            request_id: request_id.to_owned(),
            task_id,
            create_time: now,
            fingerprint,
            result: kept,
        };
        self.request_ids.insert(row.request_id.clone(), row.clone());
        self.new_request_ids.insert(row.request_id.clone(), row);
        result
    }

    /// One write, as if for the first time.
    fn apply_once(&mut self, command: &Command) -> CommandResult {
        match command {
            Command::CreateTask { id, now, task, .. } => {
                if !self.tasks.contains_key(id) {
                    self.fresh.insert(id.clone());
                }
                let created = Task {
                    id: id.clone(),
                    title: task.title.clone(),
                    description: task.description.clone(),
                    status: task.status,
                    priority: task.priority,
                    deadline: task.deadline,
                    assignee: task.assignee.clone(),
                    labels: task.labels.clone(),
                    create_time: *now,
                    update_time: *now,
                    version: 1,
                };
                self.put(Some(created.clone()), id);
                CommandResult::Task(created)
            }
            Command::UpdateTask {
                id,
                expected_version,
                now,
                patch,
                ..
            } => {
                let mut task = match self.current(id, *expected_version) {
                    Ok(task) => task,
                    Err(rejection) => return CommandResult::Rejected(rejection),
                };
                patch.apply_to(&mut task);
                task.version += 1;
                task.update_time = task.update_time.max(*now);
                self.put(Some(task.clone()), id);
                CommandResult::Task(task)
            }
            Command::DeleteTask {
                id,
                expected_version,
                ..
            } => {
                if let Err(rejection) = self.current(id, *expected_version) {
                    return CommandResult::Rejected(rejection);
                }
                self.put(None, id);
                CommandResult::Deleted { id: id.clone() }
            }
        }
    }

    fn see_now(&mut self, now: Micros) {
        self.now_max = Some(self.now_max.map_or(now, |max| max.max(now)));
    }

    fn expired_before(&self) -> Option<Micros> {
        self.now_max
            .map(|now| now.saturating_sub(REQUEST_ID_TTL_MICROS))
    }

    fn live_request_id(&self, request_id: &str) -> Option<&RequestIdRow> {
        let known = self.request_ids.get(request_id)?;
        let expired = self
            .expired_before()
            .is_some_and(|limit| known.create_time < limit);
        (!expired).then_some(known)
    }

    /// The task a conditional update/delete acts on, or why it can't.
    fn current(&self, id: &str, expected_version: u64) -> Result<Task, Rejection> {
        let Some(task) = self.tasks.get(id).cloned().flatten() else {
            return Err(Rejection::NotFound { id: id.to_owned() });
        };
        if expected_version != 0 && expected_version != task.version {
            return Err(Rejection::VersionMismatch {
                id: id.to_owned(),
                expected: expected_version,
                current: task.version,
            });
        }
        Ok(task)
    }

    fn put(&mut self, task: Option<Task>, id: &str) {
        self.tasks.insert(id.to_owned(), task);
        self.dirty.insert(id.to_owned());
    }

    /// The statements that make the tables equal to the overlay.
    fn write_stmts<'a>(&'a self, meta: &'a SmMeta) -> Result<Vec<Stmt<'a>>, StoreError> {
        let dirty: Vec<&str> = self.dirty.iter().map(String::as_str).collect();
        // Only rows that may exist in the tables need deleting.
        let stored: Vec<&str> = self
            .dirty
            .difference(&self.fresh)
            .map(String::as_str)
            .collect();
        let mut live = Vec::new();
        let mut deleted = Vec::new();
        for id in &dirty {
            match self.tasks.get(*id).and_then(Option::as_ref) {
                Some(task) => live.push(task),
                None if !self.fresh.contains(*id) => deleted.push(*id),
                None => {}
            }
        }
        let mut stmts = delete_in("task_labels", "task_id", &stored);
        stmts.extend(delete_in("tasks", "id", &deleted));
        stmts.extend(write_tasks(&live)?);
        let new_request_ids: Vec<&RequestIdRow> = self.new_request_ids.values().collect();
        stmts.extend(write_request_ids(&new_request_ids)?);
        if let Some(limit) = self.expired_before() {
            stmts.push(Stmt::new(
                "DELETE FROM request_ids WHERE create_time < ?",
                vec![Arg::Int(limit)],
            ));
        }
        stmts.push(write_sm_meta(meta));
        Ok(stmts)
    }
}

impl Store {
    /// Applies a batch of log entries in ONE transaction: `None` is a blank
    /// or membership entry (result [`CommandResult::None`]). `meta` is
    /// written in the same transaction, so task rows and `last_applied`
    /// commit together. Returns one result per entry, in order.
    pub async fn apply_batch(
        &self,
        entries: &[Option<&Command>],
        meta: &SmMeta,
    ) -> Result<Vec<CommandResult>, StoreError> {
        let mut request_ids: Vec<&str> = Vec::new();
        let mut task_ids: BTreeSet<&str> = BTreeSet::new();
        for command in entries.iter().flatten() {
            request_ids.extend(command.request_id());
            if let Command::UpdateTask { id, .. } | Command::DeleteTask { id, .. } = command {
                task_ids.insert(id);
            }
        }
        request_ids.sort_unstable();
        request_ids.dedup();
        let request_id_loads = select_in(
            REQUEST_ID_COLUMNS,
            "request_ids",
            "request_id",
            &request_ids,
        );

        on_pool!(self, write, |pool| {
            let mut conn = pool.acquire_for_apply().await?;
            let mut tx = sqlx::Connection::begin(&mut **conn.get()).await?;
            let mut overlay = Overlay::default();
            for stmt in &request_id_loads {
                let rows: Vec<RequestIdDbRow> = bind_args!(sqlx::query_as(&stmt.sql), stmt.args)
                    .fetch_all(&mut *tx)
                    .await?;
                for row in rows {
                    let row = RequestIdRow::try_from(row)?;
                    overlay.request_ids.insert(row.request_id.clone(), row);
                }
            }
            let mut load_ids: BTreeSet<&str> = task_ids.clone();
            load_ids.extend(overlay.request_ids.values().map(|r| r.task_id.as_str()));
            let load_ids: Vec<&str> = load_ids.into_iter().collect();
            for stmt in select_in(TASK_COLUMNS, "tasks", "id", &load_ids) {
                let rows: Vec<TaskRow> = bind_args!(sqlx::query_as(&stmt.sql), stmt.args)
                    .fetch_all(&mut *tx)
                    .await?;
                for row in rows {
                    let task = Task::try_from(row)?;
                    overlay.tasks.insert(task.id.clone(), Some(task));
                }
            }

            let results: Vec<CommandResult> = entries
                .iter()
                .map(|entry| entry.map_or(CommandResult::None, |c| overlay.apply(c)))
                .collect();

            let stmts = overlay.write_stmts(meta)?;
            for stmt in &stmts {
                exec_stmts!(tx, std::slice::from_ref(stmt));
                #[cfg(feature = "chaos-break")]
                crate::chaos_break::commit_statement!(tx);
            }
            crate::failpoint::hit(crate::failpoint::APPLY_BEFORE_COMMIT);
            tx.commit().await?;
            pool.release(conn).await?;
            Ok(results)
        })
    }
}

#[cfg(test)]
mod tests;
