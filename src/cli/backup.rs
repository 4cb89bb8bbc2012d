//! `taskd backup` and `taskd restore`.
//!
//! A backup is a snapshot file (format: `store::snapshot_file`, versioned,
//! checksummed) of the leader's state, read in one transaction after the
//! leader confirmed its leadership and applied everything committed before
//! the call: a consistent point-in-time copy that holds every write
//! acknowledged before `taskd backup` started. It is written to FILE.partial,
//! verified whole, synced, and renamed to FILE, so FILE is never half there.
//!
//! A restore verifies the whole file before it writes anything, refuses a
//! database that already holds a node's data, and imports the tasks and
//! request ids in one transaction with no Raft state: the node started on
//! it with `--initial-cluster` naming only itself founds a new cluster.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use tokio::io::AsyncWriteExt;

use super::{with_timeout, Endpoints};
use crate::proto;
use crate::store::snapshot_file::verify_path;
use crate::store::{Store, StoreOptions};

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,

    /// Where to write the backup (FILE.partial until it is whole).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file (`taskd backup --out`).
    #[arg(long = "in")]
    pub input: PathBuf,

    /// The new node's data directory.
    #[arg(long, env = "TASKD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The new node's database, which must be empty (created if missing);
    /// default `sqlite://<data-dir>/taskd.db`.
    #[arg(long, env = "TASKD_DATABASE_URL")]
    pub database_url: Option<String>,
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// One backup through `addr` into `partial`.
async fn backup_from(addr: &str, endpoints: &Endpoints, partial: &Path) -> anyhow::Result<u64> {
    let mut c = endpoints.client(addr)?;
    let mut stream = c
        .backup(with_timeout(proto::BackupRequest {}, endpoints.timeout()))
        .await
        .map_err(|s| anyhow::anyhow!("{addr}: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let mut file = tokio::fs::File::create(partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut bytes = 0u64;
    while let Some(message) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("{addr}: {:?}: {}", s.code(), s.message()))?
    {
        file.write_all(&message.chunk).await?;
        bytes += message.chunk.len() as u64;
    }
    file.sync_all().await?;
    Ok(bytes)
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let partial = partial_path(&args.out);
    let mut last = anyhow::anyhow!("no --endpoints given");
    for addr in &args.endpoints.endpoints {
        match backup_from(addr, &args.endpoints, &partial).await {
            Ok(bytes) => {
                let summary = verify_path(&partial)
                    .await
                    .map_err(|e| anyhow::anyhow!("the backup from {addr} does not verify: {e}"))?;
                tokio::fs::rename(&partial, &args.out)
                    .await
                    .with_context(|| format!("renaming to {}", args.out.display()))?;
                println!(
                    "backup of {} tasks and {} request ids ({bytes} bytes) written to {}",
                    summary.tasks,
                    summary.request_ids,
                    args.out.display()
                );
                return Ok(());
            }
            Err(e) => last = e,
        }
    }
    let _ = tokio::fs::remove_file(&partial).await;
    Err(last)
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let summary = verify_path(&args.input).await.map_err(|e| {
        anyhow::anyhow!("{} is not a whole taskd backup: {e}", args.input.display())
    })?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let url = args
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("taskd.db").display()));
    let store = Store::connect_with(&url, StoreOptions::default())
        .await
        .with_context(|| format!("opening {url}"))?;
    if !store.is_pristine().await? {
        store.close().await;
        bail!("{url} already holds a node's data: restore into a new, empty database");
    }
    let restored = store.restore_from(&args.input).await;
    store.close().await;
    restored.with_context(|| format!("restoring into {url}"))?;
    println!(
        "restored {} tasks and {} request ids into {url}; start the node with \
         --initial-cluster naming only itself to serve them as a new cluster",
        summary.tasks, summary.request_ids
    );
    Ok(())
}
