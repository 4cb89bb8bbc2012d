//! The snapshot decoders: an InstallSnapshot chunk as it arrives from a
//! peer (`RaftService::InstallSnapshot` payload), and the snapshot data
//! (`StateDump`) the state machine installs. Any bytes either fail with an
//! error, or decode to a value that survives encode → decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskd::raft::{codec, TypeConfig};
use taskd::store::StateDump;

type Chunk = openraft::raft::InstallSnapshotRequest<TypeConfig>;

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
    if let Ok(dump) = codec::decode::<StateDump>(data) {
        let bytes = codec::encode(&dump).expect("a decoded dump encodes");
        let again: StateDump = codec::decode(&bytes).expect("our own encoding decodes");
        assert_eq!(again, dump);
    }
});
