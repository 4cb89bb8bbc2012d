//! The Raft side of the store: `raft_state` (vote, committed, purged) and the
//! log itself (the snapshot is in `snapshot_data`). Every write is one transaction, and
//! durable when it returns (SQLite `synchronous = FULL`; InnoDB's default
//! `innodb_flush_log_at_trx_commit = 1`).

use std::borrow::Cow;

use super::pool::{chunks, multi_row_sql, to_i64, to_u64, Arg, Stmt};
use super::{LogRow, Store, StoreError};

#[derive(sqlx::FromRow)]
struct LogDbRow {
    log_index: i64,
    term: i64,
    payload: Vec<u8>,
}

impl TryFrom<LogDbRow> for LogRow {
    type Error = StoreError;

    fn try_from(row: LogDbRow) -> Result<Self, StoreError> {
        Ok(LogRow {
            index: to_u64(row.log_index, "log index")?,
            term: to_u64(row.term, "log term")?,
            payload: row.payload,
        })
    }
}

/// A `u64` log bound as a `BIGINT` bound: past `i64::MAX` means "no bound".
fn index_bound(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

fn append_stmts(entries: &[LogRow]) -> Result<Vec<Stmt<'_>>, StoreError> {
    let mut stmts = Vec::new();
    for chunk in chunks(entries, |e| e.payload.len()) {
        let mut args = Vec::with_capacity(chunk.len() * 3);
        for entry in chunk {
            args.push(Arg::Int(to_i64(entry.index, "log index")?));
            args.push(Arg::Int(to_i64(entry.term, "log term")?));
            args.push(Arg::bytes(&entry.payload));
        }
        let sql = multi_row_sql(
            "REPLACE INTO raft_log (log_index, term, payload)",
            3,
            chunk.len(),
        );
        stmts.push(Stmt::new(sql, args));
    }
    Ok(stmts)
}

