//! The store's one error type.

/// Why a storage operation failed. Any of these is fatal to the Raft core
/// that asked; callers log them and never show their text to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// A stored row that cannot be decoded (or a value that cannot be stored).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A snapshot file that cannot be read, or is not a valid snapshot.
    #[error("{0}")]
    SnapshotFile(#[from] super::snapshot_file::SnapshotFileError),
    /// The MySQL server is configured to lose committed transactions.
    #[error("{0}")]
    LossyDatabase(String),
}

/// MySQL/MariaDB error numbers after which the statement or transaction
/// rolled back and a retry may succeed: 1205 lock wait timeout, 1213
/// deadlock, 1317 query interrupted, 1927 connection killed (MariaDB),
/// 1053 server shutdown in progress, 2006/2013 server gone / lost.
const MYSQL_TRANSIENT: [u16; 7] = [1205, 1213, 1317, 1927, 1053, 2006, 2013];

impl StoreError {
    /// Whether the failure is the connection's or a lock's, not the data's:
    /// the operation rolled back and a bounded retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            StoreError::Database(sqlx::Error::Database(e)) => {
                if let Some(mysql) = e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                    // Lock wait timeout (SQLSTATE HY000, so its number is what
                    // says it), deadlock, and a connection or query killed by
                    // the server (KILL, a restart's shutdown) all rolled back.
                    return MYSQL_TRANSIENT.contains(&mysql.number());
                }
                // SQLite: BUSY, LOCKED, BUSY_SNAPSHOT.
                matches!(e.code().as_deref(), Some("5") | Some("6") | Some("517"))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_transient_data_failures_are_not() {
        let io = StoreError::Database(sqlx::Error::Io(std::io::Error::other("reset")));
        assert!(io.is_transient());
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Corrupt("bad row".into()).is_transient());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
    }
}
