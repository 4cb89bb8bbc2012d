//! `taskd`: parse the command line, set up logging, run.

use anyhow::Context;
use clap::Parser;
use taskd::config::{Cli, Command};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Crash-point tests only (feature `failpoints`); a no-op otherwise.
    #[allow(clippy::let_unit_value)]
    let _failpoints = taskd::failpoint::setup();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Dev(_)) {
        // As Go servers such as etcd do: the soft limit (often 1,024) is far
        // below what a busy node needs, and the hard limit is ours to take.
        match taskd::server::incoming::raise_fd_limit() {
            Ok(limit) => tracing::info!(limit, "file descriptor limit (RLIMIT_NOFILE)"),
            Err(e) => tracing::warn!(error = %e, "cannot read or raise RLIMIT_NOFILE"),
        }
    }
    match cli.command {
        Command::Serve(args) => {
            let config = args.validate()?;
            let listener = TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            taskd::server::run(config, listener, shutdown_signal()).await?;
        }
        Command::Dev(args) => taskd::dev::run(args, shutdown_signal()).await?,
        Command::Bench(args) => taskd::bench::run(args, shutdown_signal()).await?,
        Command::Cluster(args) => one_line(taskd::cli::cluster::run(args).await),
        Command::Recover(args) => one_line(taskd::cli::recover::run(args).await),
        Command::Backup(args) => one_line(taskd::cli::backup::backup(args).await),
        Command::Restore(args) => one_line(taskd::cli::backup::restore(args).await),
    }
    Ok(())
}

/// An operator command's failure: one line on stderr, exit code 1.
fn one_line(result: anyhow::Result<()>) {
    if let Err(e) = result {
        eprintln!("taskd: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
