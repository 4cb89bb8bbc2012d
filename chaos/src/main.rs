//! `taskd-chaos`: starts a taskd cluster of real processes in network
//! namespaces, runs workloads against it while nemeses inject faults, heals,
//! checks the history, and reports. See `taskd-chaos --help`.

use std::process::ExitCode;

use clap::Parser;
use taskd_chaos::run::{self, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("taskd-chaos: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("taskd-chaos: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // On SIGINT/SIGTERM the run is dropped: its guards kill every process
    // and remove every namespace and file it made.
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("installing a SIGTERM handler: {e}"))?;
        tokio::select! {
            r = run::run(args) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted (SIGINT): cleaned up".to_string()),
            _ = term.recv() => Err("terminated (SIGTERM): cleaned up".to_string()),
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(summary) => {
            println!(
                "{}",
                serde_json::to_string(&summary).expect("a summary serializes")
            );
            if summary.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("taskd-chaos: {e}");
            ExitCode::from(2)
        }
    }
}
