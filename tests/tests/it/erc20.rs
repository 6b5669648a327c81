//! Review finding: ERC-20 calldata that is not the canonical ABI encoding (trailing bytes, an
//! address word with dirty high bytes) decoded as a `contract_call` of 0 to the token, out of
//! the token's accounting; a token may still execute it as a transfer. It is refused as
//! `tx.erc20_non_canonical` before any session.

use std::time::Duration;

use custody_tests::sample;
use serde_json::json;

use crate::common::{rid, shared, KEY};

/// Submits an ERC-20 call to the test token; the refusal code, whether the coordinator refused
/// it (`422`) or the nodes did, and whether anything was signed.
fn refusal(data: Vec<u8>) -> (String, bool) {
    let s = shared();
    let id = rid("erc20-nc");
    let body = json!({"request_id": id, "key_id": KEY, "chain": "ethereum",
        "unsigned_tx": sample::eth_tx(41, [0x33; 20], 0, data)});
    let (status, v) = s.cluster.api.post("/v1/sign-requests", &body).unwrap();
    if status != 202 {
        return (v["code"].as_str().unwrap_or_default().to_string(), false);
    }
    let r = s
        .cluster
        .wait_request(&id, Duration::from_secs(120))
        .unwrap();
    let code = r.error.map(|e| e.code).unwrap_or_default();
    (code, r.signature.is_some() || r.signed_tx.is_some())
}

fn transfer(address_word: [u8; 32], extra: &[u8]) -> Vec<u8> {
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(&address_word);
    let mut amount = [0u8; 32];
    amount[31] = 77;
    data.extend_from_slice(&amount);
    data.extend_from_slice(extra);
    data
}

#[test]
fn erc20_non_canonical_transfer_refused() {
    let mut clean = [0u8; 32];
    clean[12..].fill(0x22);
    let mut dirty = clean;
    dirty[0] = 0x01;
    for (what, data) in [
        ("padded", transfer(clean, &[0; 32])),
        ("dirty address", transfer(dirty, &[])),
    ] {
        let (code, signed) = refusal(data);
        assert_eq!(code, "tx.erc20_non_canonical", "{what}");
        assert!(!signed, "{what}: nothing may be signed");
    }
}
