//! The Raft log entry payload decoder (`raft::codec`, as the log store and
//! AppendEntries use it): any bytes either fail to decode with an error, or
//! decode to an entry whose encoding (tagged and untagged) decodes back to
//! the same entry and re-encodes to the same bytes (what one node writes,
//! every node reads). Bytes tagged with a format this release does not know
//! never decode (they are refused, not misread).
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskd::raft::codec::{self, CodecError, Format};
use taskd::raft::{Entry, TypeConfig};

fuzz_target!(|data: &[u8]| {
    let entry = codec::decode_entry(data);
    if let [0xC1, version, ..] = data {
        if *version != Format::V1 as u8 {
            assert!(
                matches!(entry, Err(CodecError::UnknownFormat { .. })),
                "format {version} refused"
            );
        }
    }
    if let Ok(entry) = entry {
        round_trip(&entry);
    }
    if let Ok(rpc) = codec::decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(data) {
        for entry in &rpc.entries {
            round_trip(entry);
        }
        for format in [Format::Legacy, Format::NEWEST] {
            let bytes = codec::encode_as(&rpc, format).expect("a decoded request encodes");
            let again: openraft::raft::AppendEntriesRequest<TypeConfig> =
                codec::decode(&bytes).expect("our own encoding decodes");
            // (no PartialEq on openraft's RPC types: compare the encodings)
            assert_eq!(codec::encode_as(&again, format).expect("encodes"), bytes);
        }
    }
});

fn round_trip(entry: &Entry) {
    for format in [Format::Legacy, Format::NEWEST] {
        let bytes = codec::encode_as(entry, format).expect("a decoded entry encodes");
        let again = codec::decode_entry(&bytes).expect("our own encoding decodes");
        assert_eq!(&again, entry);
        assert_eq!(codec::encode_as(&again, format).expect("encodes"), bytes);
    }
}
