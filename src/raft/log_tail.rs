//! The newest part of the Raft log, in memory.
//!
//! Every entry openraft appends goes here at once (openraft reads an entry
//! as soon as `append` returns, before it is durable), and stays after the
//! log writer has stored it, until the tail outgrows [`TAIL_BYTES`]. The
//! leader reads each entry twice right after appending it (to replicate it,
//! and to apply it once committed) and a follower once (to apply it): served
//! from here, none of those reads touches the database.
//!
//! The tail is always one contiguous run of indexes that ends at the log's
//! last entry: appends extend it at the end, truncation cuts its end,
//! eviction and purging cut its start. So a range that starts inside the
//! tail is wholly in it.

use std::collections::BTreeMap;

use super::{Entry, LogId};

/// Stored entries are kept while the tail holds at most this many payload bytes.
pub const TAIL_BYTES: usize = 16 << 20;

#[derive(Default)]
pub struct LogTail {
    /// Entry and its encoded size, by index.
    entries: BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
    /// Entries up to this index are stored: only they may be evicted.
    stored_upto: Option<u64>,
}

impl LogTail {
    /// Adds an appended (not yet stored) entry of `size` encoded bytes.
    pub fn insert(&mut self, entry: Entry, size: usize) {
        let index = entry.log_id.index;
        if let Some((_, old)) = self.entries.insert(index, (entry, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
    }

    /// Notes that the entries up to `index` are durable, and evicts the
    /// oldest stored ones while the tail is over its bound.
    pub fn stored(&mut self, index: u64) {
        self.stored_upto = Some(self.stored_upto.map_or(index, |s| s.max(index)));
        while self.bytes > TAIL_BYTES {
            let Some(entry) = self.entries.first_entry() else {
                break;
            };
            if Some(*entry.key()) > self.stored_upto {
                break;
            }
            let (_, size) = entry.remove();
            self.bytes -= size;
        }
    }

    /// The entries in `[start, end)` if the tail holds all of them that exist.
    pub fn read(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = *self.entries.keys().next()?;
        (first <= start).then(|| self.range(start, end))
    }

    /// Whatever part of `[start, end)` the tail holds.
    pub fn range(&self, start: u64, end: u64) -> Vec<Entry> {
        self.entries
            .range(start..end)
            .map(|(_, (e, _))| e.clone())
            .collect()
    }

    /// The last entry's log id, if the tail holds any.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.entries.values().next_back().map(|(e, _)| e.log_id)
    }

    /// Drops the entries with index >= `from` (a conflicting suffix).
    pub fn truncate(&mut self, from: u64) {
        for (_, (_, size)) in self.entries.split_off(&from) {
            self.bytes -= size;
        }
        if self.stored_upto >= Some(from) {
            self.stored_upto = from.checked_sub(1);
        }
    }

    /// Drops the entries with index <= `upto` (compacted into a snapshot).
    pub fn purge(&mut self, upto: u64) {
        let kept = self.entries.split_off(&(upto.saturating_add(1)));
        for (_, (_, size)) in std::mem::replace(&mut self.entries, kept) {
            self.bytes -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|es| es.iter().map(|e| e.log_id.index).collect())
    }

    /// Reads starting inside the tail are served whole; earlier starts are
    /// not; only stored entries are evicted, oldest first.
    #[test]
    fn tail_serves_ranges_inside_it_and_evicts_only_stored_entries() {
        let mut tail = LogTail::default();
        let big = TAIL_BYTES / 4;
        for i in 1..=6 {
            tail.insert(entry(i), big);
        }
        assert_eq!(indexes(tail.read(2, 5)), Some(vec![2, 3, 4]));
        // Over the bound, but nothing is stored yet: nothing is evicted.
        tail.stored(0);
        assert_eq!(
            indexes(tail.read(1, u64::MAX)),
            Some(vec![1, 2, 3, 4, 5, 6])
        );
        // Entries 1..=3 stored: evict down to the bound (4 entries), oldest first.
        tail.stored(3);
        assert_eq!(indexes(tail.read(1, 10)), None);
        assert_eq!(indexes(tail.read(3, 10)), Some(vec![3, 4, 5, 6]));
        assert_eq!(tail.range(1, 4).len(), 1);

        tail.truncate(5);
        assert_eq!(tail.last_log_id().map(|l| l.index), Some(4));
        tail.purge(3);
        assert_eq!(indexes(tail.read(4, 10)), Some(vec![4]));
        tail.purge(10);
        assert_eq!(tail.read(0, 10).map(|v| v.len()), None);
        assert_eq!(tail.bytes, 0);
    }
}
