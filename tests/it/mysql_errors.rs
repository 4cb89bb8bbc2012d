//! The transient-error classification ([`StoreError::is_transient`], which
//! decides what `raft::retry::with_retry` retries) against errors a real
//! MySQL server raises, not made-up ones: a killed connection, a lock wait
//! timeout (1205), a deadlock (1213). Each test makes the server raise the
//! error with a second connection, then classifies what sqlx returned.

use sqlx::migrate::MigrateDatabase;
use sqlx::{Connection, Executor, MySql, MySqlConnection};
use taskd::raft::retry::with_retry;
use taskd::store::StoreError;

use crate::support::{eventually, init_tracing, mysql_server_url, unique_name};

/// A fresh database with one table `t` of rows 1 and 2; dropped by [`Db::drop`].
struct Db {
    url: String,
}

impl Db {
    async fn create() -> Self {
        init_tracing();
        let url = format!("{}/{}", mysql_server_url(), unique_name("taskd_err"));
        MySql::create_database(&url).await.expect("create database");
        let mut conn = MySqlConnection::connect(&url).await.expect("connect");
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
            .await
            .expect("create table");
        conn.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
            .await
            .expect("insert rows");
        Self { url }
    }

    async fn connect(&self) -> MySqlConnection {
        MySqlConnection::connect(&self.url).await.expect("connect")
    }

    async fn drop(self) {
        MySql::drop_database(&self.url)
            .await
            .expect("drop database");
    }
}

async fn connection_id(conn: &mut MySqlConnection) -> u64 {
    sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(conn)
        .await
        .expect("CONNECTION_ID()")
}

fn assert_transient(what: &str, error: sqlx::Error) {
    let error = StoreError::Database(error);
    assert!(error.is_transient(), "{what} is transient: {error:?}");
}

/// A connection killed by another (`KILL <id>`) while idle fails its next
/// query with an error the store retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_idle_connection_is_transient() {
    let db = Db::create().await;
    let mut victim = db.connect().await;
    let id = connection_id(&mut victim).await;
    db.connect()
        .await
        .execute(format!("KILL {id}").as_str())
        .await
        .expect("KILL");
    let error = victim
        .execute("SELECT v FROM t WHERE id = 1")
        .await
        .expect_err("the killed connection fails");
    assert_transient("a query on a killed connection", error);
    db.drop().await;
}

/// A connection killed while its query runs: the query fails with an error
/// the store retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_killed_mid_query_is_transient() {
    let db = Db::create().await;
    let mut victim = db.connect().await;
    let id = connection_id(&mut victim).await;
    let running = tokio::spawn(async move { victim.execute("SELECT SLEEP(30)").await });
    let killer = sqlx::MySqlPool::connect(&db.url).await.expect("connect");
    // KILL once the query is seen running, so it is the query that is cut.
    eventually("the SLEEP query running", || async {
        let state: Option<String> =
            sqlx::query_scalar("SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = ?")
                .bind(id)
                .fetch_optional(&killer)
                .await
                .expect("processlist");
        (state.as_deref() == Some("Query")).then_some(())
    })
    .await;
    (&killer)
        .execute(format!("KILL {id}").as_str())
        .await
        .expect("KILL");
    let error = running
        .await
        .expect("query task")
        .expect_err("the killed query fails");
    assert_transient("a query whose connection was killed", error);
    killer.close().await;
    db.drop().await;
}

/// A row lock held by another transaction past `innodb_lock_wait_timeout`
/// fails the waiting statement with 1205, which the store retries (the
/// holder may let go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_wait_timeout_1205_is_transient() {
    let db = Db::create().await;
    let mut holder = db.connect().await;
    holder.execute("BEGIN").await.expect("BEGIN");
    holder
        .execute("SELECT v FROM t WHERE id = 1 FOR UPDATE")
        .await
        .expect("lock row 1");
    let mut waiter = db.connect().await;
    waiter
        .execute("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .expect("short lock wait");
    let error = waiter
        .execute("UPDATE t SET v = 1 WHERE id = 1")
        .await
        .expect_err("the lock wait times out");
    assert_eq!(mysql_number(&error), Some(1205), "{error:?}");
    assert_transient("lock wait timeout", error);
    holder.execute("ROLLBACK").await.expect("ROLLBACK");
    db.drop().await;
}

/// Two transactions that lock two rows in opposite order: InnoDB picks one
/// as the deadlock victim (1213), an error the store retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_1213_is_transient() {
    let db = Db::create().await;
    let mut a = db.connect().await;
    let mut b = db.connect().await;
    for (conn, row) in [(&mut a, 1), (&mut b, 2)] {
        conn.execute("BEGIN").await.expect("BEGIN");
        conn.execute(format!("UPDATE t SET v = v + 1 WHERE id = {row}").as_str())
            .await
            .expect("first lock");
    }
    let b_id = connection_id(&mut b).await;
    // a waits for b's row 2 ...
    let a_waits = tokio::spawn(async move {
        let result = a.execute("UPDATE t SET v = v + 1 WHERE id = 2").await;
        (a, result)
    });
    let watcher = sqlx::MySqlPool::connect(&db.url).await.expect("connect");
    eventually("a waiting for b's lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX \
             WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id <> ?",
        )
        .bind(b_id)
        .fetch_one(&watcher)
        .await
        .expect("INNODB_TRX");
        (waiting > 0).then_some(())
    })
    .await;
    // ... and b now asks for a's row 1: a cycle.
    let b_result = b.execute("UPDATE t SET v = v + 1 WHERE id = 1").await;
    let (a, a_result) = a_waits.await.expect("a's task");
    // Open transactions would hold DROP DATABASE's metadata lock forever.
    for conn in [a, b] {
        conn.close().await.expect("close");
    }
    let error = match (a_result, b_result) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("exactly one of the two is the deadlock victim: {other:?}"),
    };
    assert_eq!(mysql_number(&error), Some(1213), "{error:?}");
    assert_transient("deadlock", error);
    watcher.close().await;
    db.drop().await;
}

/// The bounded retry rides out a real transient error: an operation whose
/// first attempt meets a killed connection succeeds on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retry_recovers_from_a_killed_connection() {
    let db = Db::create().await;
    let mut first = Some(db.connect().await);
    let id = connection_id(first.as_mut().unwrap()).await;
    db.connect()
        .await
        .execute(format!("KILL {id}").as_str())
        .await
        .expect("KILL");
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let url = db.url.clone();
    let v: i32 = with_retry("read row 1", || {
        attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let conn = first.take();
        let url = url.clone();
        async move {
            let mut conn = match conn {
                Some(killed) => killed,
                None => MySqlConnection::connect(&url).await?,
            };
            Ok::<_, StoreError>(
                sqlx::query_scalar("SELECT v FROM t WHERE id = 1")
                    .fetch_one(&mut conn)
                    .await?,
            )
        }
    })
    .await
    .expect("the retry succeeds");
    assert_eq!(v, 0);
    assert_eq!(attempts.into_inner(), 2, "one failed attempt, one retry");
    db.drop().await;
}

fn mysql_number(error: &sqlx::Error) -> Option<u16> {
    let sqlx::Error::Database(e) = error else {
        return None;
    };
    e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number())
}
