//! The snapshot of releases before format 1: one msgpack map (named
//! fields) of a [`StateDump`] `{meta, tasks, request_ids}`, stored and sent
//! as is. A node of this release still meets it in two places during a
//! rolling upgrade: its own stored snapshot from before the upgrade, and an
//! `InstallSnapshot` from a leader not yet upgraded. Both are converted to
//! the current format before anything else reads them.
//!
//! The conversion decodes the blob whole: those releases built, stored and
//! sent it whole in memory too, so a node meets no larger one than its
//! predecessor already held, and it happens once per node and upgrade.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::{SnapshotFileError, SnapshotSummary, SnapshotWriter};
use crate::store::StateDump;

/// Whether a snapshot starting with `first` is a legacy blob: a msgpack map
/// (fixmap 0x80–0x8f, map16 0xde, map32 0xdf). No magic starts so.
pub fn is_legacy(first: u8) -> bool {
    matches!(first, 0x80..=0x8f | 0xde | 0xdf)
}

/// Decodes a legacy blob.
pub fn decode(blob: &[u8]) -> Result<StateDump, SnapshotFileError> {
    rmp_serde::from_slice(blob)
        .map_err(|e| SnapshotFileError::Corrupt(format!("legacy snapshot: {e}")))
}

/// Reads a legacy blob from `input` and writes it to `out` in the current
/// format.
pub async fn convert<R, W>(mut input: R, out: W) -> Result<(W, SnapshotSummary), SnapshotFileError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut blob = Vec::new();
    input.read_to_end(&mut blob).await?;
    let dump = decode(&blob)?;
    drop(blob);
    write_dump(&dump, out).await
}

/// Writes `dump` to `out` in the current format.
pub async fn write_dump<W: AsyncWrite + Unpin>(
    dump: &StateDump,
    out: W,
) -> Result<(W, SnapshotSummary), SnapshotFileError> {
    let mut writer = SnapshotWriter::new(out, &dump.meta).await?;
    for task in &dump.tasks {
        writer.task(task).await?;
    }
    for row in &dump.request_ids {
        writer.request_id(row).await?;
    }
    writer.finish().await
}
