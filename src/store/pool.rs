//! Connecting to either backend, and the few helpers that let one SQL text
//! and one Rust body serve both.

use std::borrow::Cow;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::mysql::{MySql, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Database, Executor, Transaction};

use super::{Backend, Store, StoreError};

/// Binds and row counts per statement are kept far below both backends'
/// limits (SQLite 32766 variables, MySQL 65535 placeholders).
pub(crate) const MAX_ROWS_PER_STATEMENT: usize = 500;
/// Payload bytes per statement, well under MariaDB's default 16 MiB packet.
pub(crate) const MAX_BYTES_PER_STATEMENT: usize = 4 << 20;

#[derive(Clone)]
pub(crate) enum Pools {
    Mysql(MySqlPool),
    /// One writer (no SQLITE_BUSY lock-upgrade deadlocks between the log
    /// writer and the state machine) and a few readers on the same file.
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
}

/// Runs `$body` with `$pool` bound to the backend's write (`write`) or read
/// (`read`) pool: the same text expands once per backend, so the compiler
/// checks it against each driver.
macro_rules! on_pool {
    ($store:expr, write, |$pool:ident| $body:expr) => {
        match &$store.pools {
            $crate::store::pool::Pools::Mysql(mysql) => {
                let $pool = mysql;
                $body
            }
            $crate::store::pool::Pools::Sqlite { write, .. } => {
                let $pool = write;
                $body
            }
        }
    };
    ($store:expr, read, |$pool:ident| $body:expr) => {
        match &$store.pools {
            $crate::store::pool::Pools::Mysql(mysql) => {
                let $pool = mysql;
                $body
            }
            $crate::store::pool::Pools::Sqlite { read, .. } => {
                let $pool = read;
                $body
            }
        }
    };
}

/// Binds every [`Arg`] of `$args` to the query `$query`, in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args.iter() {
            query = match arg {
                $crate::store::pool::Arg::Int(v) => query.bind(*v),
                $crate::store::pool::Arg::Text(v) => query.bind(&**v),
                $crate::store::pool::Arg::Bytes(v) => query.bind(v.as_deref()),
            };
        }
        query
    }};
}

/// Executes every [`Stmt`] of `$stmts` on `$conn` (e.g. `&mut *tx`), in order.
macro_rules! exec_stmts {
    ($conn:expr, $stmts:expr) => {
        for stmt in $stmts.iter() {
            bind_args!(sqlx::query(&stmt.sql), stmt.args)
                .execute(&mut *$conn)
                .await?;
        }
    };
}

/// A bind value whose SQL type both backends agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg<'a> {
    Int(i64),
    Text(Cow<'a, str>),
    /// `None` binds NULL.
    Bytes(Option<Cow<'a, [u8]>>),
}

impl<'a> Arg<'a> {
    pub(crate) fn text(value: &'a str) -> Self {
        Arg::Text(Cow::Borrowed(value))
    }

    pub(crate) fn bytes(value: &'a [u8]) -> Self {
        Arg::Bytes(Some(Cow::Borrowed(value)))
    }

    pub(crate) fn opt_bytes(value: Option<&'a [u8]>) -> Self {
        Arg::Bytes(value.map(Cow::Borrowed))
    }
}

/// One SQL statement with its binds, ready for `exec_stmts!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stmt<'a> {
    pub sql: String,
    pub args: Vec<Arg<'a>>,
}

impl<'a> Stmt<'a> {
    pub(crate) fn new(sql: impl Into<String>, args: Vec<Arg<'a>>) -> Self {
        Stmt {
            sql: sql.into(),
            args,
        }
    }
}

/// `(?, ?, …)` with `n` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    debug_assert!(n > 0, "an empty SQL list is a syntax error");
    let mut out = String::with_capacity(2 + 3 * n);
    out.push('(');
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('?');
    }
    out.push(')');
    out
}

