//! Encoding of openraft values (log entries, vote, RPC messages) as bytes,
//! and the format version that log rows and peer RPC payloads carry.
//!
//! The body is MessagePack with field names: compact, fast, and tolerant of
//! fields added by a later release.
//!
//! # Formats
//!
//! A tagged value starts with the byte `0xC1`, which MessagePack never uses
//! (a "reserved" marker no encoder emits), then one byte, the format version,
//! then the MessagePack body. Untagged bytes (the first byte of a bare
//! MessagePack value) are the [`Format::Legacy`] format of the releases that
//! wrote no tag, so the two can never be mistaken for each other.
//!
//! | format | what it is |
//! | --- | --- |
//! | legacy | no tag. Entries of the core release (`a31fde7`) carry one `Command`; those of the performance release (`41c4cb8` on) a `WriteBatch` |
//! | 1 | tagged; entries carry a `WriteBatch` |
//!
//! Decoding reads every format up to [`Format::NEWEST`]: a legacy entry of
//! one command becomes a one-write batch ([`decode_entry`]). A tag naming a
//! newer format is refused with [`CodecError::UnknownFormat`], never guessed
//! at: in the log store that is a fatal storage error (the Raft core stops and
//! the node exits, `server::raft_stopped`), on an RPC the call fails with
//! FAILED_PRECONDITION naming both versions.
//!
//! # What a node writes, during a rolling upgrade too
//!
//! - **Log rows** (`raft_log.payload`): [`Format::NEWEST`]. A node's log is
//!   read only by itself. Older releases refuse a tagged row (0xC1 is no
//!   MessagePack they accept) rather than misread it, so a node that ran this
//!   release cannot be rolled back to a release without the tag.
//! - **Peer RPC payloads**: the newest format both ends read, negotiated per
//!   peer. Every request and every answer carries the `taskd-format` header
//!   (the newest format its sender reads; releases before it send none and
//!   ignore it). A node answers in the format its caller advertised (legacy
//!   when the header is missing), and sends requests in the format the peer's
//!   last answer advertised (legacy until it has answered; legacy again as
//!   soon as an answer comes without the header, i.e. from a node rolled back
//!   to an older release). So an old node only ever receives legacy payloads.
//! - **The vote, `sm_meta`, snapshot data**: untagged ([`encode`]): they are
//!   openraft's own types or unchanged since the first release. [`decode`]
//!   still understands the tag, so a later release may tag them. Snapshot
//!   data travels inside `InstallSnapshot` chunks to peers of any release:
//!   a new snapshot format may be sent only to a peer that advertised it.
//!
//! A later format that changes what an entry can *say* (a new command, say)
//! needs more: its entries must not be proposed until every member reads
//! them (etcd's "cluster version"): the negotiated per-peer formats are the
//! building block, the leader's proposer the place for the gate.

mod legacy;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Entry;

/// The first byte of a tagged value: a MessagePack marker that no encoder
/// emits, so no untagged value starts with it.
const TAG: u8 = 0xC1;

/// The gRPC metadata header in which peers advertise the newest format
/// they read.
pub const FORMAT_HEADER: &str = "taskd-format";

/// A version of the bytes taskd writes and sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// No tag: bare MessagePack, as every release before formats had.
    Legacy = 0,
    /// Tagged MessagePack; entries carry a `WriteBatch`.
    V1 = 1,
}

impl Format {
    /// The newest format this release writes and reads.
    pub const NEWEST: Format = Format::V1;

    /// The format a peer's advertised version lets this node use with it:
    /// the newest both read (an unparsable or missing header is legacy).
    pub fn negotiated(advertised: Option<&str>) -> Format {
        advertised
            .and_then(|v| v.parse::<u8>().ok())
            .and_then(|v| Format::from_tag(v.min(Format::NEWEST as u8)))
            .unwrap_or(Format::Legacy)
    }

    fn from_tag(version: u8) -> Option<Format> {
        match version {
            1 => Some(Format::V1),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error(
        "data in format {found}, but this taskd reads formats up to {supported} (and untagged \
         legacy data): it was written by a newer release; run that release or a newer one"
    )]
    UnknownFormat { found: u8, supported: u8 },
    #[error("decode: a format tag without its version byte")]
    Truncated,
}

/// Untagged MessagePack (the vote, `sm_meta`, snapshots: see the module doc).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// `value` in `format`: bare MessagePack for legacy, else tag + version + body.
pub fn encode_as<T: Serialize + ?Sized>(value: &T, format: Format) -> Result<Vec<u8>, CodecError> {
    if format == Format::Legacy {
        return encode(value);
    }
    let mut bytes = vec![TAG, format as u8];
    rmp_serde::encode::write_named(&mut bytes, value)?;
    Ok(bytes)
}

/// Splits off the tag: the format and the MessagePack body.
fn split(bytes: &[u8]) -> Result<(Format, &[u8]), CodecError> {
    match bytes {
        [TAG, version, body @ ..] => {
            let format = Format::from_tag(*version).ok_or(CodecError::UnknownFormat {
                found: *version,
                supported: Format::NEWEST as u8,
            })?;
            Ok((format, body))
        }
        [TAG] => Err(CodecError::Truncated),
        _ => Ok((Format::Legacy, bytes)),
    }
}

/// Decodes a value of any format this release reads, tagged or not.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (_, body) = split(bytes)?;
    Ok(rmp_serde::from_slice(body)?)
}

/// Decodes a log entry of any format this release reads: a legacy entry of
/// the core release (one command) becomes a one-write batch.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    match split(bytes)? {
        (Format::Legacy, body) => legacy::decode_entry(body),
        (Format::V1, body) => Ok(rmp_serde::from_slice(body)?),
    }
}

#[cfg(test)]
mod tests;
