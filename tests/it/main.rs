//! Integration tests: real taskd nodes on loopback ports, real gRPC, real
//! SQLite and MySQL. Nothing is mocked. One binary, modules by concern.

mod support;

mod api;
mod batching;
mod bench;
mod concurrency;
mod crash;
mod failover;
mod mesh;
mod mysql_errors;
mod mysql_restart;
mod paging;
mod partition;
mod proc_cluster;
mod process;
mod races;
mod replication;
mod snapshot;
mod storage_suite;
mod writers;
