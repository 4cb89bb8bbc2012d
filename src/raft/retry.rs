//! Bounded retries of database operations that failed for a transient reason
//! (a dropped connection, a lock timeout).
//!
//! openraft stops a node's Raft core on any storage error. A database that
//! blinks (MariaDB restarting, a connection reset) should not cost a node,
//! so the adapters retry with exponential backoff and jitter for about ten
//! seconds; after that the error is returned, the core stops loudly, and
//! health goes NOT_SERVING. Only operations that are safe to repeat are
//! retried: every store write is a transaction that either committed or
//! rolled back, and `apply` checks which before it tries again.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::store::StoreError;

fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(10)
        .with_jitter()
}

/// Runs `op`, retrying transient failures within the bound.
pub async fn with_retry<T, F, Fut>(what: &'static str, op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    op.retry(policy())
        .sleep(tokio::time::sleep)
        .when(StoreError::is_transient)
        .notify(|e, retry_in| {
            tracing::warn!(operation = what, error = %e, ?retry_in, "database operation failed; retrying");
        })
        .await
        .inspect_err(|e| tracing::error!(operation = what, error = %e, "database operation failed for good"))
}
