//! Every metric taskd exports, by name, in one place.
//!
//! Other modules call the functions here; this module calls none of
//! taskd's. Metrics go through the `metrics` facade to a Prometheus
//! recorder installed once per process by [`install`] (when a node serves
//! `--metrics-listen`); until then every call is a no-op. Several nodes can
//! run in one process (`taskd dev`, the in-process tests), so every series
//! carries a `node` label with the node's id.
//!
//! [`http`] serves `/metrics`, `/healthz` and `/readyz` over plain HTTP.

pub mod http;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Calls by `method` (the gRPC path, `/package.Service/Method`) and `code`
/// (the gRPC status code's name, `OK`, `NOT_FOUND`, …), counted when the
/// call ends. Health and reflection calls count too.
pub const GRPC_REQUESTS: &str = "taskd_grpc_requests_total";
/// Time from a call's arrival to its status, by `method`.
pub const GRPC_DURATION: &str = "taskd_grpc_request_duration_seconds";
/// The Raft term this node is in.
pub const RAFT_TERM: &str = "taskd_raft_term";
/// 1 while this node leads, else 0.
pub const RAFT_IS_LEADER: &str = "taskd_raft_is_leader";
/// How often this node saw a (new) leader established.
pub const RAFT_LEADER_CHANGES: &str = "taskd_raft_leader_changes_total";
/// The highest log index this node knows is committed.
pub const RAFT_COMMIT_INDEX: &str = "taskd_raft_commit_index";
/// The highest log index applied to this node's state machine.
pub const RAFT_APPLIED_INDEX: &str = "taskd_raft_applied_index";
/// Entries in this node's log (not yet purged behind a snapshot).
pub const RAFT_LOG_ENTRIES: &str = "taskd_raft_log_entries";
/// The last log index covered by this node's latest snapshot.
pub const SNAPSHOT_LAST_INDEX: &str = "taskd_snapshot_last_index";
/// Writes per proposed Raft entry (leader only).
pub const PROPOSAL_BATCH_SIZE: &str = "taskd_proposal_batch_size";
/// Calls this node forwarded to the leader, by `service`.
pub const FORWARDED_REQUESTS: &str = "taskd_forwarded_requests_total";
/// Database connections open, by `state` (`idle` or `in_use`).
pub const DB_POOL_CONNECTIONS: &str = "taskd_db_pool_connections";

/// Latency buckets (seconds): sub-millisecond reads up to the 5 s a call
/// may wait for a leader or a quorum, and the 10 s of a drain.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batch-size buckets: one write up to the proposer's 1,024 per entry.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The process's Prometheus recorder, installed on first use. A process
/// whose global recorder was already taken by someone else still gets a
/// handle, which then renders nothing.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(GRPC_DURATION.into()), DURATION_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(PROPOSAL_BATCH_SIZE.into()), BATCH_BUCKETS)
            })
            .expect("metric buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_ok() {
            describe();
        }
        handle
    })
}

/// Every metric in Prometheus text format (installs the recorder).
pub fn render() -> String {
    install().render()
}

/// Moves recorded histogram samples into their buckets, so that they do not
/// pile up between scrapes. Call every few seconds.
pub fn upkeep() {
    install().run_upkeep();
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        GRPC_REQUESTS,
        "gRPC calls served, by method and status code, counted when they end"
    );
    describe_histogram!(
        GRPC_DURATION,
        Unit::Seconds,
        "time from a gRPC call's arrival to its status, by method"
    );
    describe_gauge!(RAFT_TERM, "the Raft term this node is in");
    describe_gauge!(RAFT_IS_LEADER, "1 while this node leads, else 0");
    describe_counter!(
        RAFT_LEADER_CHANGES,
        "how often this node saw a leader established (a new leader, or the same after an election)"
    );
    describe_gauge!(
        RAFT_COMMIT_INDEX,
        "the highest log index this node knows is committed"
    );
    describe_gauge!(
        RAFT_APPLIED_INDEX,
        "the highest log index applied to this node's state machine"
    );
    describe_gauge!(
        RAFT_LOG_ENTRIES,
        "entries in this node's log, not yet purged behind a snapshot"
    );
    describe_gauge!(
        SNAPSHOT_LAST_INDEX,
        "the last log index covered by this node's latest snapshot"
    );
    describe_histogram!(
        PROPOSAL_BATCH_SIZE,
        Unit::Count,
        "writes per Raft entry proposed by the leader"
    );
    describe_counter!(
        FORWARDED_REQUESTS,
        "calls this node forwarded to the leader, by service"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "database connections open, by state (idle, in_use)"
    );
}

