//! Node↔coordinator frame decoding never panics, and whatever decodes re-encodes to a frame
//! that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::wire::{decode, encode, CoordFrame, NodeFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode::<NodeFrame>(data) {
        if let Ok(bytes) = encode(&frame) {
            let again: NodeFrame = decode(&bytes).expect("an encoded node frame decodes");
            assert_eq!(again, frame);
        }
    }
    if let Ok(frame) = decode::<CoordFrame>(data) {
        if let Ok(bytes) = encode(&frame) {
            let again: CoordFrame = decode(&bytes).expect("an encoded coordinator frame decodes");
            assert_eq!(again, frame);
        }
    }
});
