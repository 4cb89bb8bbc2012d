//! Issue 9's limits on real processes: message sizes (compressed too),
//! List pages a default client can take, shedding under overload, and a
//! node out of file descriptors that refuses connections visibly.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::{CreateTaskRequest, ListTasksRequest, ReadConsistency};
use tonic::codec::CompressionEncoding;
use tonic::transport::Endpoint;
use tonic::Code;
use tonic_types::StatusExt;

use crate::process::{channel, is_serving, TaskdProcess};
use crate::secure_cluster::{SecureCluster, Secured};

fn create(title: &str, description: String, request_id: String) -> CreateTaskRequest {
    CreateTaskRequest {
        title: title.into(),
        description,
        request_id,
        ..Default::default()
    }
}

/// Every task of the node at `addr`, by pages, with a default client.
async fn list_all(addr: &str) -> Vec<taskd::proto::Task> {
    let mut client = TaskServiceClient::new(channel(addr));
    let (mut tasks, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = client
            .list_tasks(ListTasksRequest {
                page_size: 1000,
                page_token: token,
                consistency: ReadConsistency::Stale as i32,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("page {pages}: {s:?}"))
            .into_inner();
        pages += 1;
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return tasks;
        }
        token = page.next_page_token;
    }
}

/// A message over the 4 MiB limit is refused, so is a small gzip bomb that
/// decompresses past it; compressed calls within it work (gzip, deflate,
/// zstd, and compressed answers); nothing was written by the refused
/// calls and the node stays healthy.
#[tokio::test]
async fn oversized_messages_are_refused_and_compression_works() {
    let cluster = SecureCluster::start(1, Secured::default(), &[]).await;
    let addr = cluster.members[&1].clone();
    let big = "x".repeat(5 * 1024 * 1024);
    let mut plain = TaskServiceClient::new(channel(&addr));
    let refused = plain
        .create_task(create("too big", big.clone(), "big-1".into()))
        .await
        .expect_err("a 5 MiB message");
    assert!(
        matches!(refused.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{refused:?}"
    );
    let mut gzip = TaskServiceClient::new(channel(&addr))
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let bomb = gzip
        .create_task(create("bomb", big, "big-2".into()))
        .await
        .expect_err("5 MiB that gzip makes a few KiB");
    assert_eq!(bomb.code(), Code::ResourceExhausted, "{bomb:?}");

    for (n, encoding) in [
        CompressionEncoding::Gzip,
        CompressionEncoding::Deflate,
        CompressionEncoding::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let mut client = TaskServiceClient::new(channel(&addr))
            .send_compressed(encoding)
            .accept_compressed(encoding);
        client
            .create_task(create("compressed", "y".repeat(4000), format!("ok-{n}")))
            .await
            .unwrap_or_else(|s| panic!("{encoding:?}: {s:?}"));
    }
    assert!(is_serving(&addr).await, "the node stopped serving");
    let titles: Vec<String> = list_all(&addr).await.into_iter().map(|t| t.title).collect();
    assert_eq!(titles, ["compressed"; 3], "refused calls wrote something");
}

/// A List page of the largest tasks stays under what a default client
/// accepts (4 MiB): it stops early with a token, and paging returns every
/// task once. (Measured before: 700 such tasks made a 7.6 MB page.)
#[tokio::test]
async fn list_pages_fit_a_default_client() {
    let cluster = SecureCluster::start(1, Secured::default(), &[]).await;
    let addr = cluster.members[&1].clone();
    let client = TaskServiceClient::new(channel(&addr));
    let n = 450;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let mut client = client.clone();
        writers.spawn(async move {
            for i in (w..n).step_by(8) {
                let mut request = create(&"t".repeat(256), "d".repeat(8192), format!("big-{i}"));
                request.assignee = "a".repeat(256);
                request.labels = (0..32)
                    .map(|l| format!("{l:02}{}", "l".repeat(62)))
                    .collect();
                client
                    .create_task(request)
                    .await
                    .expect("create a big task");
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    // The default client: tonic's 4 MiB decoding limit, as grpcio's and grpcurl's.
    let first = TaskServiceClient::new(channel(&addr))
        .list_tasks(ListTasksRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("a page a default client can decode")
        .into_inner();
    assert!(
        first.tasks.len() < n,
        "{} tasks in one page",
        first.tasks.len()
    );
    assert!(
        !first.next_page_token.is_empty(),
        "a short page names the next"
    );
    let ids: BTreeSet<String> = list_all(&addr).await.into_iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), n, "every task once");
}

/// Ten times more concurrent callers than the node admits: it sheds the
/// rest at once with RESOURCE_EXHAUSTED and a RetryInfo, stays SERVING,
/// and every acknowledged write is there, and nothing else.
#[tokio::test]
async fn overload_is_shed_and_loses_nothing() {
    let limit = 4;
    let cluster =
        SecureCluster::start(1, Secured::default(), &["--max-concurrent-calls", "4"]).await;
    let addr = cluster.members[&1].clone();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let shed = Arc::new(Mutex::new(0u32));
    let mut callers = tokio::task::JoinSet::new();
    for c in 0..10 * limit {
        // Its own connection each, as independent clients.
        let mut client = TaskServiceClient::new(channel(&addr));
        let (acknowledged, shed) = (acknowledged.clone(), shed.clone());
        callers.spawn(async move {
            for i in 0..15 {
                let request = create("load", String::new(), format!("load-{c}-{i}"));
                match client.create_task(request).await {
                    Ok(r) => {
                        let id = r.into_inner().task.unwrap().id;
                        acknowledged.lock().unwrap().insert(id);
                    }
                    Err(s) if s.code() == Code::ResourceExhausted => {
                        assert!(s.get_details_retry_info().is_some(), "no RetryInfo: {s:?}");
                        *shed.lock().unwrap() += 1;
                    }
                    Err(s) => panic!("caller {c}: {s:?}"),
                }
            }
        });
    }
    let mut serving_throughout = true;
    while !callers.is_empty() {
        serving_throughout &= is_serving(&addr).await;
        if let Ok(Some(done)) =
            tokio::time::timeout(Duration::from_millis(20), callers.join_next()).await
        {
            done.unwrap();
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let shed = *shed.lock().unwrap();
    println!("overload: {} admitted, {shed} shed", acknowledged.len());
    assert!(shed > 0, "nothing was shed at 10x the limit");
    assert!(!acknowledged.is_empty(), "nothing was admitted");
    assert!(serving_throughout, "health left SERVING under overload");
    let stored: BTreeSet<String> = list_all(&addr).await.into_iter().map(|t| t.id).collect();
    assert_eq!(
        stored, acknowledged,
        "stored tasks differ from the acknowledged ones"
    );
}

/// With a descriptor limit of 256, 400 concurrent connections each get an
/// answer or a refusal they can see, none hangs until its deadline, and
/// the node serves on.
#[tokio::test]
async fn out_of_descriptors_refuses_connections_visibly() {
    taskd::server::incoming::raise_fd_limit().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = crate::process::free_ports(1)[0];
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--nofile=256:256".to_string(),
        crate::process::TASKD.to_string(),
    ];
    args.extend([
        "serve".into(),
        "--node-id".into(),
        "1".into(),
        "--listen".into(),
        addr.clone(),
        "--data-dir".into(),
        dir.path().join("n1").display().to_string(),
        "--initial-cluster".into(),
        format!("1={addr}"),
    ]);
    let mut node = TaskdProcess::spawn_program(
        Path::new("prlimit"),
        "node with 256 descriptors",
        &args,
        &dir.path().join("n1.stderr"),
        Stdio::null(),
    );
    crate::process::wait_serving(&addr).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..400 {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(20));
        calls.spawn(async move {
            let channel = match endpoint.connect().await {
                Ok(channel) => channel,
                Err(_) => return (None, None),
            };
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let answer = client
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .map(|_| ())
                .map_err(|s| (s.code(), s.message().to_string()));
            // Held open until every call is done: the connections overlap.
            (Some(channel), Some(answer))
        });
    }
    let (mut answered, mut refused, mut held) = (0, 0, Vec::new());
    while let Some(done) = calls.join_next().await {
        match done.unwrap() {
            (channel, Some(Ok(()))) => {
                answered += 1;
                held.extend(channel);
            }
            (_, Some(Err((code, message)))) => {
                // tonic ends a call that reached its deadline with
                // DEADLINE_EXCEEDED, or CANCELLED "Timeout expired".
                let hung = code == Code::DeadlineExceeded
                    || (code == Code::Cancelled && message.contains("Timeout"));
                assert!(!hung, "a call hung until its deadline ({code:?} {message})");
                refused += 1;
            }
            (_, None) => refused += 1,
        }
    }
    println!("256 descriptors: {answered} answered, {refused} refused");
    assert!(
        answered > 0 && refused > 0,
        "{answered} answered, {refused} refused"
    );
    drop(held);
    crate::process::wait_serving(&addr).await;
    node.kill_9();
}
