//! The stored snapshot: its meta in `snapshot`, its data in `snapshot_data`
//! rows of at most [`SNAPSHOT_CHUNK_BYTES`].
//!
//! The data is written chunk by chunk under a fresh generation, each chunk
//! in a transaction of its own, so that a snapshot of any size never holds
//! the database's write connection (SQLite has one) for longer than one
//! chunk: log appends, and with them the leader's heartbeats and commits,
//! keep flowing. A short final transaction points the `snapshot` row at the
//! new generation, only if the snapshot is newer than the one stored; older
//! generations are deleted afterwards, a chunk at a time (leftovers of a
//! crash go with the next snapshot).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::pool::Arg;
use super::pool::Stmt;
use super::snapshot_file::{read_full, SnapshotFileError};
use super::{Backend, Store, StoreError};
use crate::failpoint;

/// A snapshot's data is stored in rows of at most this many bytes: far
/// below MySQL's default `max_allowed_packet` (16 MiB in MariaDB 10.11).
pub(crate) const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

impl Store {
    /// Stores a snapshot (its data read from `snapshot_data` to the end) in
    /// place of the stored one if `replaces(stored meta)` says it is newer
    /// (or none is stored); true if it did.
    pub async fn put_snapshot<R: AsyncRead + Unpin>(
        &self,
        snapshot_meta: &[u8],
        snapshot_data: R,
        replaces: impl Fn(&[u8]) -> bool,
    ) -> Result<bool, StoreError> {
        let generation = self.stage_snapshot_data(snapshot_data).await?;
        // MySQL: lock the row, so a concurrent import's swap waits for ours.
        let select = match self.backend() {
            Backend::Mysql => "SELECT meta FROM snapshot WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT meta FROM snapshot WHERE id = 1",
        };
        let publish = Store::publish_snapshot_stmt(snapshot_meta, generation);
        let replaced = on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let stored: Option<(Vec<u8>,)> =
                sqlx::query_as(select).fetch_optional(&mut *tx).await?;
            if stored.is_some_and(|(meta,)| !replaces(&meta)) {
                tx.rollback().await?;
                false
            } else {
                exec_stmts!(tx, [publish]);
                tx.commit().await?;
                true
            }
        });
        self.drop_unpublished_snapshot_data().await?;
        Ok(replaced)
    }

    /// The stored snapshot's meta, without its data.
    pub async fn snapshot_meta(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let meta: Option<(Vec<u8>,)> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT meta FROM snapshot WHERE id = 1")
                .fetch_optional(pool)
                .await?
        });
        Ok(meta.map(|(meta,)| meta))
    }

    /// Writes the stored snapshot's data to `out`, a chunk at a time, and
    /// returns its meta; `None` (and nothing written) if there is none.
    /// Meta and chunks are read in one transaction, so a snapshot stored
    /// meanwhile cannot mix in.
    pub async fn read_snapshot_into<W: AsyncWrite + Unpin>(
        &self,
        out: &mut W,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let io = |e| StoreError::from(SnapshotFileError::Io(e));
        on_pool!(self, read, |pool| {
            let mut tx = pool.begin().await?;
            let meta: Option<(Vec<u8>, i64)> =
                sqlx::query_as("SELECT meta, gen FROM snapshot WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((meta, generation)) = meta else {
                return Ok(None);
            };
            let seqs: Vec<(i64,)> =
                sqlx::query_as("SELECT seq FROM snapshot_data WHERE gen = ? ORDER BY seq")
                    .bind(generation)
                    .fetch_all(&mut *tx)
                    .await?;
            for (seq,) in seqs {
                let (chunk,): (Vec<u8>,) =
                    sqlx::query_as("SELECT data FROM snapshot_data WHERE gen = ? AND seq = ?")
                        .bind(generation)
                        .bind(seq)
                        .fetch_one(&mut *tx)
                        .await?;
                out.write_all(&chunk).await.map_err(io)?;
            }
            tx.commit().await?;
            out.flush().await.map_err(io)?;
            Ok(Some(meta))
        })
    }

    /// The stored snapshot as `(meta, data)`, whole in memory (tests).
    #[cfg(test)]
    pub async fn get_snapshot(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut data = Vec::new();
        Ok(self
            .read_snapshot_into(&mut data)
            .await?
            .map(|meta| (meta, data)))
    }

    /// Writes `data` (read to its end, a chunk at a time) under a fresh
    /// generation, one transaction per chunk; nothing reads it until
    /// [`Store::publish_snapshot_stmt`] names it.
    pub(crate) async fn stage_snapshot_data<R: AsyncRead + Unpin>(
        &self,
        mut data: R,
    ) -> Result<i64, StoreError> {
        // Unique among the generations present; never 0 (migrated data).
        let generation = fastrand::i64(1..i64::MAX);
        let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
        for seq in 0i64.. {
            let n = read_full(&mut data, &mut chunk)
                .await
                .map_err(SnapshotFileError::Io)?;
            // An empty snapshot still has its one (empty) chunk.
            if n == 0 && seq > 0 {
                break;
            }
            if seq > 0 {
                failpoint::hit(failpoint::SNAPSHOT_CHUNK_STORED);
            }
            let bytes = &chunk[..n];
            on_pool!(self, write, |pool| {
                sqlx::query("INSERT INTO snapshot_data (gen, seq, data) VALUES (?, ?, ?)")
                    .bind(generation)
                    .bind(seq)
                    .bind(bytes)
                    .execute(pool)
                    .await?;
            });
            if n < SNAPSHOT_CHUNK_BYTES {
                break;
            }
        }
        Ok(generation)
    }

    /// The statement that makes `meta` with the data of `generation` the stored snapshot.
    pub(crate) fn publish_snapshot_stmt(meta: &[u8], generation: i64) -> Stmt<'_> {
        Stmt::new(
            "REPLACE INTO snapshot (id, meta, gen) VALUES (1, ?, ?)",
            vec![Arg::bytes(meta), Arg::Int(generation)],
        )
    }

    /// Deletes the data of every generation but the stored snapshot's, one
    /// chunk per transaction.
    pub(crate) async fn drop_unpublished_snapshot_data(&self) -> Result<(), StoreError> {
        let stale: Vec<(i64, i64)> = on_pool!(self, write, |pool| {
            sqlx::query_as(
                "SELECT gen, seq FROM snapshot_data \
                 WHERE gen NOT IN (SELECT gen FROM snapshot WHERE id = 1)",
            )
            .fetch_all(pool)
            .await?
        });
        for (generation, seq) in stale {
            on_pool!(self, write, |pool| {
                sqlx::query("DELETE FROM snapshot_data WHERE gen = ? AND seq = ?")
                    .bind(generation)
                    .bind(seq)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(())
    }
}
