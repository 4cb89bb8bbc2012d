//! Integration tests: real taskd nodes on loopback ports, real gRPC, real
//! SQLite and MySQL. Nothing is mocked. One binary, modules by concern.

mod support;

mod api;
mod backend_parity;
mod batching;
mod bench;
mod concurrency;
mod crash;
mod failover;
mod mesh;
mod paging;
mod paging_props;
mod process;
mod replication;
mod snapshot;
mod storage_suite;
