//! The snapshot file format: what a snapshot is on disk, on the wire
//! (`InstallSnapshot` chunks are byte ranges of it), in the `snapshot_data`
//! rows, and in a `taskd backup` file. It is written and read as a stream,
//! one record at a time, so no side ever holds a whole snapshot in memory.
//!
//! # Format version 1
//!
//! All integers are big-endian. "msgpack" is MessagePack with field names
//! (maps), so a later release may add fields that this one ignores.
//!
//! ```text
//! header   magic          8 bytes   "TASKDSNP"
//!          version        u32       1 (FORMAT_VERSION)
//!          header length  u32       n (at most MAX_FRAME_BYTES)
//!          header         n bytes   msgpack {meta: {last_applied, membership}}
//! frames   kind           u8        1 = task, 2 = request id, 0xFF = trailer
//!          length         u32       n (at most MAX_FRAME_BYTES)
//!          payload        n bytes   msgpack of the record (see below)
//!          … any number of task and request-id frames, then one trailer frame
//! checksum crc32c         u32       CRC-32C (Castagnoli) of every byte before it
//! end of file
//! ```
//!
//! - `meta.last_applied`: msgpack of openraft's `LogId` (or nil), the last
//!   entry the snapshot reflects; `meta.membership`: msgpack of openraft's
//!   `StoredMembership` (or nil). Opaque bytes to the store.
//! - a task frame: `{id, title, description, status, priority, deadline,
//!   assignee, labels, create_time, update_time, version}` ([`Task`]).
//! - a request-id frame: `{request_id, task_id, create_time, fingerprint,
//!   result}` ([`RequestIdRow`]).
//! - the trailer: `{tasks, request_ids}`, the number of frames of each kind.
//!
//! A reader refuses, with an error that says which: another magic, a
//! version it does not know, an unknown frame kind, a length past the
//! bound (before allocating anything for it), a record that does not
//! decode, counts that differ from the trailer's, a checksum mismatch, a
//! file that ends early or goes on after the checksum. Importers apply the
//! records in one transaction that commits only after the checksum held,
//! so a damaged file is never half-installed.
//!
//! Releases before format 1 sent and stored a snapshot as one msgpack
//! `StateDump` map; [`legacy`] recognises it by its first byte (a msgpack
//! map marker, which no magic starts with) and converts it.

pub mod legacy;

use std::io;
use std::path::Path;

use crc::{Crc, Digest, CRC_32_ISCSI};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{RequestIdRow, SmMeta};
use crate::domain::Task;

/// The first bytes of every snapshot file of format 1 and later.
pub const MAGIC: [u8; 8] = *b"TASKDSNP";
/// The format this release writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;
/// No header or frame may be longer: a length from a file is checked
/// against this before anything is allocated. Tasks are far smaller (a
/// whole Raft entry is at most 1 MiB).
pub const MAX_FRAME_BYTES: u32 = 16 << 20;

const KIND_TASK: u8 = 1;
const KIND_REQUEST_ID: u8 = 2;
const KIND_TRAILER: u8 = 0xFF;

static CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Why a snapshot file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot file i/o: {0}")]
    Io(#[from] io::Error),
    #[error("not a taskd snapshot (the file starts with {0:02x?})")]
    NotASnapshot(Vec<u8>),
    #[error(
        "snapshot format version {0} is newer than this taskd reads (up to {FORMAT_VERSION}): \
         upgrade this node first"
    )]
    UnsupportedVersion(u32),
    #[error("the snapshot file is truncated (it ends inside {0})")]
    Truncated(&'static str),
    #[error("corrupt snapshot file: {0}")]
    Corrupt(String),
    #[error("snapshot checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is damaged")]
    Checksum { stored: u32, computed: u32 },
}

/// The header: what the snapshot covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    meta: SmMeta,
}

/// The trailer: how many records of each kind came before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Trailer {
    tasks: u64,
    request_ids: u64,
}

/// What a whole, valid snapshot file holds, besides its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// `last_applied` and membership as the state machine stores them.
    pub meta: SmMeta,
    pub tasks: u64,
    pub request_ids: u64,
    /// The file's length.
    pub bytes: u64,
}

/// One record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Task(Task),
    RequestId(RequestIdRow),
}

