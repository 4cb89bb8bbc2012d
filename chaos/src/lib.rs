//! taskd-chaos: the fault suite of taskd (issue 7), built up in steps.
//!
//! # Layout
//! - [`checker`]: a Wing–Gong / Lowe linearizability search over the history
//!   of one task used as a register (read, write, compare-and-set by version).
//!
//! Still to come: the harness of real processes in network namespaces, the
//! nemeses, the workloads and the `taskd-chaos` binary.

pub mod checker;
