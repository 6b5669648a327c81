//! REST sign-request bodies: any bytes either fail to parse or decode into a request whose
//! payload decodes (or is refused) without a panic, for every part. What parses round-trips:
//! body → JSON → body is the same body (and that JSON is then stable), and so is the payload
//! the coordinator derives from it and sends on to the nodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{api::SignRequestBody, payload::SignPayload};

/// secp256k1's generator, compressed: a valid key to decode PSBT ownership against.
const PK: [u8; 33] = [
    0x02, 0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87, 0x0b,
    0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8, 0x17,
    0x98,
];

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<SignRequestBody>(data) else {
        return;
    };
    let json = serde_json::to_vec(&body).expect("a parsed body serialises");
    let again: SignRequestBody = serde_json::from_slice(&json).expect("a written body parses");
    assert_eq!(again, body, "parse → serialise → parse changed the body");
    assert_eq!(
        serde_json::to_vec(&again).expect("a parsed body serialises"),
        json,
        "a body's JSON is not stable"
    );
    let payload = SignPayload::from_body(&body);
    assert_eq!(
        SignPayload::from_body(&again).ok(),
        payload.as_ref().ok().cloned(),
        "the round-tripped body gives another payload"
    );
    let Ok(payload) = payload else {
        return;
    };
    let sent = serde_json::to_vec(&payload).expect("a payload serialises");
    let received: SignPayload = serde_json::from_slice(&sent).expect("a written payload parses");
    assert_eq!(
        received, payload,
        "the payload does not survive serialisation"
    );
    if let Ok(decoded) = payload.decode(&PK) {
        let _ = decoded.intent(&body.key_id);
        for i in 0..decoded.parts().min(16) {
            let _ = decoded.preimage(i);
        }
    }
});
