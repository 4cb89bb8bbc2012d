//! The client's tests run against the same in-process cluster harness as the
//! server's own integration tests (`tests/it/support.rs`: real nodes on
//! loopback port 0, real gRPC, one database per node), plus a helper or two.

#![allow(dead_code)] // each test binary uses a different part

#[path = "../../../../tests/it/support.rs"]
mod support;

#[allow(unused_imports)]
pub use support::{eventually, TestCluster};
use tokio::net::TcpListener;

/// The addresses a client is given.
pub trait Endpoints {
    /// Every node's address, node 1 first.
    fn endpoints(&self) -> Vec<String>;

    /// `endpoints()` joined with commas, as `--endpoints` takes them.
    fn endpoints_flag(&self) -> String {
        self.endpoints().join(",")
    }
}

impl Endpoints for TestCluster {
    fn endpoints(&self) -> Vec<String> {
        self.members.values().cloned().collect()
    }
}

/// A 3-node cluster on SQLite.
pub async fn start_cluster() -> TestCluster {
    TestCluster::start(3, taskd::store::Backend::Sqlite).await
}

/// An address nothing listens on: bound, then closed.
pub async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}