fn encode<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>, SnapshotFileError> {
    rmp_serde::to_vec_named(value).map_err(|e| SnapshotFileError::Corrupt(format!("{what}: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, SnapshotFileError> {
    rmp_serde::from_slice(bytes).map_err(|e| SnapshotFileError::Corrupt(format!("{what}: {e}")))
}

/// Writes a snapshot record by record. Buffer `out` (a `BufWriter`): every
/// record is a few small writes.
pub struct SnapshotWriter<W> {
    out: W,
    crc: Digest<'static, u32>,
    trailer: Trailer,
    bytes: u64,
    meta: SmMeta,
}

impl<W: AsyncWrite + Unpin> SnapshotWriter<W> {
    /// Starts a snapshot of the state described by `meta`: writes the header.
    pub async fn new(out: W, meta: &SmMeta) -> Result<Self, SnapshotFileError> {
        let mut writer = SnapshotWriter {
            out,
            crc: CRC32C.digest(),
            trailer: Trailer::default(),
            bytes: 0,
            meta: meta.clone(),
        };
        writer.put(&MAGIC).await?;
        writer.put(&FORMAT_VERSION.to_be_bytes()).await?;
        let header = encode(&Header { meta: meta.clone() }, "header")?;
        writer.put(&frame_len(header.len())?.to_be_bytes()).await?;
        writer.put(&header).await?;
        Ok(writer)
    }

    async fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotFileError> {
        self.crc.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes).await?;
        Ok(())
    }

    async fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), SnapshotFileError> {
        self.put(&[kind]).await?;
        self.put(&frame_len(payload.len())?.to_be_bytes()).await?;
        self.put(payload).await
    }

    pub async fn task(&mut self, task: &Task) -> Result<(), SnapshotFileError> {
        self.frame(KIND_TASK, &encode(task, "task")?).await?;
        self.trailer.tasks += 1;
        Ok(())
    }

    pub async fn request_id(&mut self, row: &RequestIdRow) -> Result<(), SnapshotFileError> {
        self.frame(KIND_REQUEST_ID, &encode(row, "request id")?)
            .await?;
        self.trailer.request_ids += 1;
        Ok(())
    }

    /// Writes the trailer and the checksum, flushes, and hands `out` back.
    pub async fn finish(mut self) -> Result<(W, SnapshotSummary), SnapshotFileError> {
        let trailer = encode(&self.trailer, "trailer")?;
        self.frame(KIND_TRAILER, &trailer).await?;
        let checksum = self.crc.clone().finalize();
        self.out.write_all(&checksum.to_be_bytes()).await?;
        self.out.flush().await?;
        let summary = SnapshotSummary {
            meta: self.meta,
            tasks: self.trailer.tasks,
            request_ids: self.trailer.request_ids,
            bytes: self.bytes + 4,
        };
        Ok((self.out, summary))
    }
}

fn frame_len(len: usize) -> Result<u32, SnapshotFileError> {
    u32::try_from(len)
        .ok()
        .filter(|n| *n <= MAX_FRAME_BYTES)
        .ok_or_else(|| {
            SnapshotFileError::Corrupt(format!(
                "a record of {len} bytes exceeds the frame bound ({MAX_FRAME_BYTES})"
            ))
        })
}

/// Reads a snapshot record by record, checking everything the format
/// promises; [`SnapshotReader::next`] returns `None` only after the
/// trailer's counts and the checksum held and the file ended. Buffer
/// `input` (a `BufReader`).
pub struct SnapshotReader<R> {
    input: R,
    crc: Digest<'static, u32>,
    meta: SmMeta,
    seen: Trailer,
    bytes: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: AsyncRead + Unpin> SnapshotReader<R> {
    /// Reads and checks the header.
    pub async fn open(input: R) -> Result<Self, SnapshotFileError> {
        let mut reader = SnapshotReader {
            input,
            crc: CRC32C.digest(),
            meta: SmMeta::default(),
            seen: Trailer::default(),
            bytes: 0,
            buf: Vec::new(),
            done: false,
        };
        let mut magic = [0u8; 8];
        let n = read_full(&mut reader.input, &mut magic).await?;
        if n < magic.len() || magic != MAGIC {
            return Err(SnapshotFileError::NotASnapshot(magic[..n].to_vec()));
        }
        reader.crc.update(&magic);
        reader.bytes = 8;
        let version = reader.u32("the header").await?;
        if version != FORMAT_VERSION {
            return Err(SnapshotFileError::UnsupportedVersion(version));
        }
        let len = reader.len("the header").await?;
        reader.fill(len, "the header").await?;
        let header: Header = decode(&reader.buf, "header")?;
        reader.meta = header.meta;
        Ok(reader)
    }

    /// `last_applied` and membership of the state this snapshot holds.
    pub fn meta(&self) -> &SmMeta {
        &self.meta
    }

    async fn fill(&mut self, len: usize, what: &'static str) -> Result<(), SnapshotFileError> {
        self.buf.resize(len, 0);
        if read_full(&mut self.input, &mut self.buf).await? < len {
            return Err(SnapshotFileError::Truncated(what));
        }
        self.crc.update(&self.buf);
        self.bytes += len as u64;
        Ok(())
    }

    async fn u32(&mut self, what: &'static str) -> Result<u32, SnapshotFileError> {
        self.fill(4, what).await?;
        Ok(u32::from_be_bytes(
            self.buf[..4].try_into().expect("4 bytes"),
        ))
    }

    async fn len(&mut self, what: &'static str) -> Result<usize, SnapshotFileError> {
        let len = self.u32(what).await?;
        if len > MAX_FRAME_BYTES {
            return Err(SnapshotFileError::Corrupt(format!(
                "{what} claims {len} bytes, past the frame bound ({MAX_FRAME_BYTES})"
            )));
        }
        Ok(len as usize)
    }

    /// The next record, or `None` at the (verified) end.
    pub async fn next(&mut self) -> Result<Option<Record>, SnapshotFileError> {
        if self.done {
            return Ok(None);
        }
        self.fill(1, "a frame").await?;
        let kind = self.buf[0];
        let len = self.len("a frame").await?;
        self.fill(len, "a frame").await?;
        match kind {
            KIND_TASK => {
                self.seen.tasks += 1;
                Ok(Some(Record::Task(decode(&self.buf, "task")?)))
            }
            KIND_REQUEST_ID => {
                self.seen.request_ids += 1;
                Ok(Some(Record::RequestId(decode(&self.buf, "request id")?)))
            }
            KIND_TRAILER => {
                let trailer: Trailer = decode(&self.buf, "trailer")?;
                self.finish(trailer).await?;
                Ok(None)
            }
            other => Err(SnapshotFileError::Corrupt(format!(
                "unknown frame kind {other:#04x} at byte {}",
                self.bytes - len as u64 - 5
            ))),
        }
    }

    async fn finish(&mut self, trailer: Trailer) -> Result<(), SnapshotFileError> {
        let computed = self.crc.clone().finalize();
        let mut stored = [0u8; 4];
        if read_full(&mut self.input, &mut stored).await? < 4 {
            return Err(SnapshotFileError::Truncated("the checksum"));
        }
        let stored = u32::from_be_bytes(stored);
        if stored != computed {
            return Err(SnapshotFileError::Checksum { stored, computed });
        }
        if trailer != self.seen {
            return Err(SnapshotFileError::Corrupt(format!(
                "the trailer counts {} tasks and {} request ids, the file holds {} and {}",
                trailer.tasks, trailer.request_ids, self.seen.tasks, self.seen.request_ids
            )));
        }
        if self.input.read(&mut [0u8; 1]).await? != 0 {
            return Err(SnapshotFileError::Corrupt(
                "bytes after the checksum".to_string(),
            ));
        }
        self.bytes += 4;
        self.done = true;
        Ok(())
    }

    /// What the file held; complete once `next` returned `None`.
    pub fn summary(&self) -> SnapshotSummary {
        SnapshotSummary {
            meta: self.meta.clone(),
            tasks: self.seen.tasks,
            request_ids: self.seen.request_ids,
            bytes: self.bytes,
        }
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
pub(crate) async fn read_full<R: AsyncRead + Unpin>(
    input: &mut R,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads a whole snapshot from `input` and checks all of it, keeping one
/// record at a time in memory.
pub async fn verify<R: AsyncRead + Unpin>(input: R) -> Result<SnapshotSummary, SnapshotFileError> {
    let mut reader = SnapshotReader::open(input).await?;
    while reader.next().await?.is_some() {}
    Ok(reader.summary())
}

/// [`verify`] of the file at `path` (a backup, say).
pub async fn verify_path(path: &Path) -> Result<SnapshotSummary, SnapshotFileError> {
    let file = tokio::fs::File::open(path).await?;
    verify(tokio::io::BufReader::with_capacity(1 << 16, file)).await
}

#[cfg(test)]
mod tests;
