//! The Raft log entry payload decoder (`raft::codec`, as the log store and
//! AppendEntries use it): any bytes either fail to decode with an error, or
//! decode to an entry whose encoding decodes back to the same entry and
//! re-encodes to the same bytes (what one node writes, every node reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskd::raft::{codec, Entry, TypeConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = codec::decode::<Entry>(data) {
        round_trip(&entry);
    }
    if let Ok(rpc) = codec::decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(data) {
        for entry in &rpc.entries {
            round_trip(entry);
        }
        let bytes = codec::encode(&rpc).expect("a decoded request encodes");
        let again: openraft::raft::AppendEntriesRequest<TypeConfig> =
            codec::decode(&bytes).expect("our own encoding decodes");
        // (no PartialEq on openraft's RPC types: compare the encodings)
        assert_eq!(codec::encode(&again).expect("encodes"), bytes);
    }
});

fn round_trip(entry: &Entry) {
    let bytes = codec::encode(entry).expect("a decoded entry encodes");
    let again: Entry = codec::decode(&bytes).expect("our own encoding decodes");
    assert_eq!(&again, entry);
    assert_eq!(codec::encode(&again).expect("encodes"), bytes);
}
