//! Node↔coordinator frame decoding never panics; whatever decodes re-encodes (parse → serialise
//! → parse gives the same value), and the encoding is canonical from then on (serialising the
//! re-parsed value gives the same bytes). The input itself need not be canonical CBOR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::wire::{decode, encode, CoordFrame, NodeFrame};
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let Ok(frame) = decode::<T>(data) else {
        return;
    };
    let bytes = encode(&frame).expect("a decoded frame encodes");
    let again: T = decode(&bytes).expect("an encoded frame decodes");
    assert_eq!(again, frame, "parse → serialise → parse changed the frame");
    let bytes_again = encode(&again).expect("a decoded frame encodes");
    assert_eq!(
        bytes_again, bytes,
        "the encoding of one frame is not stable"
    );
}

fuzz_target!(|data: &[u8]| {
    round_trip::<NodeFrame>(data);
    round_trip::<CoordFrame>(data);
});
