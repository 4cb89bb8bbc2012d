//! taskd-chaos: the fault suite of taskd (issue 7). A client of real
//! `taskd serve` processes: it imports nothing of taskd's store or raft.
//!
//! # Layout
//! - [`run`]: the command line and one run from start to verdict.
//! - [`netns`]: a network namespace per node, a bridge, nft partitions.
//! - [`mariadb`]: one MariaDB server per node, inside its namespace.
//! - [`node`]: one `taskd serve` process.
//! - [`cluster`]: all of the above together, and gRPC clients to each node.
//! - [`nemesis`]: the seeded fault schedule, injecting and healing faults.
//! - [`partition`]: the partition shapes as per-node drop rules.
//! - [`membership`]: the membership changes (replace a node, promote a
//!   learner, transfer leadership) through the admin RPCs.
//! - [`workload`]: register, set and STALE-read clients.
//! - [`history`]: the operations as the clients saw them.
//! - [`verify`]: the checks over the history and the replicas.
//! - [`report`]: history.jsonl, report.md, timeline.html, the summary line.
//! - [`checker`]: a Wing–Gong / Lowe linearizability search over the history
//!   of one task used as a register (read, write, compare-and-set by version).
//! - [`set`]: the set workload: acknowledged creates present exactly once,
//!   unknown ones at most once, nothing never attempted.
//! - [`stale`]: STALE reads show only written values, monotonic per node.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod mariadb;
pub mod membership;
pub mod nemesis;
pub mod netns;
pub mod node;
pub mod partition;
pub mod report;
pub mod run;
pub mod set;
pub mod stale;
pub mod verify;
pub mod workload;
