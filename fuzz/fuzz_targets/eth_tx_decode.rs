//! `UnsignedEip1559::decode` never panics, and whatever it accepts re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::eth::UnsignedEip1559;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = UnsignedEip1559::decode(data) {
        assert_eq!(
            tx.signing_preimage(),
            data,
            "decode accepted a non-canonical encoding"
        );
        let _ = tx.intent("fuzz", &[0x5e; 20]);
        let _ = tx.signing_hash();
    }
});
