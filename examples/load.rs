//! A closed-loop load generator: C concurrent clients create tasks against a
//! running cluster for D seconds, then report throughput and latency.
//!
//! ```sh
//! cargo run --release -- dev &                       # or any cluster
//! cargo run --release --example load -- 127.0.0.1:50051 64 10
//! ```
//! Arguments: endpoint (any node; followers forward), concurrency, seconds.

use std::time::{Duration, Instant};

use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::CreateTaskRequest;
use tonic::transport::Channel;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:50051".into());
    let concurrency: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |a| a.parse())?;

    let channel = Channel::from_shared(format!("http://{endpoint}"))?
        .connect()
        .await?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let mut client = TaskServiceClient::new(channel.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < until {
                let started = Instant::now();
                let request = CreateTaskRequest {
                    title: format!("load {worker}-{n}"),
                    labels: vec!["load".into()],
                    ..Default::default()
                };
                match client.create_task(request).await {
                    Ok(_) => latencies.push(started.elapsed()),
                    Err(_) => errors += 1,
                }
                n += 1;
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(joined) = workers.join_next().await {
        let (l, e) = joined?;
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
    };
    println!(
        "creates: {} ok, {errors} failed in {seconds}s at concurrency {concurrency}: {:.0}/s; latency p50 {:?} p99 {:?} max {:?}",
        latencies.len(),
        latencies.len() as f64 / seconds as f64,
        pct(0.50).copied().unwrap_or_default(),
        pct(0.99).copied().unwrap_or_default(),
        latencies.last().copied().unwrap_or_default(),
    );
    Ok(())
}
