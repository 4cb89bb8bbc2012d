//! The gRPC API of a node: the public `TaskService` and the internal
//! `RaftService`, both on the node's one port.
//!
//! - [`convert`]: proto ↔ domain, all input validation.
//! - [`list`]: ListTasks filters and page tokens.
//! - [`error`]: the one mapping of failures to gRPC codes.
//! - [`health`]: `grpc.health.v1`, whose Watch streams end on shutdown.
//! - [`route`]: finding the leader, proposing, read-index, forwarding.
//! - [`task_service`] / [`raft_service`]: the handlers.
//! - [`admin_service`]: the membership and leadership calls of RaftService.
//! - [`auth`]: who may call what (one tower layer before every service).
//! - [`limits`]: message sizes, and shedding calls past the node's bound.

pub mod admin_service;
pub mod auth;
pub mod convert;
pub mod error;
pub mod health;
pub mod limits;
pub mod list;
pub mod raft_service;
pub mod route;
pub mod task_service;

pub use raft_service::RaftApi;
pub use route::NodeContext;
pub use task_service::TaskApi;
