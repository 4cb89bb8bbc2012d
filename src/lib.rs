//! taskd: a highly available task-management service.
//!
//! # Layout: the path of a write, top to bottom
//! - [`config`]: the command line (`taskd serve`, `taskd dev`), one clap struct per command.
//! - [`server`]: one node: binds nothing itself, takes a listener and a shutdown future.
//! - [`dev`]: `taskd dev`, a local cluster of N nodes in one process.
//! - [`bench`]: `taskd bench`, a gRPC client: load workloads, latency, failover time.
//! - [`api`]: gRPC handlers (`TaskService`, `RaftService`), validation and proto ↔
//!   domain conversions, forwarding to the leader, the one error → status mapping.
//! - [`cluster`]: membership and leadership: add, promote, remove, transfer,
//!   join (the admin calls and `serve --join`).
//! - [`cli`]: `taskd cluster …`, `taskd backup`, `taskd restore`: thin gRPC
//!   clients of the admin calls.
//! - [`security`]: cluster credentials, TLS (reloaded on SIGHUP), client
//!   tokens; the checks are one tower layer, `api::auth`.
//! - [`raft`]: openraft's type config, the gRPC network between nodes, and the
//!   log-storage and state-machine adapters over [`store`].
//! - [`store`]: sqlx on MySQL or SQLite: the task tables, the Raft log, snapshots.
//! - [`domain`]: tasks and the commands that change them; shared by every layer.
//! - [`proto`]: the generated `taskd.v1` stubs.
//! - `chaos_break` (feature `chaos-break` only): defects taskd-chaos switches on
//!   to show that it catches them.
//! - [`failpoint`]: named crash points on the durability boundaries (feature `failpoints`).

pub mod api;
pub mod bench;
#[cfg(feature = "chaos-break")]
pub mod chaos_break;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod domain;
pub mod failpoint;
pub mod proto;
pub mod raft;
pub mod security;
pub mod server;
pub mod store;
