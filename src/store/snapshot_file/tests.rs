//! The snapshot file format on its own: what is written reads back, and
//! every kind of damage is refused instead of misread.

use super::legacy;
use super::*;
use crate::domain::{TaskPriority, TaskStatus};
use crate::store::StateDump;

fn task(i: u32) -> Task {
    Task {
        id: format!("t{i:04}"),
        title: format!("title {i}"),
        description: "d".repeat(i as usize % 7),
        status: TaskStatus::Todo,
        priority: TaskPriority::Unspecified,
        deadline: (i % 2 == 0).then_some(i64::from(i)),
        assignee: String::new(),
        labels: vec![format!("l{}", i % 3)],
        create_time: i64::from(i),
        update_time: i64::from(i) + 1,
        version: 1,
    }
}

fn dump(n: u32) -> StateDump {
    StateDump {
        meta: SmMeta {
            last_applied: Some(b"applied".to_vec()),
            membership: Some(b"members".to_vec()),
        },
        tasks: (0..n).map(task).collect(),
        request_ids: (0..n / 2)
            .map(|i| RequestIdRow {
                request_id: format!("r{i}"),
                task_id: format!("t{i:04}"),
                create_time: i64::from(i),
                fingerprint: vec![1, 2, 3],
                result: None,
            })
            .collect(),
    }
}

async fn file_of(dump: &StateDump) -> Vec<u8> {
    legacy::write_dump(dump, Vec::new()).await.expect("write").0
}

async fn read_back(data: &[u8]) -> Result<StateDump, SnapshotFileError> {
    let mut reader = SnapshotReader::open(data).await?;
    let mut out = StateDump {
        meta: reader.meta().clone(),
        ..StateDump::default()
    };
    while let Some(record) = reader.next().await? {
        match record {
            Record::Task(t) => out.tasks.push(t),
            Record::RequestId(r) => out.request_ids.push(r),
        }
    }
    Ok(out)
}

/// What the writer wrote, the reader reads back, with the counts and
/// length the summary names; the file starts with the magic and version.
#[tokio::test]
async fn roundtrip() {
    let original = dump(40);
    let (file, summary) = legacy::write_dump(&original, Vec::new()).await.unwrap();
    assert_eq!(&file[..8], b"TASKDSNP");
    assert_eq!(&file[8..12], &FORMAT_VERSION.to_be_bytes());
    assert_eq!(
        (summary.tasks, summary.request_ids, summary.bytes),
        (40, 20, file.len() as u64)
    );
    assert_eq!(read_back(&file).await.unwrap(), original);
    assert_eq!(verify(&file[..]).await.unwrap(), summary);
    assert_eq!(
        read_back(&file_of(&StateDump::default()).await)
            .await
            .unwrap(),
        StateDump::default()
    );
}

/// Every truncation of a file (at any byte) is refused, and so is every
/// single flipped bit (one per byte, each bit position in turn): none reads
/// as a valid snapshot.
#[tokio::test]
async fn every_truncation_and_bit_flip_is_refused() {
    let file = file_of(&dump(6)).await;
    for cut in 0..file.len() {
        assert!(verify(&file[..cut]).await.is_err(), "cut at {cut} accepted");
    }
    for at in 0..file.len() {
        let mut bad = file.clone();
        bad[at] ^= 1 << (at % 8);
        assert!(
            verify(&bad[..]).await.is_err(),
            "flip at byte {at} accepted"
        );
    }
    let mut longer = file.clone();
    longer.push(0);
    assert!(matches!(
        verify(&longer[..]).await,
        Err(SnapshotFileError::Corrupt(_))
    ));
}

/// The errors say what is wrong: another file, a newer format, a lie about
/// a length (refused before allocating it), a damaged byte.
#[tokio::test]
async fn errors_name_the_damage() {
    let file = file_of(&dump(3)).await;
    assert!(matches!(
        verify(&b"PK\x03\x04 a zip file"[..]).await,
        Err(SnapshotFileError::NotASnapshot(_))
    ));
    let mut newer = file.clone();
    newer[8..12].copy_from_slice(&2u32.to_be_bytes());
    assert!(matches!(
        verify(&newer[..]).await,
        Err(SnapshotFileError::UnsupportedVersion(2))
    ));
    let mut huge = file.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    let err = verify(&huge[..]).await.unwrap_err();
    assert!(err.to_string().contains("frame bound"), "{err}");
    assert!(matches!(
        verify(&file[..file.len() - 2]).await,
        Err(SnapshotFileError::Truncated(_))
    ));
    let mut flipped = file.clone();
    let last_payload_byte = file.len() - 5;
    flipped[last_payload_byte] ^= 0x01;
    let err = verify(&flipped[..]).await.unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotFileError::Checksum { .. } | SnapshotFileError::Corrupt(_)
        ),
        "{err}"
    );
}

/// A blob of the format before version 1 (one msgpack `StateDump` map with
/// field names, as `raft::codec` encoded it) is recognised by its first
/// byte and converts to the same state; a current file is not mistaken
/// for one.
#[tokio::test]
async fn legacy_blobs_convert() {
    let original = dump(25);
    let blob = crate::raft::codec::encode(&original).unwrap();
    assert!(legacy::is_legacy(blob[0]));
    assert!(!legacy::is_legacy(MAGIC[0]));
    let (converted, summary) = legacy::convert(std::io::Cursor::new(blob.clone()), Vec::new())
        .await
        .unwrap();
    assert_eq!((summary.tasks, summary.request_ids), (25, 12));
    assert_eq!(read_back(&converted).await.unwrap(), original);
    let empty = crate::raft::codec::encode(&StateDump::default()).unwrap();
    assert!(legacy::is_legacy(empty[0]));
    let (converted, _) = legacy::convert(std::io::Cursor::new(empty), Vec::new())
        .await
        .unwrap();
    assert_eq!(read_back(&converted).await.unwrap(), StateDump::default());
    let cut = blob[..blob.len() / 2].to_vec();
    assert!(legacy::convert(std::io::Cursor::new(cut), Vec::new())
        .await
        .is_err());
}
