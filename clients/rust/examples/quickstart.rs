//! Creates, reads, lists, updates and deletes a task on a running cluster.
//!
//! ```text
//! cargo run --bin taskd -- dev --data-dir "$(mktemp -d)" &
//! cargo run -p taskd-client --example quickstart [ENDPOINT,ENDPOINT,…]
//! ```
//!
//! The endpoints default to `TASKD_ENDPOINTS`, else the `taskd dev` cluster.
//! For a cluster with TLS and tokens, set `TASKD_CACERT` (a CA file) and
//! `TASKD_TOKEN`, as for taskctl.

use taskd_client::{pb, ClientOptions, Error, TaskClient};

const DEV_CLUSTER: &str = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoints = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("TASKD_ENDPOINTS").ok())
        .unwrap_or_else(|| DEV_CLUSTER.to_string());
    let mut options = ClientOptions::default();
    if let Ok(path) = std::env::var("TASKD_CACERT") {
        let pem = std::fs::read(&path).map_err(|e| Error::InvalidOptions {
            message: format!("TASKD_CACERT {path}: {e}"),
        })?;
        options = options.ca_certificate(pem);
    }
    if let Ok(token) = std::env::var("TASKD_TOKEN") {
        options = options.token(token);
    }
    let client = TaskClient::connect_with(endpoints.split(','), options)?;

    // request_id is left empty: the client fills it, so its retries never duplicate.
    let task = client
        .create_task(pb::CreateTaskRequest {
            title: "Try the Rust client".into(),
            priority: pb::TaskPriority::High.into(),
            labels: vec!["quickstart".into()],
            ..Default::default()
        })
        .await?;
    println!(
        "created  {} {:?} (version {})",
        task.id, task.title, task.version
    );

    let task = client.get_task(&task.id).await?;
    println!("got      {} status={:?}", task.id, task.status());

    let labelled = client
        .list_all_tasks(pb::ListTasksRequest {
            label: "quickstart".into(),
            ..Default::default()
        })
        .await?;
    println!("listed   {} task(s) labelled quickstart", labelled.len());

    let version = task.version;
    let changed = pb::Task {
        status: pb::TaskStatus::Done.into(),
        ..task
    };
    let task = client.update_task(changed, ["status"], version).await?;
    println!(
        "updated  {} status={:?} (version {})",
        task.id,
        task.status(),
        task.version
    );

    // A stale expected_version is a typed conflict that names the current version.
    match client.update_task(task.clone(), ["title"], version).await {
        Err(Error::Conflict {
            current_version, ..
        }) => println!("conflict as expected: the task is at version {current_version:?}"),
        other => println!("unexpected: {other:?}"),
    }

    client.delete_task(&task.id, task.version).await?;
    match client.get_task(&task.id).await {
        Err(Error::NotFound { message }) => println!("deleted  ({message})"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
