//! Writes the committed seed corpus: real encodings of the values each
//! target decodes, so that fuzzing starts from inputs that get deep.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus
//!
//! (from the repository root; it replaces fuzz/corpus/<target>/seed-*).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, StoredMembership};
use prost::Message;
use taskd::domain::{Command, NewTask, Task, TaskPatch, TaskPriority, TaskStatus, WriteBatch};
use taskd::proto;
use taskd::raft::{codec, Entry, SnapshotMeta, TypeConfig, Vote};
use taskd::store::{snapshot_file, RequestIdRow, SmMeta, StateDump};

fn write(target: &str, seeds: Vec<Vec<u8>>) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for old in std::fs::read_dir(&dir).expect("read corpus dir") {
        let path = old.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        {
            std::fs::remove_file(path).expect("remove old seed");
        }
    }
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write seed");
    }
    println!("{target}: {} seeds", seeds.len());
}

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

fn tagged(kind: u8, message: &impl Message) -> Vec<u8> {
    let mut bytes = vec![kind];
    bytes.extend(message.encode_to_vec());
    bytes
}

// `..Default::default()` everywhere: the seeds keep building when the proto
// gains fields.
#[allow(clippy::needless_update)]
fn convert_seeds() -> Vec<Vec<u8>> {
    let create = proto::CreateTaskRequest {
        title: "write the design".into(),
        description: "all of it".into(),
        status: 2,
        priority: 3,
        deadline: ts(1_900_000_000, 123_456_789),
        assignee: "ada".into(),
        labels: vec!["docs".into(), "q4".into()],
        request_id: "k-1".into(),
        ..Default::default()
    };
    let bad_create = proto::CreateTaskRequest {
        title: "  ".into(),
        status: 9,
        labels: vec!["a".into(), "a".into(), "has space".into(), String::new()],
        deadline: ts(0, -1),
        ..Default::default()
    };
    let task = proto::Task {
        id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        title: "new".into(),
        status: 3,
        priority: 1,
        deadline: ts(1_800_000_000, 0),
        assignee: "bob".into(),
        labels: vec!["x".into()],
        ..Default::default()
    };
    let update = |paths: &[&str]| proto::UpdateTaskRequest {
        task: Some(task.clone()),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        expected_version: 3,
        ..Default::default()
    };
    let list = proto::ListTasksRequest {
        page_size: 7,
        status: 1,
        assignee: "ada".into(),
        label: "docs".into(),
        deadline_before: ts(2_000_000_000, 0),
        deadline_after: ts(1_000_000_000, 5),
        order_by: 2,
        ..Default::default()
    };
    vec![
        tagged(0, &create),
        tagged(0, &bad_create),
        tagged(0, &proto::CreateTaskRequest::default()),
        tagged(1, &update(&["title", "status", "deadline"])),
        tagged(1, &update(&["*"])),
        tagged(1, &update(&["version", "nope", "labels"])),
        tagged(1, &proto::UpdateTaskRequest::default()),
        tagged(
            2,
            &proto::GetTaskRequest {
                id: task.id.clone(),
                consistency: 2,
            },
        ),
        tagged(
            2,
            &proto::GetTaskRequest {
                id: "x".repeat(65),
                consistency: 0,
            },
        ),
        tagged(3, &list),
        tagged(
            3,
            &proto::ListTasksRequest {
                page_size: -1,
                status: 7,
                order_by: 9,
                page_token: "garbage".into(),
                ..Default::default()
            },
        ),
        tagged(
            3,
            &proto::ListTasksRequest {
                page_size: 1001,
                deadline_before: ts(i64::MAX, 0),
                ..Default::default()
            },
        ),
    ]
}

fn page_token_seeds() -> Vec<Vec<u8>> {
    // `arbitrary` reads these as field values; a few shapes are enough.
    vec![
        vec![],
        vec![0; 64],
        vec![0xff; 64],
        b"\x07\x00\x00\x00\x01\x00\x00\x00ada\x00label\x00eyJ2IjoxfQ\x00id\x00".to_vec(),
        (0u8..=127).collect(),
    ]
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("127.0.0.1:5005{id}"))))
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn task(id: &str) -> Task {
    Task {
        id: id.into(),
        title: "t".into(),
        description: "d".into(),
        status: TaskStatus::InProgress,
        priority: TaskPriority::High,
        deadline: Some(1_700_000_000_000_000),
        assignee: "ada".into(),
        labels: vec!["x".into(), "y".into()],
        create_time: 1_600_000_000_000_000,
        update_time: 1_600_000_000_000_001,
        version: 2,
    }
}

