//! The snapshot decoders: an InstallSnapshot chunk as it arrives from a
//! peer (`RaftService::InstallSnapshot` payload), a snapshot file in the
//! current format (`store::snapshot_file`, also the backup format) and a
//! legacy snapshot blob (`StateDump`, the format before version 1). Any
//! bytes either fail with an error, or decode to values that survive
//! encode → decode unchanged.
#![no_main]

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use taskd::raft::{codec, TypeConfig};
use taskd::store::snapshot_file::{legacy, Record, SnapshotReader};
use taskd::store::StateDump;

type Chunk = openraft::raft::InstallSnapshotRequest<TypeConfig>;

/// The state a snapshot file holds, if it is a valid one.
async fn read(data: &[u8]) -> Option<StateDump> {
    let mut reader = SnapshotReader::open(data).await.ok()?;
    let mut dump = StateDump {
        meta: reader.meta().clone(),
        ..StateDump::default()
    };
    while let Some(record) = reader.next().await.ok()? {
        match record {
            Record::Task(t) => dump.tasks.push(t),
            Record::RequestId(r) => dump.request_ids.push(r),
        }
    }
    Some(dump)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = codec::decode::<Chunk>(data) {
        let bytes = codec::encode(&chunk).expect("a decoded chunk encodes");
        let again: Chunk = codec::decode(&bytes).expect("our own encoding decodes");
        // (no PartialEq on openraft's RPC types: compare what matters)
        assert_eq!(again.data, chunk.data);
        assert_eq!(again.offset, chunk.offset);
        assert_eq!(again.done, chunk.done);
        assert_eq!(again.meta, chunk.meta);
        assert_eq!(codec::encode(&again).expect("encodes"), bytes);
    }
    // Reading from a slice never waits: any executor will do.
    if let Some(dump) = block_on(read(data)) {
        let (file, summary) = block_on(legacy::write_dump(&dump, Vec::new())).expect("writes");
        assert_eq!(summary.tasks as usize, dump.tasks.len());
        assert_eq!(block_on(read(&file)), Some(dump), "our own file reads back");
    }
    if let Ok(dump) = legacy::decode(data) {
        let bytes = codec::encode(&dump).expect("a decoded dump encodes");
        let again = legacy::decode(&bytes).expect("our own encoding decodes");
        assert_eq!(again, dump);
        let (file, _) = block_on(legacy::write_dump(&dump, Vec::new())).expect("converts");
        assert_eq!(
            block_on(read(&file)),
            Some(dump),
            "the conversion reads back"
        );
    }
});
