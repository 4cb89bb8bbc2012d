//! Integration tests: real taskd nodes on loopback ports, real gRPC, real
//! SQLite and MySQL. Nothing is mocked. One binary, modules by concern.

mod mariadb;
mod support;

mod api;
mod backend_parity;
mod backup;
mod batching;
mod bench;
mod big_join;
mod compaction;
mod concurrency;
mod core_stop;
mod crash;
#[cfg(feature = "failpoints")]
mod crash_points;
mod deploy;
mod failover;
mod limits;
mod membership;
mod mesh;
mod metrics;
mod mysql_errors;
mod mysql_restart;
mod mysql_settings;
mod paging;
mod paging_props;
mod partition;
mod peer_auth;
mod pki;
mod proc_cluster;
mod process;
mod races;
mod recover;
mod replication;
mod secure_cluster;
mod security;
mod snapshot;
mod snapshot_memory;
mod storage_suite;
mod tls_rotation;
mod upgrade;
mod writers;
