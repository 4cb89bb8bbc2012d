//! Runs one test body against every backend: SQLite in a temporary
//! directory, and MySQL/MariaDB at `TASKD_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`) in a fresh database that is dropped
//! afterwards. An unreachable MySQL fails the test: it never skips.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use sqlx::migrate::MigrateDatabase;
use sqlx::MySql;

use crate::domain::{Command, CommandResult, Micros, NewTask, TaskPriority, TaskStatus};

use super::{Backend, SmMeta, Store};

fn mysql_server_url() -> String {
    let url = std::env::var("TASKD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned());
    url.trim_end_matches('/').to_owned()
}

/// A database name no other test (or test process) uses.
fn unique_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("taskd_t_{}_{nanos}_{n}", std::process::id())
}

/// Runs `body` with a fresh, migrated store of each backend in turn. A panic
/// in `body` is re-raised after the backend's database is removed, with the
/// backend named on stderr.
pub(crate) async fn each_backend(body: impl AsyncFn(Store)) {
    for backend in [Backend::Sqlite, Backend::Mysql] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("taskd.db").display()),
            Backend::Mysql => format!("{}/{}", mysql_server_url(), unique_database()),
        };
        let store = Store::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect to {backend:?} at {url}: {e}"));
        let outcome = AssertUnwindSafe(body(store.clone())).catch_unwind().await;
        store.close().await;
        if backend == Backend::Mysql {
            MySql::drop_database(&url)
                .await
                .unwrap_or_else(|e| panic!("drop test database {url}: {e}"));
        }
        if let Err(panic) = outcome {
            eprintln!("test failed on backend {backend:?}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// A plain new task with this title.
pub(crate) fn new_task(title: &str) -> NewTask {
    NewTask {
        title: title.to_owned(),
        description: String::new(),
        status: TaskStatus::Todo,
        priority: TaskPriority::Unspecified,
        deadline: None,
        assignee: String::new(),
        labels: Vec::new(),
    }
}

pub(crate) fn create(id: &str, request_id: Option<&str>, now: Micros, task: NewTask) -> Command {
    Command::CreateTask {
        id: id.to_owned(),
        request_id: request_id.map(str::to_owned),
        now,
        task,
    }
}

/// Applies `commands` as one batch (no blank entries), with a `last_applied`
/// that names the batch's size.
pub(crate) async fn apply(store: &Store, commands: &[Command]) -> Vec<CommandResult> {
    let entries: Vec<Option<&Command>> = commands.iter().map(Some).collect();
    let meta = SmMeta {
        last_applied: Some(format!("{}", commands.len()).into_bytes()),
        membership: None,
    };
    store
        .apply_batch(&entries, &meta)
        .await
        .expect("apply_batch")
}

/// Makes the database itself refuse to store a task titled `poison`, so a
/// test can fail a transaction after some of its statements succeeded.
pub(crate) async fn refuse_poisoned_titles(store: &Store) {
    use sqlx::Executor;
    let sql = match store.backend() {
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON tasks \
             WHEN NEW.title = 'poison' BEGIN SELECT RAISE(ABORT, 'poison'); END"
        }
        Backend::Mysql => {
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON tasks FOR EACH ROW BEGIN \
             IF NEW.title = 'poison' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison'; \
             END IF; END"
        }
    };
    on_pool!(store, write, |pool| {
        pool.execute(sql).await.expect("create the poison trigger");
    });
}

/// `PRAGMA synchronous` of the connection the next write would use (SQLite;
/// 2 = FULL). MySQL has no such setting: `None`.
pub(crate) async fn write_sync_mode(store: &Store) -> Option<i64> {
    match &store.pools {
        super::pool::Pools::Sqlite { write, .. } => {
            let (mode,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                .fetch_one(write)
                .await
                .expect("read PRAGMA synchronous");
            Some(mode)
        }
        super::pool::Pools::Mysql(_) => None,
    }
}

/// Runs one SQL statement of a test's own (a trigger that makes the
/// database refuse a write, and dropping it) on the write pool.
pub(crate) async fn execute(store: &Store, sql: &str) {
    use sqlx::Executor;
    on_pool!(store, write, |pool| {
        pool.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// The SQL that makes the database refuse inserts into `table` WHEN
/// `condition` (SQL over `NEW`), as a trigger named `name`, and the SQL that
/// drops it again.
pub(crate) fn refusing_trigger(
    store: &Store,
    name: &str,
    table: &str,
    condition: &str,
) -> (String, String) {
    let create = match store.backend() {
        Backend::Sqlite => format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {condition} \
             BEGIN SELECT RAISE(ABORT, '{name}'); END"
        ),
        Backend::Mysql => format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW BEGIN \
             IF {condition} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{name}'; \
             END IF; END"
        ),
    };
    (create, format!("DROP TRIGGER {name}"))
}
