use std::io::Cursor;

use openraft::{BasicNode, EntryPayload};
use serde::{Deserialize, Serialize};

use super::*;
use crate::domain::{
    BatchResults, Command, Micros, NewTask, TaskPatch, TaskPriority, TaskStatus, WriteBatch,
};
use crate::raft::{LogId, NodeId};

/// The command type of the releases before batching, as their
/// `src/domain.rs` declared it (`P`: their `TaskPatch`).
#[allow(clippy::enum_variant_names)] // the names are the stored format
#[derive(Debug, Clone, Serialize, Deserialize)]
enum OldCommand<P> {
    CreateTask {
        id: String,
        request_id: Option<String>,
        now: Micros,
        task: NewTask,
    },
    UpdateTask {
        id: String,
        expected_version: u64,
        now: Micros,
        patch: P,
    },
    DeleteTask {
        id: String,
        expected_version: u64,
        now: Micros,
    },
}

/// `a31fde7`'s `TaskPatch`: the deadline in plain serde.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CorePatch {
    title: Option<String>,
    description: Option<String>,
    status: Option<TaskStatus>,
    priority: Option<TaskPriority>,
    deadline: Option<Option<Micros>>,
    assignee: Option<String>,
    labels: Option<Vec<String>>,
}

openraft::declare_raft_types!(
    /// `a31fde7`'s types (`D = Command`).
    Core:
        D = OldCommand<CorePatch>,
        R = BatchResults,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<Core>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

openraft::declare_raft_types!(
    /// `50dfa55`'s types: one command, the patch as today.
    Unbatched:
        D = OldCommand<TaskPatch>,
        R = BatchResults,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<Unbatched>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(term, 1), index)
}

fn new_task(title: &str) -> NewTask {
    NewTask {
        title: title.into(),
        description: "d".into(),
        status: TaskStatus::Todo,
        priority: TaskPriority::High,
        deadline: Some(77),
        assignee: "ann".into(),
        labels: vec!["x".into()],
    }
}

fn normal(entry: &Entry) -> &[Command] {
    match &entry.payload {
        EntryPayload::Normal(batch) => &batch.writes,
        other => panic!("a normal entry, not {other:?}"),
    }
}

/// What the core release stored (`rmp_serde::to_vec_named` of its
/// `Entry`, one command each) decodes as a batch of that one command, every
/// field kept, a set deadline (a bare number then) included.
#[test]
fn core_release_entries_decode_as_one_write_batches() {
    let create = openraft::Entry::<Core> {
        log_id: log_id(1, 3),
        payload: EntryPayload::Normal(OldCommand::CreateTask {
            id: "t1".into(),
            request_id: Some("r1".into()),
            now: 10,
            task: new_task("first"),
        }),
    };
    let update = openraft::Entry::<Core> {
        log_id: log_id(1, 4),
        payload: EntryPayload::Normal(OldCommand::UpdateTask {
            id: "t1".into(),
            expected_version: 1,
            now: 11,
            patch: CorePatch {
                title: Some("renamed".into()),
                deadline: Some(Some(99)),
                ..CorePatch::default()
            },
        }),
    };
    let delete = openraft::Entry::<Core> {
        log_id: log_id(1, 5),
        payload: EntryPayload::Normal(OldCommand::DeleteTask {
            id: "t1".into(),
            expected_version: 2,
            now: 12,
        }),
    };

    let create = decode_entry(&rmp_serde::to_vec_named(&create).unwrap()).unwrap();
    assert_eq!(create.log_id, log_id(1, 3));
    assert_eq!(
        normal(&create),
        [Command::CreateTask {
            id: "t1".into(),
            request_id: Some("r1".into()),
            now: 10,
            task: new_task("first"),
        }]
    );
    let update = decode_entry(&rmp_serde::to_vec_named(&update).unwrap()).unwrap();
    assert_eq!(
        normal(&update),
        [Command::UpdateTask {
            id: "t1".into(),
            expected_version: 1,
            now: 11,
            patch: TaskPatch {
                title: Some("renamed".into()),
                deadline: Some(Some(99)),
                ..TaskPatch::default()
            },
            request_id: None,
        }]
    );
    let delete = decode_entry(&rmp_serde::to_vec_named(&delete).unwrap()).unwrap();
    assert_eq!(
        normal(&delete),
        [Command::DeleteTask {
            id: "t1".into(),
            expected_version: 2,
            now: 12,
            request_id: None,
        }]
    );
}

/// `50dfa55`'s entries (one command, "clear the deadline" kept apart from
/// "leave it") decode with both meanings intact.
#[test]
fn unbatched_entries_keep_clear_and_leave_the_deadline() {
    for deadline in [None, Some(None), Some(Some(5))] {
        let entry = openraft::Entry::<Unbatched> {
            log_id: log_id(2, 8),
            payload: EntryPayload::Normal(OldCommand::UpdateTask {
                id: "t".into(),
                expected_version: 0,
                now: 1,
                patch: TaskPatch {
                    deadline,
                    ..TaskPatch::default()
                },
            }),
        };
        let decoded = decode_entry(&rmp_serde::to_vec_named(&entry).unwrap()).unwrap();
        match normal(&decoded) {
            [Command::UpdateTask { patch, .. }] => assert_eq!(patch.deadline, deadline),
            other => panic!("one update, not {other:?}"),
        }
    }
}

