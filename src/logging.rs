//! Log lines on stderr: `--log-format text|json`, `--log-level`, `RUST_LOG`.
//!
//! Every line of a node carries its `node` (the node's span, and each gRPC
//! call's span from `api::observe`, which also carries the method and, for
//! writes, the `request_id`).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line: time, level, target, fields and spans.
    Json,
}

/// openraft 0.9.25's RaftCore logs at WARN whenever it drops a message sent
/// under a vote it no longer holds ("A message will be ignored because vote
/// changed", `RaftCore::does_vote_match`). Every `SaveVote` also posts the
/// node a VoteResponse from itself (`RaftCore::run_command`), which only a
/// candidate still waiting for votes uses: on a follower that grants a vote
/// or learns the leader's, and on a candidate that has already won, it is
/// dropped with that warning. So every election, and so every start, warns
/// on every node though nothing is wrong. The module's other WARN lines are
/// the same kind of stale-message drop (an older membership); its errors
/// still show.
const QUIET_STALE_MESSAGES: &str = "openraft::core::raft_core=error";

/// The filter for `--log-level LEVEL` when `RUST_LOG` is not set.
pub fn directives(level: &str) -> String {
    match level.trim() {
        "info" => format!("info,openraft=warn,sqlx=warn,{QUIET_STALE_MESSAGES}"),
        level @ ("warn" | "error" | "off") => format!("{level},{QUIET_STALE_MESSAGES}"),
        // debug, trace, or a directive list: exactly what was asked for.
        other => other.to_string(),
    }
}

/// Sets up the process's logging; `RUST_LOG`, when set, wins over `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(rust_log) if !rust_log.trim().is_empty() => EnvFilter::new(rust_log),
        _ => EnvFilter::new(directives(level)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--log-format` and `--log-level` go before or after the subcommand.
    #[test]
    fn log_flags_are_global() {
        use clap::Parser;

        use crate::config::{Cli, Command};
        let serve = ["serve", "--node-id", "1", "--data-dir", "/tmp/x"];
        let before = ["taskd", "--log-format", "json", "--log-level", "debug"];
        let cli = Cli::try_parse_from(before.iter().chain(&serve)).unwrap();
        assert_eq!(
            (cli.log_format, cli.log_level.as_str()),
            (LogFormat::Json, "debug")
        );
        let after = ["--log-format", "json", "--metrics-listen", "127.0.0.1:9100"];
        let cli = Cli::try_parse_from(["taskd"].iter().chain(&serve).chain(&after)).unwrap();
        assert_eq!(
            (cli.log_format, cli.log_level.as_str()),
            (LogFormat::Json, "info")
        );
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let cli = Cli::try_parse_from(["taskd"].iter().chain(&serve)).unwrap();
        assert_eq!(cli.log_format, LogFormat::Text);
        assert!(
            Cli::try_parse_from(["taskd", "--log-format", "xml"].iter().chain(&serve)).is_err()
        );
    }

    #[test]
    fn info_keeps_openraft_and_sqlx_quiet() {
        let info = directives("info");
        assert!(info.starts_with("info,openraft=warn,sqlx=warn,"));
        assert!(info.ends_with(QUIET_STALE_MESSAGES));
        assert_eq!(directives("debug"), "debug");
        assert_eq!(directives("taskd=debug,info"), "taskd=debug,info");
        for level in ["info", "warn", "error", "debug", "taskd=trace,warn"] {
            let _ = EnvFilter::try_new(directives(level)).expect(level);
        }
    }
}
