//! `UnsignedPsbt::decode` never panics; whatever it accepts round-trips, yields an intent and
//! a preimage for every input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::btc::{Network, UnsignedPsbt};

/// The custody key of the seed PSBTs in `seeds/psbt_decode` (the test key of secret `[1; 32]`).
const PUBKEY: [u8; 33] = [
    0x03, 0x1b, 0x84, 0xc5, 0x56, 0x7b, 0x12, 0x64, 0x40, 0x99, 0x5d, 0x3e, 0xd5, 0xaa, 0xba, 0x05,
    0x65, 0xd7, 0x1e, 0x18, 0x34, 0x60, 0x48, 0x19, 0xff, 0x9c, 0x17, 0xf5, 0xe9, 0xd5, 0xdd, 0x07,
    0x8f,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = UnsignedPsbt::decode(data, Network::Mainnet, &PUBKEY) {
        assert_eq!(
            tx.encode(),
            data,
            "decode accepted a non-canonical encoding"
        );
        let intent = tx.intent("fuzz").expect("a decoded psbt has an intent");
        assert!(intent.fee <= u128::from(u64::MAX));
        for i in 0..tx.input_count() {
            tx.sighash_preimage(i)
                .expect("every decoded input has a preimage");
        }
        assert!(tx.sighash_preimage(tx.input_count()).is_err());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = UnsignedPsbt::decode_base64(text, Network::Regtest, &PUBKEY);
    }
});