/// `prefix VALUES (?, …), (?, …)` for `rows` rows of `columns` values.
pub(crate) fn multi_row_sql(prefix: &str, columns: usize, rows: usize) -> String {
    let row = placeholders(columns);
    let mut sql = String::with_capacity(prefix.len() + 8 + rows * (row.len() + 2));
    sql.push_str(prefix);
    sql.push_str(" VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

/// Splits `items` into runs of at most [`MAX_ROWS_PER_STATEMENT`] items and
/// (unless a single item is larger) [`MAX_BYTES_PER_STATEMENT`] bytes.
pub(crate) fn chunks<T>(items: &[T], size_of: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, item) in items.iter().enumerate() {
        let size = size_of(item);
        let full = i - start >= MAX_ROWS_PER_STATEMENT
            || (i > start && bytes + size > MAX_BYTES_PER_STATEMENT);
        if full {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// `u64` → `BIGINT`; values past `i64::MAX` cannot be stored.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} exceeds i64")))
}

/// `BIGINT` → `u64`; a negative value is a corrupt row.
pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

/// Begins a read-only transaction that sees one snapshot for all its reads.
pub(crate) trait BeginSnapshot {
    type Db: Database;
    fn begin_snapshot(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginSnapshot for MySqlPool {
    type Db = MySql;
    async fn begin_snapshot(&self) -> Result<Transaction<'static, MySql>, sqlx::Error> {
        // Sessions run REPEATABLE READ (see `connect_mysql`), so the snapshot
        // taken here holds for every statement of the transaction.
        self.begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
    }
}

impl BeginSnapshot for SqlitePool {
    type Db = Sqlite;
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        // In WAL mode a read transaction sees the snapshot of its first read.
        self.begin().await
    }
}

/// A write connection for the state machine's apply transactions.
///
/// Their commits need no sync of their own on SQLite: the entries they apply
/// are already durable in the Raft log, `last_applied` commits atomically
/// with the task rows, and the WAL keeps commits in order, so after a power
/// loss the database holds a prefix of the applies, and Raft re-applies the
/// rest from the log (every later synchronous commit, of the log say, also
/// hardens the applies before it). The connection runs `synchronous =
/// NORMAL` while it is held and FULL again before it goes back to the pool;
/// one that cannot be set back (an error, a cancelled apply) is closed, so
/// no log append or vote ever runs on a relaxed connection.
pub(crate) struct ApplyConn<DB: Database> {
    conn: Option<PoolConnection<DB>>,
}

impl<DB: Database> ApplyConn<DB> {
    pub(crate) fn get(&mut self) -> &mut PoolConnection<DB> {
        self.conn.as_mut().expect("held until released")
    }
}

impl<DB: Database> Drop for ApplyConn<DB> {
    fn drop(&mut self) {
        // Not released: its sync mode is unknown, so it must not be reused.
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// Acquires and releases [`ApplyConn`]s on either backend.
pub(crate) trait ApplyPool {
    type Db: Database;
    fn acquire_for_apply(
        &self,
    ) -> impl Future<Output = Result<ApplyConn<Self::Db>, sqlx::Error>> + Send;
    fn release(
        &self,
        conn: ApplyConn<Self::Db>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

impl ApplyPool for SqlitePool {
    type Db = Sqlite;
    async fn acquire_for_apply(&self) -> Result<ApplyConn<Sqlite>, sqlx::Error> {
        let mut conn = ApplyConn {
            conn: Some(self.acquire().await?),
        };
        conn.get().execute("PRAGMA synchronous = NORMAL").await?;
        Ok(conn)
    }
    async fn release(&self, mut conn: ApplyConn<Sqlite>) -> Result<(), sqlx::Error> {
        conn.get().execute("PRAGMA synchronous = FULL").await?;
        conn.conn.take();
        Ok(())
    }
}

impl ApplyPool for MySqlPool {
    type Db = MySql;
    /// InnoDB's flush at commit is a server-wide setting: nothing to relax.
    async fn acquire_for_apply(&self) -> Result<ApplyConn<MySql>, sqlx::Error> {
        Ok(ApplyConn {
            conn: Some(self.acquire().await?),
        })
    }
    async fn release(&self, mut conn: ApplyConn<MySql>) -> Result<(), sqlx::Error> {
        conn.conn.take();
        Ok(())
    }
}

/// How a store may be opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Open a MySQL server that loses committed transactions on a crash
    /// (`innodb_flush_log_at_trx_commit` other than 1): Raft's durability
    /// promises then no longer hold. Off unless the operator insists.
    pub allow_lossy_database: bool,
}

/// Open connections of a store, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolConnections {
    /// Checked out, running a statement or a transaction.
    pub in_use: u64,
    /// Open and waiting in the pool.
    pub idle: u64,
}

impl Store {
    /// [`Store::connect_with`] with the default (strict) options.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// `mysql://…` (the database is created if missing) or `sqlite://…`
    /// (the file is created if missing); runs the embedded migrations.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let pools = if url.starts_with("mysql://") {
            Pools::Mysql(connect_mysql(url, options).await?)
        } else if url.starts_with("sqlite:") {
            connect_sqlite(url).await?
        } else {
            return Err(StoreError::InvalidUrl(format!(
                "{url:?}: expected mysql://… or sqlite://…"
            )));
        };
        Ok(Store {
            pools,
            import_pending: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Mysql(_) => Backend::Mysql,
            Pools::Sqlite { .. } => Backend::Sqlite,
        }
    }

    /// Closes every pool; waits for checked-out connections to come back.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Mysql(pool) => pool.close().await,
            Pools::Sqlite { write, read } => {
                write.close().await;
                read.close().await;
            }
        }
    }

    /// The connections open in this store's pools (both of SQLite's), for
    /// the metrics.
    pub fn pool_connections(&self) -> PoolConnections {
        fn of<DB: Database>(pool: &sqlx::Pool<DB>) -> PoolConnections {
            let idle = pool.num_idle() as u64;
            PoolConnections {
                in_use: u64::from(pool.size()).saturating_sub(idle),
                idle,
            }
        }
        match &self.pools {
            Pools::Mysql(pool) => of(pool),
            Pools::Sqlite { write, read } => {
                let (write, read) = (of(write), of(read));
                PoolConnections {
                    in_use: write.in_use + read.in_use,
                    idle: write.idle + read.idle,
                }
            }
        }
    }

    /// One round trip on each pool.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, write, |pool| {
            pool.execute("SELECT 1").await?;
        });
        on_pool!(self, read, |pool| {
            pool.execute("SELECT 1").await?;
        });
        Ok(())
    }
}

