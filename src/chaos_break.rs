//! `--break MODE`: defects switched on at will, so that taskd-chaos can show
//! it catches them (a checker that has never failed proves nothing).
//!
//! Compiled only with the cargo feature `chaos-break`; release builds carry
//! none of it. Each mode is read at its call site through [`active`], a
//! one-line hook under `#[cfg(feature = "chaos-break")]`.

use std::sync::OnceLock;
use std::time::Duration;

/// One defect to switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Serve default (linearizable) reads from the local database without
    /// the read-index round: followers and deposed leaders answer stale.
    StaleReads,
    /// Fire the log's flush callback before the append commits, and hold
    /// the commit back a while: a kill -9 then loses acknowledged entries.
    AckBeforeDurable,
    /// Commit each apply statement on its own instead of in one
    /// transaction with `last_applied`: a crash in between re-applies.
    ApplyWithoutTransaction,
}

static MODE: OnceLock<Option<Mode>> = OnceLock::new();

/// Sets the process's mode once, at start (later calls keep the first).
pub fn install(mode: Option<Mode>) {
    let installed = *MODE.get_or_init(|| mode);
    if let Some(mode) = installed {
        tracing::warn!(?mode, "chaos-break: taskd is broken on purpose");
    }
}

/// Whether `mode` is switched on in this process.
pub fn active(mode: Mode) -> bool {
    MODE.get().copied().flatten() == Some(mode)
}

/// How long an acknowledged append stays in memory only.
const ACK_AHEAD: Duration = Duration::from_millis(300);

/// [`Mode::AckBeforeDurable`]: acknowledges `callbacks` at once and returns
/// none, after a wait that leaves the acknowledged entries uncommitted.
pub async fn ack_before_durable<F>(callbacks: Vec<F>) -> Vec<F>
where
    F: FnOnce(Result<(), std::io::Error>),
{
    // Barriers (save_vote waits for one) have no callbacks: they must not
    // wait, or every election would outlast its timeout.
    if !active(Mode::AckBeforeDurable) || callbacks.is_empty() {
        return callbacks;
    }
    for callback in callbacks {
        callback(Ok(()));
    }
    tokio::time::sleep(ACK_AHEAD).await;
    Vec::new()
}

/// How long an apply sits between two statements it has committed apart.
pub const APPLY_GAP: Duration = Duration::from_millis(30);

/// [`Mode::ApplyWithoutTransaction`]: commits what the apply (`$tx`, a
/// sqlx transaction) has written so far and opens a new transaction, so the
/// statements of one batch (task rows, then `last_applied`) commit one by
/// one, a crash-prone gap apart. A macro: it expands to the backend's
/// concrete connection type.
macro_rules! commit_statement {
    ($tx:expr) => {
        if $crate::chaos_break::active($crate::chaos_break::Mode::ApplyWithoutTransaction) {
            sqlx::query("COMMIT").execute(&mut *$tx).await?;
            tokio::time::sleep($crate::chaos_break::APPLY_GAP).await;
            sqlx::query("BEGIN").execute(&mut *$tx).await?;
        }
    };
}
pub(crate) use commit_statement;
