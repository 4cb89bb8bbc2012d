//! The snapshot of releases before format 1: one msgpack map (named
//! fields) of a [`StateDump`] `{meta, tasks, request_ids}`, stored and sent
//! as is. A node of this release still meets it in two places during a
//! rolling upgrade: its own stored snapshot from before the upgrade, and an
//! `InstallSnapshot` from a leader not yet upgraded. Both are converted to
//! the current format before anything else reads them.
//!
//! The conversion streams too: a blocking task decodes the msgpack map
//! element by element (serde visitors over a buffered reader) and hands
//! each record through a bounded channel to the writer of the new file,
//! so even a legacy snapshot is never whole in memory here.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserializer as _;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use super::{SnapshotFileError, SnapshotSummary, SnapshotWriter};
use crate::domain::Task;
use crate::store::{RequestIdRow, SmMeta, StateDump};

/// Records in flight between the decoder and the writer.
const CHANNEL_RECORDS: usize = 256;

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

/// One value of a legacy map, as the decoder finds it.
enum Item {
    Meta(SmMeta),
    Task(Task),
    RequestId(RequestIdRow),
}

/// Sends every element of a sequence of `T` as an [`Item`].
struct SeqSink<'a, T> {
    items: &'a mpsc::Sender<Item>,
    wrap: fn(T) -> Item,
    _of: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for SeqSink<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for SeqSink<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<T>()? {
            send(self.items, (self.wrap)(value))?;
        }
        Ok(())
    }
}

fn send<E: de::Error>(items: &mpsc::Sender<Item>, item: Item) -> Result<(), E> {
    items
        .blocking_send(item)
        .map_err(|_| E::custom("the snapshot writer stopped"))
}

/// Walks the `StateDump` map `{meta, tasks, request_ids}`.
struct DumpVisitor<'a> {
    items: &'a mpsc::Sender<Item>,
}

impl<'de> Visitor<'de> for DumpVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a legacy snapshot map {meta, tasks, request_ids}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let items = self.items;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "meta" => send(items, Item::Meta(map.next_value()?))?,
                "tasks" => map.next_value_seed(SeqSink {
                    items,
                    wrap: Item::Task,
                    _of: PhantomData,
                })?,
                "request_ids" => map.next_value_seed(SeqSink {
                    items,
                    wrap: Item::RequestId,
                    _of: PhantomData,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads a legacy blob from `input` (a blocking reader, read on a blocking
/// thread) and writes it to `out` in the current format, a record at a time.
pub async fn convert<R, W>(input: R, out: W) -> Result<(W, SnapshotSummary), SnapshotFileError>
where
    R: std::io::Read + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (items, mut received) = mpsc::channel(CHANNEL_RECORDS);
    let decoder = tokio::task::spawn_blocking(move || {
        let mut input =
            rmp_serde::Deserializer::new(std::io::BufReader::with_capacity(1 << 16, input));
        input.deserialize_map(DumpVisitor { items: &items })
    });
    // `meta` comes first in every blob serde wrote; the header needs it.
    let first = received.recv().await;
    let (meta, pending) = match first {
        Some(Item::Meta(meta)) => (meta, None),
        other => (SmMeta::default(), other),
    };
    let mut writer = SnapshotWriter::new(out, &meta).await?;
    let mut pending = pending;
    loop {
        let next = match pending.take() {
            Some(item) => Some(item),
            None => received.recv().await,
        };
        match next {
            Some(Item::Task(task)) => writer.task(&task).await?,
            Some(Item::RequestId(row)) => writer.request_id(&row).await?,
            Some(Item::Meta(_)) => {}
            None => break,
        }
    }
    decoder
        .await
        .map_err(|e| SnapshotFileError::Io(std::io::Error::other(e)))?
        .map_err(|e| SnapshotFileError::Corrupt(format!("legacy snapshot: {e}")))?;
    writer.finish().await
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
