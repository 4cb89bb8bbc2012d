//! `taskd recover --force-new-cluster`: see [`crate::raft::recover`].

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::store::{Store, StoreOptions};

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Required: say that you mean it. Run it on ONE surviving node, with
    /// that node stopped; the others must never come back under their ids.
    #[arg(long)]
    pub force_new_cluster: bool,

    /// The stopped node's data directory.
    #[arg(long, env = "TASKD_DATA_DIR")]
    pub data_dir: PathBuf,

    /// The stopped node's database; default `sqlite://<data-dir>/taskd.db`.
    #[arg(long, env = "TASKD_DATABASE_URL")]
    pub database_url: Option<String>,
}

pub async fn run(args: RecoverArgs) -> anyhow::Result<()> {
    if !args.force_new_cluster {
        bail!("recover rewrites this node into a new one-node cluster; give --force-new-cluster to do it");
    }
    let url = args
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}", args.data_dir.join("taskd.db").display()));
    if let Some(path) = url.strip_prefix("sqlite://") {
        // Opening would create an empty database: a typo, not a node.
        if !std::path::Path::new(path).exists() {
            bail!("no database at {url}: is --data-dir the node's data directory?");
        }
    }
    let store = Store::connect_with(&url, StoreOptions::default())
        .await
        .with_context(|| format!("opening {url}"))?;
    let recovered = crate::raft::recover::force_new_cluster(&store, &args.data_dir)
        .await
        .map_err(|e| anyhow::anyhow!("recovering {url}: {e}"))?;
    store.close().await;
    println!(
        "recovered: applied {} more log entries; the state is as of log index {}. \
         Start this node with --initial-cluster naming only itself to found the new cluster, \
         then add others with --join (new ids, empty data).",
        recovered.applied_entries, recovered.last_index
    );
    Ok(())
}
