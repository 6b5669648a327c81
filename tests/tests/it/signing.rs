//! Signing through the REST API with real processes, checked against independent oracles:
//! alloy's EIP-2718 decoder with k256 signer recovery, and libsecp256k1 for low-s.

use std::{collections::BTreeSet, time::Duration};

use alloy_consensus::{transaction::SignerRecoverable, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use custody_tests::sample;
use proto::api::{RequestStatus, SignRequestView};
use serde_json::json;

use crate::common::{exclusive, rid, shared, Shared, KEY};

/// Submits a native transfer and waits for the final status.
pub fn sign_transfer(s: &Shared, nonce: u64) -> SignRequestView {
    let body = json!({
        "request_id": rid("sign"), "key_id": KEY, "chain": "ethereum",
        "unsigned_tx": sample::eth_transfer(nonce, [0x42; 20], 12345),
    });
    submit(s, &body)
}

/// Submits a request body (which must be accepted) and waits for its final status.
pub fn submit(s: &Shared, body: &serde_json::Value) -> SignRequestView {
    let (status, v) = s.cluster.api.post("/v1/sign-requests", body).unwrap();
    assert_eq!(status, 202, "{v}");
    let id = body["request_id"].as_str().unwrap();
    s.cluster
        .wait_request(id, Duration::from_secs(120))
        .unwrap()
}

/// Asserts that every node refused a request with `code` and nothing was signed.
pub fn assert_refused(r: &SignRequestView, code: &str) {
    assert_eq!(r.status, RequestStatus::Denied, "{r:?}");
    assert!(r.signers.is_empty(), "no session may start: {r:?}");
    assert_eq!(r.verdicts.len(), 3, "{r:?}");
    for (node, v) in &r.verdicts {
        assert_eq!(v.code.as_deref(), Some(code), "{node}: {v:?}");
    }
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some(code),
        "{r:?}"
    );
    assert!(r.signature.is_none() && r.signed_tx.is_none(), "{r:?}");
}

/// Independent checks of a signed request.
pub fn assert_valid_signature(s: &Shared, r: &SignRequestView) {
    assert_eq!(r.status, RequestStatus::Signed, "{r:?}");
    let raw = hex::decode(r.signed_tx.as_deref().unwrap().trim_start_matches("0x")).unwrap();
    let env = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    let signer = env.recover_signer().unwrap();
    let addr = s.key.ethereum_address.as_deref().unwrap();
    assert_eq!(
        format!("{signer:#x}"),
        addr,
        "recovered sender must be the key's address"
    );
    let sig = r.signature.as_ref().unwrap();
    let s_bytes = hex::decode(sig.s.trim_start_matches("0x")).unwrap();
    let r_bytes = hex::decode(sig.r.trim_start_matches("0x")).unwrap();
    let compact: Vec<u8> = [r_bytes, s_bytes].concat();
    let parsed = secp256k1::ecdsa::Signature::from_compact(&compact).unwrap();
    let mut normalized = parsed;
    normalized.normalize_s();
    assert_eq!(parsed, normalized, "signature must be low-s");
    assert_eq!(sig.v, sig.y_parity);
    assert!(sig.y_parity <= 1);
}

#[test]
fn key_from_dkg_has_matching_address() {
    let s = shared();
    let pk = hex::decode(s.key.public_key.as_deref().unwrap()).unwrap();
    assert_eq!(pk.len(), 33);
    let pk: [u8; 33] = pk.try_into().unwrap();
    assert_eq!(
        proto::eth::address_from_pubkey(&pk).unwrap(),
        s.key.ethereum_address.clone().unwrap()
    );
    assert_eq!(s.key.nodes.len(), 3);
    assert_eq!(s.key.threshold, 2);
}

#[test]
fn signs_with_every_two_of_three_subset_via_rotation() {
    let s = exclusive();
    let mut subsets = BTreeSet::new();
    for nonce in 0..3 {
        let r = sign_transfer(&s, nonce);
        assert_valid_signature(&s, &r);
        assert_eq!(r.signers.len(), 2);
        subsets.insert(r.signers.clone());
    }
    assert_eq!(
        subsets.len(),
        3,
        "each 2-subset of 3 nodes signs in turn: {subsets:?}"
    );
}

#[test]
fn signs_with_any_one_node_down() {
    let mut s = exclusive();
    for down in 0..3 {
        let down_id = s.cluster.layout.nodes[down].clone();
        s.cluster.kill_node(down).unwrap();
        let r = sign_transfer(&s, 10 + down as u64);
        assert_valid_signature(&s, &r);
        assert!(
            !r.signers.contains(&down_id),
            "{down_id} is down but signed: {r:?}"
        );
        s.cluster.start_node_and_wait(down).unwrap();
    }
}

#[test]
fn erc20_transfer_signs_and_recovers() {
    let s = shared();
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(&[0x22; 20]);
    let mut amount = [0u8; 32];
    amount[31] = 77;
    data.extend_from_slice(&amount);
    let id = rid("erc20");
    let body = json!({"request_id": id, "key_id": KEY, "chain": "ethereum",
        "unsigned_tx": sample::eth_tx(99, [0x33; 20], 0, data)});
    let (status, v) = s.cluster.api.post("/v1/sign-requests", &body).unwrap();
    assert_eq!(status, 202, "{v}");
    let r = s
        .cluster
        .wait_request(&id, Duration::from_secs(120))
        .unwrap();
    assert_valid_signature(&s, &r);
}

#[test]
fn chain_id_outside_the_node_scope_is_refused_without_signature() {
    let s = shared();
    for (chain_id, net_body) in [(1u64, None), (0, Some("mainnet"))] {
        let id = rid("scope");
        let body = match net_body {
            None => json!({"request_id": id, "key_id": KEY, "chain": "ethereum",
                "unsigned_tx": sample::eth_tx_on(chain_id, 1, [0x42; 20], 1, vec![])}),
            Some(net) => {
                let pk: [u8; 33] = hex::decode(s.key.public_key.as_deref().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap();
                let script = proto::btc::p2wpkh_script(&pk).unwrap();
                json!({"request_id": id, "key_id": KEY, "chain": "bitcoin", "network": net,
                    "psbt": sample::btc_psbt(&script, &[10_000], 5_000, 4_000).to_string()})
            }
        };
        assert_refused(&submit(&s, &body), "node.scope.chain");
    }
}

/// The nodes' `[scope] contract_calls` is on here (the node-level switch is unit-tested in
/// `signer-node`'s config): a call to the token that is not a transfer or an allowance, and a
/// call to a contract the policy does not name, are refused by the signed policy.
#[test]
fn contract_calls_the_policy_does_not_name_are_refused() {
    let s = shared();
    for (to, code) in [
        ([0x33; 20], "policy.contract.unknown"),
        ([0x77; 20], "policy.contract.unknown"),
    ] {
        let body = json!({"request_id": rid("call"), "key_id": KEY, "chain": "ethereum",
            "unsigned_tx": sample::eth_tx(3, to, 0, vec![0xde, 0xad, 0xbe, 0xef])});
        assert_refused(&submit(&s, &body), code);
    }
}