impl Store {
    /// A small durable blob ("vote", "committed", "purged"), if ever written.
    pub async fn get_raft_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let value: Option<(Vec<u8>,)> = on_pool!(self, read, |pool| {
            sqlx::query_as("SELECT value FROM raft_state WHERE name = ?")
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        Ok(value.map(|(v,)| v))
    }

    /// Durable when it returns.
    pub async fn put_raft_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        on_pool!(self, write, |pool| {
            sqlx::query("REPLACE INTO raft_state (name, value) VALUES (?, ?)")
                .bind(key)
                .bind(value)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Appends (or replaces, at the same index) `entries` in one transaction;
    /// durable and readable when it returns.
    pub async fn append_log(&self, entries: &[LogRow]) -> Result<(), StoreError> {
        self.append_log_with_state(entries, None).await
    }

    /// [`Store::append_log`], plus one raft_state blob (`(key, value)`)
    /// written in the same transaction: one commit, one sync.
    pub async fn append_log_with_state(
        &self,
        entries: &[LogRow],
        state: Option<(&str, &[u8])>,
    ) -> Result<(), StoreError> {
        let mut stmts = append_stmts(entries)?;
        if let Some((key, value)) = state {
            stmts.push(Stmt::new(
                "REPLACE INTO raft_state (name, value) VALUES (?, ?)",
                vec![Arg::text(key), Arg::bytes(value)],
            ));
        }
        if stmts.is_empty() {
            return Ok(());
        }
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            exec_stmts!(tx, stmts);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The entries with index in `[start, end)`, ascending.
    pub async fn read_log(&self, start: u64, end: u64) -> Result<Vec<LogRow>, StoreError> {
        if start >= end || start > i64::MAX as u64 {
            return Ok(Vec::new());
        }
        // `end` past i64::MAX means "to the end"; `< i64::MAX` would miss that index.
        let (sql, args) = match i64::try_from(end) {
            Ok(end) => (
                "SELECT log_index, term, payload FROM raft_log \
                 WHERE log_index >= ? AND log_index < ? ORDER BY log_index",
                vec![Arg::Int(index_bound(start)), Arg::Int(end)],
            ),
            Err(_) => (
                "SELECT log_index, term, payload FROM raft_log \
                 WHERE log_index >= ? ORDER BY log_index",
                vec![Arg::Int(index_bound(start))],
            ),
        };
        let rows: Vec<LogDbRow> = on_pool!(self, read, |pool| {
            bind_args!(sqlx::query_as(sql), args)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(LogRow::try_from).collect()
    }

    /// The entry with the highest index, if the log is not empty.
    pub async fn last_log(&self) -> Result<Option<LogRow>, StoreError> {
        let row: Option<LogDbRow> = on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT log_index, term, payload FROM raft_log ORDER BY log_index DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
        });
        row.map(LogRow::try_from).transpose()
    }

    /// Deletes the entries with index >= `from` (conflicting suffix).
    pub async fn truncate_log(&self, from: u64) -> Result<(), StoreError> {
        if from > i64::MAX as u64 {
            return Ok(());
        }
        on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM raft_log WHERE log_index >= ?")
                .bind(index_bound(from))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes the entries with index <= `upto` and records `purged` under
    /// raft_state "purged", in one transaction.
    pub async fn purge_log(&self, upto: u64, purged: &[u8]) -> Result<(), StoreError> {
        let stmts = Store::purge_stmts(upto, purged);
        on_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            exec_stmts!(tx, stmts);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The statements of [`Store::purge_log`].
    pub(crate) fn purge_stmts(upto: u64, purged: &[u8]) -> [Stmt<'_>; 2] {
        [
            Stmt::new(
                "DELETE FROM raft_log WHERE log_index <= ?",
                vec![Arg::Int(index_bound(upto))],
            ),
            Stmt::new(
                "REPLACE INTO raft_state (name, value) VALUES (?, ?)",
                vec![Arg::Text(Cow::Borrowed("purged")), Arg::bytes(purged)],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::each_backend;
    use super::*;

    fn entry(index: u64, term: u64) -> LogRow {
        LogRow {
            index,
            term,
            payload: format!("entry {index}@{term}").into_bytes(),
        }
    }

    /// Append, read ranges, overwrite, truncate a suffix, purge a prefix.
    #[tokio::test]
    async fn log_append_read_truncate_purge() {
        each_backend(async |store: Store| {
            assert_eq!(store.last_log().await.unwrap(), None);
            let first: Vec<LogRow> = (1..=1200).map(|i| entry(i, 1)).collect();
            store.append_log(&first).await.unwrap();
            assert_eq!(store.read_log(1, 1201).await.unwrap(), first);
            assert_eq!(store.read_log(10, 13).await.unwrap(), first[9..12].to_vec());
            assert_eq!(store.read_log(5, 5).await.unwrap(), vec![]);
            assert_eq!(store.read_log(1190, u64::MAX).await.unwrap(), first[1189..]);
            assert_eq!(store.last_log().await.unwrap(), Some(entry(1200, 1)));

            // A conflicting suffix: truncate, then replace an index in place.
            store.truncate_log(1101).await.unwrap();
            assert_eq!(store.last_log().await.unwrap(), Some(entry(1100, 1)));
            store
                .append_log(&[entry(1100, 2), entry(1101, 2)])
                .await
                .unwrap();
            assert_eq!(
                store.read_log(1099, 1200).await.unwrap(),
                vec![entry(1099, 1), entry(1100, 2), entry(1101, 2)]
            );

            store.purge_log(1000, b"purged-1000").await.unwrap();
            assert_eq!(store.read_log(0, 1001).await.unwrap(), vec![]);
            assert_eq!(store.read_log(0, 1002).await.unwrap(), vec![entry(1001, 1)]);
            assert_eq!(
                store.get_raft_state("purged").await.unwrap(),
                Some(b"purged-1000".to_vec())
            );
            store.append_log(&[]).await.unwrap();
        })
        .await;
    }

    /// Large payloads are split across statements without losing entries.
    #[tokio::test]
    async fn log_append_large_payloads() {
        each_backend(async |store: Store| {
            let entries: Vec<LogRow> = (1..=5)
                .map(|i| LogRow {
                    index: i,
                    term: 3,
                    payload: vec![i as u8; 3 << 20],
                })
                .collect();
            store.append_log(&entries).await.unwrap();
            assert_eq!(store.read_log(1, 6).await.unwrap(), entries);
        })
        .await;
    }

    /// Entries and a raft_state blob stored in one transaction; either alone too.
    #[tokio::test]
    async fn log_append_with_state() {
        each_backend(async |store: Store| {
            store
                .append_log_with_state(&[entry(1, 1), entry(2, 1)], Some(("committed", b"c2")))
                .await
                .unwrap();
            store
                .append_log_with_state(&[], Some(("committed", b"c3")))
                .await
                .unwrap();
            store
                .append_log_with_state(&[entry(3, 1)], None)
                .await
                .unwrap();
            store.append_log_with_state(&[], None).await.unwrap();
            assert_eq!(
                store.read_log(1, 4).await.unwrap(),
                vec![entry(1, 1), entry(2, 1), entry(3, 1)]
            );
            assert_eq!(
                store.get_raft_state("committed").await.unwrap(),
                Some(b"c3".to_vec())
            );
        })
        .await;
    }

    /// raft_state keys are independent and overwritten in place.
    #[tokio::test]
    async fn raft_state_roundtrip() {
        each_backend(async |store: Store| {
            assert_eq!(store.get_raft_state("vote").await.unwrap(), None);
            store.put_raft_state("vote", b"v1").await.unwrap();
            store.put_raft_state("committed", b"c1").await.unwrap();
            store.put_raft_state("vote", b"v2").await.unwrap();
            assert_eq!(
                store.get_raft_state("vote").await.unwrap(),
                Some(b"v2".to_vec())
            );
            assert_eq!(
                store.get_raft_state("committed").await.unwrap(),
                Some(b"c1".to_vec())
            );
            store.put_raft_state("vote", b"").await.unwrap();
            assert_eq!(store.get_raft_state("vote").await.unwrap(), Some(vec![]));
        })
        .await;
    }

    /// One snapshot row, replaced by the next.
    #[tokio::test]
    async fn snapshot_roundtrip() {
        each_backend(async |store: Store| {
            assert_eq!(store.get_snapshot().await.unwrap(), None);
            store
                .put_snapshot(b"m1", &b"d1"[..], |_| true)
                .await
                .unwrap();
            store
                .put_snapshot(b"m2", &b"d2"[..], |_| true)
                .await
                .unwrap();
            assert_eq!(
                store.get_snapshot().await.unwrap(),
                Some((b"m2".to_vec(), b"d2".to_vec()))
            );
        })
        .await;
    }

    /// A snapshot larger than MySQL's max_allowed_packet (16 MiB here) is
    /// stored and read back whole; a smaller one then replaces it entirely.
    #[tokio::test]
    async fn snapshot_larger_than_a_packet() {
        each_backend(async |store: Store| {
            let big: Vec<u8> = (0..20 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
            store
                .put_snapshot(b"big", &big[..], |_| true)
                .await
                .unwrap();
            let (meta, data) = store.get_snapshot().await.unwrap().expect("snapshot");
            assert_eq!(meta, b"big");
            assert!(
                data == big,
                "20 MiB snapshot data differs after the round trip"
            );
            store
                .put_snapshot(b"small", &b"tiny"[..], |_| true)
                .await
                .unwrap();
            assert_eq!(
                store.get_snapshot().await.unwrap(),
                Some((b"small".to_vec(), b"tiny".to_vec()))
            );
        })
        .await;
    }
}
