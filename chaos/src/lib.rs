//! taskd-chaos: the fault suite of taskd (issue 7), built up in steps.
//!
//! # Layout
//! - [`checker`]: a Wing–Gong / Lowe linearizability search over the history
//!   of one task used as a register (read, write, compare-and-set by version).
//! - [`set`]: the set workload: acknowledged creates present exactly once,
//!   unknown ones at most once, nothing never attempted.
//! - [`stale`]: STALE reads show only written values, monotonic per node.
//!
//! Still to come: the harness of real processes in network namespaces, the
//! nemeses, the workloads and the `taskd-chaos` binary.

pub mod checker;
pub mod set;
pub mod stale;
