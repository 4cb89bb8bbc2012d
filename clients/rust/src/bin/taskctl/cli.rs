//! The command line: one clap struct per command, flags named after the proto fields.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use prost_types::Timestamp;
use taskd_client::pb;

/// The `taskd dev` cluster.
const DEV_CLUSTER: &str = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

const EXIT_CODES: &str = "\
Output: a table by default; --output json prints proto3 JSON (as grpcurl does):
one object for create/get/update, an array for list, {} for delete.

Exit codes: 0 success, 1 other error, 2 usage, 3 not found, 4 invalid argument
(request_id reused included), 5 conflict (version mismatch, request_id whose task
was deleted), 6 unavailable, 7 deadline exceeded, 8 outcome unknown (a write may
have been applied: read before acting), 9 unauthenticated (no token, or one the
server does not accept), 10 permission denied (the token's role may not do this).

TLS: https://host:port endpoints, or --cacert / --cert with any endpoint, connect
over TLS; the token (TASKD_TOKEN, or --token) is sent as `authorization: Bearer`.";

/// A command line for taskd's TaskService.
#[derive(Debug, Parser)]
#[command(name = "taskctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Nodes to talk to, comma-separated (host:port, http://host:port, or
    /// https://host:port for TLS); any node serves every call, the others are
    /// tried when one fails.
    #[arg(long, env = "TASKD_ENDPOINTS", value_delimiter = ',', default_value = DEV_CLUSTER, global = true)]
    pub endpoints: Vec<String>,
    /// How to print results.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// Deadline of each call, retries included (e.g. 10s, 500ms, 1m).
    #[arg(long, env = "TASKD_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
    /// PEM file of the CA that signed the nodes' certificates (default: the
    /// system's roots); turns TLS on for every endpoint.
    #[arg(long, env = "TASKD_CACERT", value_name = "FILE", global = true)]
    pub cacert: Option<PathBuf>,
    /// PEM file of the client certificate, for nodes that require one (mutual TLS).
    #[arg(
        long,
        env = "TASKD_CERT",
        value_name = "FILE",
        requires = "key",
        global = true
    )]
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(
        long,
        env = "TASKD_KEY",
        value_name = "FILE",
        requires = "cert",
        global = true
    )]
    pub key: Option<PathBuf>,
    /// Bearer token sent with every call. Prefer TASKD_TOKEN: a flag's value
    /// shows in the process list and the shell history.
    #[arg(long, env = "TASKD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a task and print it.
    Create(CreateArgs),
    /// Print one task.
    Get(GetArgs),
    /// Print the tasks matching every filter given, following all pages.
    List(ListArgs),
    /// Change the fields given as flags (the update mask is exactly those) and print the task.
    Update(UpdateArgs),
    /// Delete a task.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub title: String,
    #[arg(long)]
    pub description: Option<String>,
    /// Default: todo.
    #[arg(long, value_enum)]
    pub status: Option<Status>,
    #[arg(long, value_enum)]
    pub priority: Option<Priority>,
    /// When the task is due, RFC 3339 (e.g. 2030-01-31T17:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub deadline: Option<Timestamp>,
    #[arg(long)]
    pub assignee: Option<String>,
    /// A label; repeat the flag for several.
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Idempotency key; default: a fresh UUID, reused by the client's retries.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub id: String,
    /// Read the asked node's own copy, which may lag the leader.
    #[arg(long)]
    pub stale: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum)]
    pub status: Option<Status>,
    /// Tasks carrying this label.
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long)]
    pub assignee: Option<String>,
    /// Tasks due strictly before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub due_before: Option<Timestamp>,
    /// Tasks due strictly after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub due_after: Option<Timestamp>,
    /// Print at most this many tasks.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Default: create-time (oldest first).
    #[arg(long, value_enum)]
    pub order: Option<Order>,
    /// Read the asked node's own copy, which may lag the leader.
    #[arg(long)]
    pub stale: bool,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("fields")
        .required(true)
        .multiple(true)
        .args(["title", "description", "status", "priority", "deadline", "clear_deadline",
               "assignee", "labels", "clear_labels"]),
))]
pub struct UpdateArgs {
    pub id: String,
    /// Change only if the task is at this version (0: whatever it is).
    #[arg(long, default_value_t = 0)]
    pub expected_version: u64,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long, value_enum)]
    pub status: Option<Status>,
    #[arg(long, value_enum)]
    pub priority: Option<Priority>,
    /// RFC 3339.
    #[arg(long, value_parser = parse_time, conflicts_with = "clear_deadline")]
    pub deadline: Option<Timestamp>,
    /// Remove the deadline.
    #[arg(long)]
    pub clear_deadline: bool,
    /// The new assignee ("" for nobody).
    #[arg(long)]
    pub assignee: Option<String>,
    /// The new labels, replacing the old ones; repeat the flag for several.
    #[arg(long = "label", value_name = "LABEL", conflicts_with = "clear_labels")]
    pub labels: Vec<String>,
    /// Remove every label.
    #[arg(long)]
    pub clear_labels: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub id: String,
    /// Delete only if the task is at this version (0: whatever it is).
    #[arg(long, default_value_t = 0)]
    pub expected_version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    Todo,
    #[value(alias = "in_progress")]
    InProgress,
    Done,
    #[value(alias = "canceled")]
    Cancelled,
}

