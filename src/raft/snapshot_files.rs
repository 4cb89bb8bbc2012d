//! The node's snapshot directory (`<data-dir>/snapshots`): scratch files
//! for snapshots being built, received or converted, and a copy of the
//! current snapshot, `<snapshot id>.snap`.
//!
//! The copy is what makes a send start at once: openraft's replication
//! loop awaits `get_current_snapshot` before it sends anything else to that
//! follower, heartbeats included, and rebuilding the file from the
//! database's chunks each time (seconds for a big snapshot) let the
//! follower's election timer run out; its election restarted the leader's
//! replication, and so on. The database stays the durable copy: a missing
//! file is rebuilt from it, and a file is only ever renamed into place
//! after it was synced, so a crash leaves no half-written `.snap`.

use std::path::{Path, PathBuf};

use tempfile::TempPath;
use tokio::fs::File;

use crate::store::{SnapshotFileError, StoreError};

fn io_err(e: std::io::Error) -> StoreError {
    SnapshotFileError::Io(e).into()
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    io_err(std::io::Error::other(e))
}

const SUFFIX: &str = ".snap";

/// The snapshot directory of one node.
#[derive(Debug, Clone)]
pub struct SnapshotFiles {
    dir: PathBuf,
}

impl SnapshotFiles {
    /// Creates `dir` if missing and removes scratch files a crash left.
    pub async fn open(dir: PathBuf) -> Result<Self, StoreError> {
        tokio::fs::create_dir_all(&dir).await.map_err(io_err)?;
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(io_err)?;
        while let Some(entry) = entries.next_entry().await.map_err(io_err)? {
            let name = entry.file_name();
            if !name.to_string_lossy().ends_with(SUFFIX) {
                tokio::fs::remove_file(entry.path()).await.map_err(io_err)?;
            }
        }
        Ok(Self { dir })
    }

    /// A new anonymous file: gone when its last handle closes, or with the process.
    pub async fn anonymous(&self) -> Result<File, StoreError> {
        let dir = self.dir.clone();
        let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(dir))
            .await
            .map_err(join_err)?
            .map_err(io_err)?;
        Ok(File::from_std(file))
    }

    /// A new named scratch file, removed when its `TempPath` is dropped
    /// unless [`SnapshotFiles::keep`] makes it the current copy.
    pub async fn scratch(&self) -> Result<(File, TempPath), StoreError> {
        let dir = self.dir.clone();
        let named = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix(".scratch-")
                .tempfile_in(dir)
        })
        .await
        .map_err(join_err)?
        .map_err(io_err)?;
        let (file, path) = named.into_parts();
        Ok((File::from_std(file), path))
    }

    /// Where the copy of snapshot `id` lives; `None` for an id that is not
    /// a plain file name (ids come from peers too).
    fn path(&self, id: &str) -> Option<PathBuf> {
        let plain = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        plain.then(|| self.dir.join(format!("{id}{SUFFIX}")))
    }

    /// The copy of snapshot `id`, if there is one.
    pub async fn current(&self, id: &str) -> Option<File> {
        File::open(self.path(id)?).await.ok()
    }

    /// Makes `scratch` (whose `file` is written out) the copy of snapshot
    /// `id`, and removes every older copy.
    pub async fn keep(&self, file: &File, scratch: TempPath, id: &str) -> Result<(), StoreError> {
        let Some(path) = self.path(id) else {
            return Ok(());
        };
        file.sync_all().await.map_err(io_err)?;
        let target = path.clone();
        tokio::task::spawn_blocking(move || scratch.persist(target))
            .await
            .map_err(join_err)?
            .map_err(|e| io_err(e.error))?;
        self.remove_others(&path).await
    }

    async fn remove_others(&self, keep: &Path) -> Result<(), StoreError> {
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(io_err)?;
        while let Some(entry) = entries.next_entry().await.map_err(io_err)? {
            let path = entry.path();
            if path != keep && path.to_string_lossy().ends_with(SUFFIX) {
                tokio::fs::remove_file(&path).await.map_err(io_err)?;
            }
        }
        Ok(())
    }
}