fn entries() -> Vec<Entry> {
    let new_task = NewTask {
        title: "t".into(),
        description: String::new(),
        status: TaskStatus::Todo,
        priority: TaskPriority::Unspecified,
        deadline: None,
        assignee: "ada".into(),
        labels: vec!["x".into()],
    };
    let writes = vec![
        Command::CreateTask {
            id: "a".into(),
            request_id: Some("k".into()),
            now: 5,
            task: new_task.clone(),
        },
        Command::CreateTask {
            id: "b".into(),
            request_id: None,
            now: 6,
            task: new_task,
        },
        Command::UpdateTask {
            id: "a".into(),
            expected_version: 1,
            now: 7,
            patch: TaskPatch {
                title: Some("u".into()),
                deadline: Some(None),
                ..Default::default()
            },
            request_id: Some("u1".into()),
        },
        Command::UpdateTask {
            id: "b".into(),
            expected_version: 0,
            now: 8,
            patch: TaskPatch {
                deadline: Some(Some(9)),
                labels: Some(vec![]),
                ..Default::default()
            },
            request_id: None,
        },
        Command::DeleteTask {
            id: "b".into(),
            expected_version: 0,
            now: 9,
            request_id: None,
        },
    ];
    vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(membership()),
        },
        Entry {
            log_id: log_id(2, 3),
            payload: EntryPayload::Normal(WriteBatch { writes }),
        },
        Entry {
            log_id: log_id(2, 4),
            payload: EntryPayload::Normal(WriteBatch { writes: vec![] }),
        },
    ]
}

fn raft_entry_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = entries()
        .iter()
        .map(|e| codec::encode(e).expect("encode"))
        .collect();
    let rpc = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(1, 2)),
        entries: entries(),
        leader_commit: Some(log_id(2, 3)),
    };
    seeds.push(codec::encode(&rpc).expect("encode"));
    let heartbeat = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new(3, 2),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    seeds.push(codec::encode(&heartbeat).expect("encode"));
    // Tagged (format 1), as this release writes log rows and talks to its peers.
    seeds.extend(
        entries()
            .iter()
            .map(|e| codec::encode_as(e, codec::Format::NEWEST).expect("encode")),
    );
    seeds.push(codec::encode_as(&rpc, codec::Format::NEWEST).expect("encode"));
    // The core release's entry shape: one command, not a batch.
    seeds.push(pre_batching_entry());
    // A format from the future: refused.
    let mut future = codec::encode_as(&entries()[2], codec::Format::NEWEST).expect("encode");
    future[1] = 2;
    seeds.push(future);
    seeds
}

/// An entry as the core release stored it: `{"log_id", "payload": {"Normal": Command}}`.
fn pre_batching_entry() -> Vec<u8> {
    #[derive(serde::Serialize)]
    enum Payload {
        Normal(Command),
    }
    #[derive(serde::Serialize)]
    struct OldEntry {
        log_id: LogId<u64>,
        payload: Payload,
    }
    let command = Command::CreateTask {
        id: "t0".into(),
        request_id: Some("r0".into()),
        now: 3,
        task: NewTask {
            title: "old".into(),
            description: String::new(),
            status: TaskStatus::Todo,
            priority: TaskPriority::Low,
            deadline: None,
            assignee: String::new(),
            labels: vec![],
        },
    };
    codec::encode(&OldEntry {
        log_id: log_id(1, 5),
        payload: Payload::Normal(command),
    })
    .expect("encode")
}

fn snapshot_seeds() -> Vec<Vec<u8>> {
    let dump = StateDump {
        meta: SmMeta {
            last_applied: Some(codec::encode(&Some(log_id(2, 9))).expect("encode")),
            membership: None,
        },
        tasks: vec![task("a"), task("b")],
        request_ids: vec![RequestIdRow {
            request_id: "k".into(),
            task_id: "a".into(),
            create_time: 5,
            fingerprint: vec![],
            result: None,
        }],
    };
    let legacy = codec::encode(&dump).expect("encode");
    // Format 1 (store::snapshot_file), what nodes send and store now.
    let data = futures::executor::block_on(snapshot_file::legacy::write_dump(&dump, Vec::new()))
        .expect("write a snapshot file")
        .0;
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(2, 9)),
        last_membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
        snapshot_id: "2-9-1".into(),
    };
    let chunk = |offset: u64, data: Vec<u8>, done: bool| {
        codec::encode(&openraft::raft::InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            meta: meta.clone(),
            offset,
            data,
            done,
        })
        .expect("encode")
    };
    let half = data.len() / 2;
    let empty = futures::executor::block_on(snapshot_file::legacy::write_dump(
        &StateDump::default(),
        Vec::new(),
    ))
    .expect("write a snapshot file")
    .0;
    vec![
        data.clone(),
        empty,
        legacy,
        codec::encode(&StateDump::default()).expect("encode"),
        chunk(0, data.clone(), true),
        chunk(0, data[..half].to_vec(), false),
        chunk(half as u64, data[half..].to_vec(), true),
        chunk(u64::MAX, vec![1, 2, 3], false),
    ]
}

fn main() {
    write("convert", convert_seeds());
    write("page_token", page_token_seeds());
    write("raft_entry", raft_entry_seeds());
    write("snapshot", snapshot_seeds());
}
