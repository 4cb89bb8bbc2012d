//! openraft's storage conformance suite (`openraft::testing::Suite`) against
//! our log-storage and state-machine adapters, on each backend. Every case
//! gets a fresh, empty store: a new SQLite file, or a new MySQL database.
//!
//! These are plain `#[test]`s: the suite builds its own Tokio runtime per case.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageIOError};
use sqlx::migrate::MigrateDatabase;
use taskd::raft::log_store::LogStore;
use taskd::raft::state_machine::StateMachine;
use taskd::raft::{StorageError, TypeConfig};
use taskd::store::Store;

use crate::support::{init_tracing, mysql_server_url, unique_name};

/// Opens (and migrates) the store at `url` and wraps it in both adapters,
/// with snapshot files in `snapshot_dir`.
async fn open_adapters(
    url: &str,
    snapshot_dir: &std::path::Path,
) -> Result<(LogStore, StateMachine), StorageError> {
    let store = Store::connect(url)
        .await
        .map_err(|e| StorageIOError::read(AnyError::error(format!("connect to {url}: {e}"))))?;
    let state_machine = StateMachine::new(store.clone(), snapshot_dir.join("snapshots")).await?;
    Ok((LogStore::new(store), state_machine))
}

/// Each case's store is a new SQLite file in its own temporary directory,
/// which the guard (the `TempDir`) removes when the case ends.
struct SqliteBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SqliteBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("taskd.db").display());
        let (log_store, state_machine) = open_adapters(&url, dir.path()).await?;
        Ok((dir, log_store, state_machine))
    }
}

/// Each case's store is a new database on the test MySQL server. The guard
/// is the database's URL (and the snapshot directory); dropping databases
/// needs async, so the builder records every URL and the test drops them
/// all at the end.
#[derive(Clone, Default)]
struct MysqlBuilder {
    created: Arc<Mutex<Vec<String>>>,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, (String, tempfile::TempDir)>
    for MysqlBuilder
{
    async fn build(
        &self,
    ) -> Result<((String, tempfile::TempDir), LogStore, StateMachine), StorageError> {
        let url = format!("{}/{}", mysql_server_url(), unique_name("taskd_suite"));
        // Recorded before connecting: a half-created database is dropped too.
        self.created.lock().expect("lock").push(url.clone());
        let dir = tempfile::tempdir().expect("temporary directory");
        let (log_store, state_machine) = open_adapters(&url, dir.path()).await?;
        Ok(((url, dir), log_store, state_machine))
    }
}

/// Our `RaftLogStorage` and `RaftStateMachine` over SQLite pass every case of
/// openraft's conformance suite: log reads, appends, truncation, purging,
/// vote and committed persistence, membership recovery, apply, snapshots.
#[test]
fn sqlite() {
    init_tracing();
    Suite::test_all(SqliteBuilder).expect("openraft storage suite on SQLite");
}

/// The same conformance suite over MySQL/MariaDB (never skipped: an
/// unreachable server fails the test). Every database it created is dropped
/// afterwards, whether the suite passed or not.
#[test]
fn mysql() {
    init_tracing();
    let builder = MysqlBuilder::default();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Suite::test_all(builder.clone()).expect("openraft storage suite on MySQL")
    }));

    let urls = std::mem::take(&mut *builder.created.lock().unwrap_or_else(|e| e.into_inner()));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let failed_drops: Vec<String> = runtime.block_on(async {
        let mut failed = Vec::new();
        for url in &urls {
            if let Err(e) = sqlx::MySql::drop_database(url).await {
                failed.push(format!("{url}: {e}"));
            }
        }
        failed
    });

    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(
        failed_drops.is_empty(),
        "could not drop test databases: {failed_drops:?}"
    );
}