/// An entry as the previous release (`b0e3938`) stored it, byte for byte
/// (untagged, a batch of a create and a delete; made with that release's
/// `codec::encode`): this release reads it as it was. Pinned as bytes, so a
/// change to the entry types that would strand such rows fails here.
#[test]
fn previous_release_batched_entry_decodes() {
    let expected = Entry {
        log_id: log_id(3, 9),
        payload: EntryPayload::Normal(WriteBatch {
            writes: vec![
                Command::CreateTask {
                    id: "t9".into(),
                    request_id: None,
                    now: 5,
                    task: new_task("b"),
                },
                Command::DeleteTask {
                    id: "t8".into(),
                    expected_version: 0,
                    now: 6,
                    request_id: Some("r".into()),
                },
            ],
        }),
    };
    let bytes = hex(PREVIOUS_RELEASE_ENTRY);
    assert_eq!(decode_entry(&bytes).unwrap(), expected);
    assert_eq!(decode::<Entry>(&bytes).unwrap(), expected);
    // And what the previous release's `encode` produced is still `encode`'s output.
    assert_eq!(encode(&expected).unwrap(), bytes);
}

const PREVIOUS_RELEASE_ENTRY: &str = concat!(
    "82a66c6f675f696482a96c65616465725f696482a47465726d03a76e6f64655f696401a5696e6465",
    "7809a77061796c6f616481a64e6f726d616c81a67772697465739281aa4372656174655461736b84",
    "a26964a27439aa726571756573745f6964c0a36e6f7705a47461736b87a57469746c65a162ab6465",
    "736372697074696f6ea164a6737461747573a4546f646fa87072696f72697479a448696768a86465",
    "61646c696e654da861737369676e6565a3616e6ea66c6162656c7391a17881aa44656c6574655461",
    "736b84a26964a27438b065787065637465645f76657273696f6e00a36e6f7706aa72657175657374",
    "5f6964a172",
);

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Tagged entries round-trip, through both decoders.
#[test]
fn tagged_entries_round_trip() {
    let entry = Entry {
        log_id: log_id(4, 1),
        payload: EntryPayload::Normal(WriteBatch { writes: vec![] }),
    };
    let bytes = encode_as(&entry, Format::V1).unwrap();
    assert_eq!(&bytes[..2], &[0xC1, 1]);
    assert_eq!(decode_entry(&bytes).unwrap(), entry);
    assert_eq!(decode::<Entry>(&bytes).unwrap(), entry);
    assert_eq!(
        encode_as(&entry, Format::Legacy).unwrap(),
        encode(&entry).unwrap()
    );
}

/// A tag naming a format this release does not know is refused with the
/// typed error naming both versions, even when the body after it would
/// decode: it is never read as if it were a known format.
#[test]
fn unknown_format_is_refused_never_misread() {
    let entry = Entry {
        log_id: log_id(4, 2),
        payload: EntryPayload::Blank,
    };
    let mut bytes = encode_as(&entry, Format::V1).unwrap();
    for future in [2u8, 0, 0xC1, 255] {
        bytes[1] = future;
        for result in [
            decode_entry(&bytes).map(|_| ()),
            decode::<Entry>(&bytes).map(|_| ()),
        ] {
            match result {
                Err(CodecError::UnknownFormat { found, supported }) => {
                    assert_eq!((found, supported), (future, Format::NEWEST as u8))
                }
                other => panic!("format {future} refused, not {other:?}"),
            }
        }
    }
    let message = decode_entry(&[0xC1, 7, 0x90]).unwrap_err().to_string();
    assert!(
        message.contains("format 7") && message.contains("up to 1"),
        "{message}"
    );
    assert!(matches!(decode_entry(&[0xC1]), Err(CodecError::Truncated)));
}

/// The previous release decodes bare MessagePack (`rmp_serde::from_slice`):
/// it refuses a tagged entry or RPC payload (the tag is no MessagePack it
/// accepts) rather than misreading it.
#[test]
fn previous_release_refuses_tagged_bytes() {
    let entry = Entry {
        log_id: log_id(4, 3),
        payload: EntryPayload::Normal(WriteBatch { writes: vec![] }),
    };
    let bytes = encode_as(&entry, Format::V1).unwrap();
    assert!(rmp_serde::from_slice::<Entry>(&bytes).is_err());
}

/// A peer's `taskd-format` header gives the newest format both read; no
/// header (an older release) or nonsense means legacy.
#[test]
fn negotiated_format_is_the_newest_both_read() {
    assert_eq!(Format::negotiated(None), Format::Legacy);
    assert_eq!(Format::negotiated(Some("0")), Format::Legacy);
    assert_eq!(Format::negotiated(Some("1")), Format::V1);
    assert_eq!(Format::negotiated(Some("200")), Format::NEWEST);
    assert_eq!(Format::negotiated(Some("v1")), Format::Legacy);
}
