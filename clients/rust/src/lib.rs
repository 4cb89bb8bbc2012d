//! The Rust client of taskd.
//!
//! # Layout
//! - [`pb`]: the generated `taskd.v1` stubs (messages, enums, `TaskServiceClient`).
//! - [`client`]: [`TaskClient`], which spreads over several endpoints, fails over
//!   when one dies, retries UNAVAILABLE with backoff, and applies a deadline.
//! - [`options`]: [`ClientOptions`], the deadline and retry bounds, TLS (CA,
//!   client identity) and the bearer token.
//! - [`error`]: [`Error`], the typed failures every call returns instead of a raw
//!   `tonic::Status`.
//!
//! The `taskctl` binary (`src/bin/taskctl`) is a command line over [`TaskClient`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), taskd_client::Error> {
//! use taskd_client::{pb, TaskClient};
//!
//! let client = TaskClient::connect(["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"])?;
//! let task = client
//!     .create_task(pb::CreateTaskRequest { title: "write docs".into(), ..Default::default() })
//!     .await?;
//! println!("created {} at version {}", task.id, task.version);
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod error;
pub mod options;
pub mod pb;

pub use client::TaskClient;
pub use error::{Error, FieldViolation};
pub use options::ClientOptions;
