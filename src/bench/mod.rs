//! `taskd bench`: a closed-loop load generator and a failover clock.
//!
//! A client like any other: it talks gRPC to real nodes through [`crate::proto`]
//! and knows nothing of `store/` or `raft/`. With `--endpoints` it drives a
//! running cluster (or etcd, `--target etcd`); with `--nodes N` it starts N
//! `taskd serve` child processes of this binary, so their CPU time and memory
//! can be read from `/proc`, and stops them when done.
//!
//! - [`args`]: the flags and the workloads they name.
//! - [`cluster`]: the self-started local cluster of child processes.
//! - [`load`]: N callers, one request in flight each, over K connections;
//!   the measured window, the progress line.
//! - [`taskd_target`], `etcd_target`: what each workload's call is on each target.
//! - [`failover`]: kill -9 the leader, time the first acknowledged write.
//! - [`handover`]: planned leadership moves (transfer, SIGTERM to the leader).
//! - [`procstat`]: CPU seconds and resident memory from `/proc`.
//! - [`report`]: percentiles, the text summary and the JSON line.

mod args;
mod cluster;
#[cfg(feature = "etcd")]
mod etcd_target;
mod failover;
mod handover;
mod load;
mod procstat;
mod report;
mod taskd_target;

use std::future::Future;

use anyhow::{anyhow, bail};

pub use args::{BenchArgs, OutputFormat, Target, Workload};

use cluster::{ClusterSpec, LocalCluster};
use load::{Caller, LoadPlan};
use report::{LoadReport, Setup};

/// Runs the benchmark the flags describe, until done or `shutdown` resolves.
/// Errors come back as one line (the causes joined with `: `).
pub async fn run(args: BenchArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_inner(args, shutdown)
        .await
        .map_err(|e| anyhow!("bench: {e:#}"))
}

async fn run_inner(args: BenchArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    args.validate()?;
    tokio::pin!(shutdown);
    let Some(nodes) = args.nodes else {
        let endpoints = args.endpoints.clone();
        return tokio::select! {
            result = drive(&args, &endpoints, args.server_pids.clone(), None) => result,
            () = &mut shutdown => bail!("interrupted"),
        };
    };

    let spec = ClusterSpec {
        nodes,
        database_url_template: args.database_url_template.clone(),
        serve_args: args.serve_args.clone(),
        start_timeout: args.start_timeout(),
        tls: args.connection.client_tls()?,
    };
    let mut cluster = tokio::select! {
        started = LocalCluster::start(spec) => started?,
        () = &mut shutdown => bail!("interrupted while starting the cluster"),
    };
    let result = tokio::select! {
        result = drive_local(&args, &mut cluster) => result,
        () = &mut shutdown => Err(anyhow!("interrupted")),
    };
    cluster.stop().await;
    result
}

/// The `--nodes` form: a load workload against the local cluster, or failover.
async fn drive_local(args: &BenchArgs, cluster: &mut LocalCluster) -> anyhow::Result<()> {
    if args.workload == Workload::Failover {
        let report = failover::run(cluster, args.kills).await?;
        report.print(args.output);
        return Ok(());
    }
    if matches!(args.workload, Workload::Transfer | Workload::StopLeader) {
        let report = handover::run(cluster, args.kills, args.workload).await?;
        report.print(args.output);
        return Ok(());
    }
    let endpoints = cluster.endpoints();
    let mut pids = cluster.pids();
    pids.extend(&args.server_pids);
    drive(args, &endpoints, pids, Some(cluster.database())).await
}

/// Preloads, runs the load, prints the report.
async fn drive(
    args: &BenchArgs,
    endpoints: &[String],
    server_pids: Vec<u32>,
    database: Option<&'static str>,
) -> anyhow::Result<()> {
    let connections = args.connections.unwrap_or(endpoints.len());
    let callers = make_callers(args, endpoints, connections).await?;
    let plan = LoadPlan {
        workload: args.workload,
        warmup: args.warmup(),
        duration: args.duration(),
        server_pids,
    };
    let term_at = async || match args.target {
        Target::Taskd => taskd_target::highest_term(endpoints, &args.connection).await,
        Target::Etcd => None,
    };
    let term_start = term_at().await;
    let measured = load::run(callers, &plan).await;
    let terms = term_start.zip(term_at().await);
    let setup = Setup {
        target: args.target,
        workload: args.workload,
        nodes: endpoints.len(),
        database,
        clients: args.clients,
        connections,
        preload: args.workload.needs_preload().then_some(args.preload),
        warmup_s: plan.warmup.as_secs_f64(),
        duration_s: plan.duration.as_secs_f64(),
        terms,
    };
    LoadReport::new(setup, &measured).print(args.output);
    Ok(())
}

/// Connects, preloads what the workload reads, and hands out one caller per client.
async fn make_callers(
    args: &BenchArgs,
    endpoints: &[String],
    connections: usize,
) -> anyhow::Result<Vec<Caller>> {
    let preload = if args.workload.needs_preload() {
        args.preload
    } else {
        0
    };
    match args.target {
        Target::Taskd => {
            let target = taskd_target::TaskdTarget::connect(
                endpoints,
                connections,
                args.call_timeout(),
                &args.connection,
            )
            .await?;
            let keys = target.preload(preload).await?;
            Ok((0..args.clients)
                .map(|i| Caller::Taskd(target.caller(i, keys.clone())))
                .collect())
        }
        #[cfg(feature = "etcd")]
        Target::Etcd => {
            let target =
                etcd_target::EtcdTarget::connect(endpoints, connections, args.call_timeout())
                    .await?;
            let keys = target.preload(preload).await?;
            Ok((0..args.clients)
                .map(|i| Caller::Etcd(target.caller(i, keys.clone())))
                .collect())
        }
        #[cfg(not(feature = "etcd"))]
        Target::Etcd => bail!("{}", args::NO_ETCD),
    }
}
