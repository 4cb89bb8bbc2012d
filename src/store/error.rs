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
}