fn node_label(node: u64) -> (&'static str, String) {
    ("node", node.to_string())
}

/// One gRPC call ended with `code` after `elapsed`.
pub fn grpc_request(node: u64, method: &str, code: &'static str, elapsed: Duration) {
    let node = node_label(node);
    counter!(
        GRPC_REQUESTS,
        &[
            node.clone(),
            ("method", method.to_owned()),
            ("code", code.to_owned())
        ]
    )
    .increment(1);
    histogram!(GRPC_DURATION, &[node, ("method", method.to_owned())]).record(elapsed.as_secs_f64());
}

/// What this node's Raft reports, as gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftGauges {
    pub term: u64,
    pub is_leader: bool,
    pub commit_index: u64,
    pub applied_index: u64,
    pub log_entries: u64,
    pub snapshot_last_index: u64,
}

/// Sets every Raft gauge of `node`.
pub fn raft(node: u64, g: &RaftGauges) {
    let labels = [node_label(node)];
    gauge!(RAFT_TERM, &labels).set(g.term as f64);
    gauge!(RAFT_IS_LEADER, &labels).set(if g.is_leader { 1.0 } else { 0.0 });
    gauge!(RAFT_COMMIT_INDEX, &labels).set(g.commit_index as f64);
    gauge!(RAFT_APPLIED_INDEX, &labels).set(g.applied_index as f64);
    gauge!(RAFT_LOG_ENTRIES, &labels).set(g.log_entries as f64);
    gauge!(SNAPSHOT_LAST_INDEX, &labels).set(g.snapshot_last_index as f64);
}

/// `node` saw a leader established.
pub fn leader_changed(node: u64) {
    counter!(RAFT_LEADER_CHANGES, &[node_label(node)]).increment(1);
}

/// The leader `node` proposed one entry of `writes` writes.
pub fn proposal_batch(node: u64, writes: usize) {
    histogram!(PROPOSAL_BATCH_SIZE, &[node_label(node)]).record(writes as f64);
}

/// `node` forwarded a call of `service` (`TaskService`, `RaftService`) to the leader.
pub fn forwarded(node: u64, service: &'static str) {
    counter!(
        FORWARDED_REQUESTS,
        &[node_label(node), ("service", service.to_owned())]
    )
    .increment(1);
}

/// `node`'s database connections: checked out and idle.
pub fn db_pool(node: u64, in_use: u64, idle: u64) {
    let node = node_label(node);
    gauge!(
        DB_POOL_CONNECTIONS,
        &[node.clone(), ("state", "in_use".to_owned())]
    )
    .set(in_use as f64);
    gauge!(DB_POOL_CONNECTIONS, &[node, ("state", "idle".to_owned())]).set(idle as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Series are told apart by node, counters add up, histograms render
    /// with buckets (not as summaries), so Grafana's histogram_quantile works.
    #[test]
    fn renders_labelled_series_and_buckets() {
        install();
        grpc_request(
            901,
            "/taskd.v1.TaskService/GetTask",
            "OK",
            Duration::from_millis(3),
        );
        grpc_request(
            901,
            "/taskd.v1.TaskService/GetTask",
            "OK",
            Duration::from_millis(4),
        );
        grpc_request(
            902,
            "/taskd.v1.TaskService/GetTask",
            "NOT_FOUND",
            Duration::ZERO,
        );
        proposal_batch(901, 7);
        db_pool(901, 2, 3);
        raft(901, &RaftGauges::default());
        let text = render();
        assert!(
            text.contains(r#"taskd_grpc_requests_total{node="901",method="/taskd.v1.TaskService/GetTask",code="OK"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"code="NOT_FOUND"} 1"#), "{text}");
        assert!(
            text.contains(r#"taskd_grpc_request_duration_seconds_bucket{node="901",method="/taskd.v1.TaskService/GetTask",le="0.005"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"taskd_proposal_batch_size_count{node="901"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"taskd_db_pool_connections{node="901",state="idle"} 3"#),
            "{text}"
        );
        assert!(text.contains("# HELP taskd_raft_term"), "{text}");
    }
}
