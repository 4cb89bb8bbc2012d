//! Named failpoints on the durability boundaries, for the crash-point tests
//! (`tests/it/crash_points.rs`).
//!
//! Compiled in only with the cargo feature `failpoints` (TiKV's `fail`
//! crate); without it [`hit`] is an empty inline function, so release
//! builds carry none. `taskd serve` reads the `FAILPOINTS` environment
//! variable at start, in fail-rs syntax: `name=action;name=action`, e.g.
//! `FAILPOINTS='log-append-committed=20*off->return'`.
//!
//! The action `return` aborts the process (SIGABRT: no unwinding, no clean
//! shutdown, nothing flushed), i.e. a crash at exactly that point. fail-rs's
//! other actions (`sleep(ms)`, `panic`, `print`, `off`, counts and
//! percentages) behave as fail-rs documents.

/// After a group of log appends committed, before openraft's flush callbacks fire.
pub const LOG_APPEND_COMMITTED: &str = "log-append-committed";
/// Inside the state machine's apply transaction, before its COMMIT.
pub const APPLY_BEFORE_COMMIT: &str = "apply-before-commit";
/// After a log purge (and its `purged` record) committed.
pub const PURGE_COMMITTED: &str = "purge-committed";
/// Before an installed snapshot's import transaction begins (so also before it commits).
pub const SNAPSHOT_IMPORT: &str = "snapshot-import";
/// After a batch of a snapshot's records was written inside its import
/// transaction, before the next batch (and long before the COMMIT).
pub const SNAPSHOT_IMPORT_BATCH: &str = "snapshot-import-batch";
/// A received `InstallSnapshot` chunk that is not the first one, before openraft takes it.
pub const SNAPSHOT_CHUNK_RECEIVED: &str = "snapshot-chunk-received";
/// Before sending an `InstallSnapshot` chunk that is not the first one.
pub const SNAPSHOT_CHUNK_SEND: &str = "snapshot-chunk-send";
/// Between two stored chunks of a snapshot's data (a built snapshot, stored locally).
pub const SNAPSHOT_CHUNK_STORED: &str = "snapshot-chunk-stored";
/// Before the vote is written.
pub const SAVE_VOTE_BEFORE: &str = "save-vote-before";
/// After the vote is durable, before `save_vote` returns.
pub const SAVE_VOTE_AFTER: &str = "save-vote-after";

/// Evaluates the failpoint `name`: aborts the process on `return`.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    if fail::list()
        .iter()
        .any(|(n, action)| n == name && action != "off")
    {
        // Tests wait for this line to know the node is at the failpoint.
        eprintln!("failpoint {name} reached");
    }
    let eval = || fail::eval(name, |_| ()).is_some();
    // `sleep` and `pause` block the thread: on a multi-thread runtime, hand
    // this worker's other tasks (the Raft core, say) to another first.
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let fired = if multi_thread {
        tokio::task::block_in_place(eval)
    } else {
        eval()
    };
    if fired {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}

/// Failpoints are compiled out: nothing to evaluate.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) {}

/// The failpoints of `FAILPOINTS`, active until the returned value is dropped.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

/// Failpoints are compiled out: `FAILPOINTS` is ignored.
#[cfg(not(feature = "failpoints"))]
pub fn setup() {}
