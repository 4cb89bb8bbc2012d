//! `taskctl`: create, get, list, update and delete taskd tasks from a shell.
//!
//! Errors print one line on stderr (`taskctl: not found: task "x" not found`)
//! and exit with a code per class; see `taskctl --help`.

mod cli;
mod output;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use taskd_client::{pb, ClientOptions, Error, TaskClient};

use cli::{Cli, Command, Output};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(text) => {
            // A closed pipe (`taskctl list | head`) is not an error worth a message.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("taskctl: {error}");
            ExitCode::from(exit_code(&error))
        }
    }
}

/// The exit code of each error class, as `taskctl --help` lists them.
fn exit_code(error: &Error) -> u8 {
    match error {
        Error::Other { .. } => 1,
        Error::InvalidEndpoint { .. } => 2,
        Error::NotFound { .. } => 3,
        Error::InvalidArgument { .. } => 4,
        Error::Conflict { .. } | Error::AlreadyExists { .. } => 5,
        Error::Unavailable { .. } => 6,
        Error::DeadlineExceeded { .. } => 7,
        Error::OutcomeUnknown { .. } => 8,
        Error::InvalidOptions { .. } => 2,
        Error::Unauthenticated { .. } => 9,
        Error::PermissionDenied { .. } => 10,
    }
}

/// The client options of the flags: deadline, TLS files, token.
fn client_options(cli: &Cli) -> Result<ClientOptions, Error> {
    let read = |flag: &str, path: &Path| {
        std::fs::read(path).map_err(|e| Error::InvalidOptions {
            message: format!("{flag} {}: {e}", path.display()),
        })
    };
    let mut options = ClientOptions::default().timeout(cli.timeout);
    if let Some(path) = &cli.cacert {
        options = options.ca_certificate(read("--cacert", path)?);
    }
    if let (Some(cert), Some(key)) = (&cli.cert, &cli.key) {
        options = options.identity(read("--cert", cert)?, read("--key", key)?);
    }
    if let Some(token) = cli.token.as_deref().filter(|t| !t.trim().is_empty()) {
        options = options.token(token);
    }
    Ok(options)
}

/// Runs the command; what to print on success.
async fn run(cli: Cli) -> Result<String, Error> {
    let options = client_options(&cli)?;
    let client = TaskClient::connect_with(cli.endpoints.iter().filter(|e| !e.is_empty()), options)?;
    let print_one = |task: pb::Task| match cli.output {
        Output::Table => output::table(&[task]),
        Output::Json => output::json_one(&task),
    };
    match cli.command {
        Command::Create(args) => {
            let request = pb::CreateTaskRequest {
                title: args.title,
                description: args.description.unwrap_or_default(),
                status: args
                    .status
                    .map(pb::TaskStatus::from)
                    .unwrap_or_default()
                    .into(),
                priority: args
                    .priority
                    .map(pb::TaskPriority::from)
                    .unwrap_or_default()
                    .into(),
                deadline: args.deadline,
                assignee: args.assignee.unwrap_or_default(),
                labels: args.labels,
                request_id: args.request_id.unwrap_or_default(),
            };
            Ok(print_one(client.create_task(request).await?))
        }
        Command::Get(args) => {
            let consistency = if args.stale {
                pb::ReadConsistency::Stale
            } else {
                pb::ReadConsistency::Linearizable
            };
            Ok(print_one(client.get_task_with(args.id, consistency).await?))
        }
        Command::List(args) => {
            let tasks = list(&client, args).await?;
            Ok(match cli.output {
                Output::Table => output::table(&tasks),
                Output::Json => output::json_list(&tasks),
            })
        }
        Command::Update(args) => {
            let expected_version = args.expected_version;
            let (task, paths) = update_request(args);
            Ok(print_one(
                client.update_task(task, paths, expected_version).await?,
            ))
        }
        Command::Delete(args) => {
            client.delete_task(&args.id, args.expected_version).await?;
            Ok(match cli.output {
                Output::Table => format!("deleted {}\n", args.id),
                Output::Json => "{}\n".to_string(),
            })
        }
    }
}

/// Follows pages until the last one or `--limit` tasks.
async fn list(client: &TaskClient, args: cli::ListArgs) -> Result<Vec<pb::Task>, Error> {
    const MAX_PAGE: usize = 1000;
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut request = pb::ListTasksRequest {
        page_size: limit.min(MAX_PAGE) as i32,
        status: args
            .status
            .map(pb::TaskStatus::from)
            .unwrap_or_default()
            .into(),
        assignee: args.assignee.unwrap_or_default(),
        label: args.label.unwrap_or_default(),
        deadline_before: args.due_before,
        deadline_after: args.due_after,
        order_by: args
            .order
            .map(pb::TaskOrder::from)
            .unwrap_or_default()
            .into(),
        consistency: if args.stale {
            pb::ReadConsistency::Stale
        } else {
            pb::ReadConsistency::Linearizable
        }
        .into(),
        ..Default::default()
    };
    let mut tasks = Vec::new();
    while tasks.len() < limit {
        let page = client.list_tasks(request.clone()).await?;
        tasks.extend(page.tasks);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    tasks.truncate(limit);
    Ok(tasks)
}

/// The task carrying the flags' values, and the mask naming exactly those flags.
fn update_request(args: cli::UpdateArgs) -> (pb::Task, Vec<&'static str>) {
    let mut task = pb::Task {
        id: args.id,
        ..Default::default()
    };
    let mut paths = Vec::new();
    if let Some(title) = args.title {
        task.title = title;
        paths.push("title");
    }
    if let Some(description) = args.description {
        task.description = description;
        paths.push("description");
    }
    if let Some(status) = args.status {
        task.status = pb::TaskStatus::from(status).into();
        paths.push("status");
    }
    if let Some(priority) = args.priority {
        task.priority = pb::TaskPriority::from(priority).into();
        paths.push("priority");
    }
    if args.deadline.is_some() || args.clear_deadline {
        task.deadline = args.deadline;
        paths.push("deadline");
    }
    if let Some(assignee) = args.assignee {
        task.assignee = assignee;
        paths.push("assignee");
    }
    if !args.labels.is_empty() || args.clear_labels {
        task.labels = args.labels;
        paths.push("labels");
    }
    (task, paths)
}