async fn connect_mysql(url: &str, options: StoreOptions) -> Result<MySqlPool, StoreError> {
    if !MySql::database_exists(url).await? {
        MySql::create_database(url).await?;
    }
    let pool = MySqlPoolOptions::new()
        .max_connections(10)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // A statement outside a transaction (save_vote, say) must be
                // durable when it returns: never inherit a server's
                // autocommit=0. Exports rely on snapshot reads: never
                // inherit another isolation level either.
                conn.execute("SET SESSION autocommit = 1").await?;
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    check_flush_at_commit(&pool, options).await?;
    sqlx::migrate!("migrations/mysql").run(&pool).await?;
    Ok(pool)
}

/// Refuses a server whose InnoDB does not flush its log at every commit
/// (0: once a second; 2: to the OS only), unless the operator allowed it.
async fn check_flush_at_commit(pool: &MySqlPool, options: StoreOptions) -> Result<(), StoreError> {
    let (flush,): (i64,) =
        sqlx::query_as("SELECT CAST(@@GLOBAL.innodb_flush_log_at_trx_commit AS SIGNED)")
            .fetch_one(pool)
            .await?;
    if flush == 1 {
        return Ok(());
    }
    if !options.allow_lossy_database {
        return Err(StoreError::LossyDatabase(format!(
            "the MySQL server has innodb_flush_log_at_trx_commit = {flush}, which loses \
             committed transactions on a crash; set it to 1, or start taskd with \
             --unsafe-allow-lossy-database to run anyway"
        )));
    }
    tracing::warn!(
        innodb_flush_log_at_trx_commit = flush,
        "the MySQL server may lose committed transactions on a crash \
         (--unsafe-allow-lossy-database): acknowledged writes may be lost"
    );
    Ok(())
}

async fn connect_sqlite(url: &str) -> Result<Pools, StoreError> {
    let parse = |url: &str| {
        SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("{url:?}: {e}")))
    };
    let busy = Duration::from_secs(5);
    let write_options = parse(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // Every committed transaction is fsync'd: the Raft log needs it.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(busy);
    // No ping before each use: a local file cannot go away behind our back,
    // and a ping is one more hop to sqlx's connection thread per statement.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(write_options)
        .await?;
    sqlx::migrate!("migrations/sqlite").run(&write).await?;
    // The writer has created the file and switched it to WAL (a property of
    // the file), so readers only need to open it.
    let read_options = parse(url)?.read_only(true).busy_timeout(busy);
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(read_options)
        .await?;
    Ok(Pools::Sqlite { write, read })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_sql_repeats_the_row() {
        assert_eq!(
            multi_row_sql("INSERT INTO t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
        assert_eq!(placeholders(1), "(?)");
    }

    #[test]
    fn chunks_respect_rows_and_bytes() {
        let items = vec![1usize; MAX_ROWS_PER_STATEMENT * 2 + 1];
        let sizes: Vec<usize> = chunks(&items, |_| 1).iter().map(|c| c.len()).collect();
        assert_eq!(
            sizes,
            vec![MAX_ROWS_PER_STATEMENT, MAX_ROWS_PER_STATEMENT, 1]
        );

        let big = vec![MAX_BYTES_PER_STATEMENT / 2 + 1; 3];
        let sizes: Vec<usize> = chunks(&big, |s| *s).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert!(chunks(&Vec::<u8>::new(), |_| 1).is_empty());
    }

    #[tokio::test]
    async fn connect_rejects_other_schemes() {
        let err = Store::connect("postgres://localhost/x").await.err();
        assert!(matches!(err, Some(StoreError::InvalidUrl(_))), "{err:?}");
    }
}