impl From<Status> for pb::TaskStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Todo => pb::TaskStatus::Todo,
            Status::InProgress => pb::TaskStatus::InProgress,
            Status::Done => pb::TaskStatus::Done,
            Status::Cancelled => pb::TaskStatus::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Priority {
    Low,
    Medium,
    High,
    Urgent,
}

impl From<Priority> for pb::TaskPriority {
    fn from(priority: Priority) -> Self {
        match priority {
            Priority::Low => pb::TaskPriority::Low,
            Priority::Medium => pb::TaskPriority::Medium,
            Priority::High => pb::TaskPriority::High,
            Priority::Urgent => pb::TaskPriority::Urgent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Order {
    CreateTime,
    Deadline,
}

impl From<Order> for pb::TaskOrder {
    fn from(order: Order) -> Self {
        match order {
            Order::CreateTime => pb::TaskOrder::CreateTime,
            Order::Deadline => pb::TaskOrder::Deadline,
        }
    }
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse().map_err(|_| {
        format!("expected an RFC 3339 time such as 2030-01-31T17:00:00Z, got {text:?}")
    })
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration such as 10s or 500ms, got {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn times_parse_rfc3339() {
        let t = parse_time("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(t.to_string(), "2030-01-02T03:04:05Z");
        assert!(parse_time("tomorrow").is_err());
    }

    #[test]
    fn update_needs_a_field_and_status_takes_short_names() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["taskctl", "update", "id"]).is_err());
        let cli =
            Cli::try_parse_from(["taskctl", "update", "id", "--status", "in_progress"]).unwrap();
        let Command::Update(args) = cli.command else {
            panic!("not update")
        };
        assert_eq!(args.status, Some(Status::InProgress));
    }

    #[test]
    fn cert_and_key_come_together() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["taskctl"], args].concat());
        assert!(parse(&["--cert", "c.pem", "get", "x"]).is_err());
        assert!(parse(&["--key", "k.pem", "get", "x"]).is_err());
        let cli = parse(&[
            "get", "x", "--cacert", "ca.pem", "--cert", "c.pem", "--key", "k.pem",
        ])
        .expect("global flags after the command");
        assert_eq!(cli.cacert, Some(PathBuf::from("ca.pem")));
        assert_eq!(cli.key, Some(PathBuf::from("k.pem")));
    }

    /// `--help` names TASKD_TOKEN but never prints its value.
    #[test]
    fn help_hides_the_token_value() {
        use clap::CommandFactory;
        let command = Cli::command();
        let token = command
            .get_arguments()
            .find(|a| a.get_id() == "token")
            .expect("a --token flag");
        assert_eq!(token.get_env(), Some(std::ffi::OsStr::new("TASKD_TOKEN")));
        assert!(token.is_hide_env_values_set());
    }
}
