//! The same inputs give the same answers on MySQL and on SQLite.
//!
//! MySQL's PAD SPACE collations (`utf8mb4_bin` among them) ignore trailing
//! spaces when they compare strings, SQLite never does: an id, request_id,
//! assignee or label that differs only in trailing spaces must stay a
//! different value on both, or one backend finds tasks the other does not,
//! and a cluster that mixes them diverges on request_id dedupe.

use std::collections::HashMap;

use taskd::proto::{
    CreateTaskRequest, DeleteTaskRequest, GetTaskRequest, ListTasksRequest, Task, UpdateTaskRequest,
};
use taskd::store::Backend;
use tonic::{Code, Status};

use crate::support::TestCluster;

/// Names tasks by the order they first appear, so that answers from two
/// clusters (whose ids differ) can be compared.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    fn of(&mut self, id: &str) -> String {
        let next = format!("t{}", self.0.len());
        self.0.entry(id.to_string()).or_insert(next).clone()
    }

    fn tasks(&mut self, tasks: &[Task]) -> String {
        let names: Vec<String> = tasks.iter().map(|t| self.of(&t.id)).collect();
        format!("[{}]", names.join(","))
    }
}

fn answer<T>(result: Result<tonic::Response<T>, Status>, ok: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(reply) => ok(reply.into_inner()),
        Err(status) if status.code() == Code::Internal => {
            panic!("internal error: {status:?}")
        }
        Err(status) => format!("{:?}", status.code()),
    }
}

/// Runs the script on a fresh one-node cluster of `backend`; one line per step.
async fn observe(backend: Backend) -> Vec<String> {
    let cluster = TestCluster::start(1, backend).await;
    let mut client = cluster.client(1).await;
    let mut names = Names::default();
    let mut seen = Vec::new();
    let create = |title: &str, assignee: &str, label: &str, request_id: &str| CreateTaskRequest {
        title: title.into(),
        assignee: assignee.into(),
        labels: vec![label.into()],
        request_id: request_id.into(),
        ..Default::default()
    };
    let mut created = Vec::new();
    for (step, req) in [
        ("create k", create("a", "ada", "x", "k")),
        ("create 'k '", create("b", "ada ", "x-", "k ")),
        ("retry k", create("a", "ada", "x", "k")),
        ("retry 'k '", create("b", "ada ", "x-", "k ")),
    ] {
        let result = client.create_task(req).await;
        if let Ok(reply) = &result {
            created.push(reply.get_ref().task.clone().expect("task"));
        }
        let line = answer(result, |r| names.tasks(&[r.task.expect("task")]));
        seen.push(format!("{step}: {line}"));
    }
    let first = created.first().expect("the first create succeeded").clone();
    let padded = format!("{} ", first.id);

    for (step, id) in [("get id", &first.id), ("get id+' '", &padded)] {
        let result = client
            .get_task(GetTaskRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await;
        let line = answer(result, |r| names.tasks(&[r.task.expect("task")]));
        seen.push(format!("{step}: {line}"));
    }
    for (field, value) in [
        ("assignee", "ada"),
        ("assignee", "ada "),
        ("assignee", "ada  "),
        ("label", "x"),
        ("label", "x "),
        ("label", "x-"),
    ] {
        let mut req = ListTasksRequest::default();
        match field {
            "assignee" => req.assignee = value.into(),
            _ => req.label = value.into(),
        }
        let line = answer(client.list_tasks(req).await, |r| names.tasks(&r.tasks));
        seen.push(format!("list {field} {value:?}: {line}"));
    }
    let update = UpdateTaskRequest {
        task: Some(Task {
            id: padded.clone(),
            title: "changed".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["title".into()],
        }),
        ..Default::default()
    };
    let line = answer(client.update_task(update).await, |r| {
        names.tasks(&[r.task.expect("task")])
    });
    seen.push(format!("update id+' ': {line}"));
    let delete = DeleteTaskRequest {
        id: padded.clone(),
        ..Default::default()
    };
    let line = answer(client.delete_task(delete).await, |_| "deleted".into());
    seen.push(format!("delete id+' ': {line}"));
    let result = client
        .get_task(GetTaskRequest {
            id: first.id.clone(),
            ..Default::default()
        })
        .await;
    let line = answer(result, |r| {
        let task = r.task.expect("task");
        format!(
            "{} {:?} v{}",
            names.tasks(std::slice::from_ref(&task)),
            task.title,
            task.version
        )
    });
    seen.push(format!("get id after: {line}"));
    cluster.shutdown().await;
    seen
}

/// Trailing spaces are significant in ids, request_ids, assignees and labels
/// on both backends, and both answer every step alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trailing_spaces_are_significant_on_every_backend() {
    let expected = [
        "create k: [t0]",
        "create 'k ': [t1]",
        "retry k: [t0]",
        "retry 'k ': [t1]",
        "get id: [t0]",
        "get id+' ': NotFound",
        "list assignee \"ada\": [t0]",
        "list assignee \"ada \": [t1]",
        "list assignee \"ada  \": []",
        "list label \"x\": [t0]",
        "list label \"x \": []",
        "list label \"x-\": [t1]",
        "update id+' ': NotFound",
        "delete id+' ': NotFound",
        "get id after: [t0] \"a\" v1",
    ];
    let sqlite = observe(Backend::Sqlite).await;
    let mysql = observe(Backend::Mysql).await;
    assert_eq!(sqlite, expected, "SQLite's answers");
    assert_eq!(mysql, sqlite, "MySQL answers differently from SQLite");
}
