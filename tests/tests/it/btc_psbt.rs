//! Bitcoin end to end: a 3-input PSBT with change, signed by the cluster through the REST API.
//! The finalized transaction is checked with Bitcoin Core's script interpreter
//! (`bitcoinconsensus`, all pre-taproot flags), and fails it when an amount is changed.

use std::time::Duration;

use bitcoin::{hashes::Hash, psbt::Psbt, ScriptBuf, WPubkeyHash};
use proto::api::RequestStatus;
use serde_json::{json, Value};

use crate::common::{rid, shared, KEY};

const FLAGS: u32 = bitcoinconsensus::VERIFY_P2SH
    | bitcoinconsensus::VERIFY_DERSIG
    | bitcoinconsensus::VERIFY_NULLDUMMY
    | bitcoinconsensus::VERIFY_CHECKLOCKTIMEVERIFY
    | bitcoinconsensus::VERIFY_CHECKSEQUENCEVERIFY
    | bitcoinconsensus::VERIFY_WITNESS;

fn key_script(pk_hex: &str) -> ScriptBuf {
    let pk: [u8; 33] = hex::decode(pk_hex).unwrap().try_into().unwrap();
    ScriptBuf::from_bytes(proto::btc::p2wpkh_script(&pk).unwrap())
}

fn psbt(spk: &ScriptBuf, amounts: &[u64], pay: u64, change: u64) -> Psbt {
    custody_tests::sample::btc_psbt(spk.as_bytes(), amounts, pay, change)
}

fn sign(psbt: &Psbt) -> (u16, Value) {
    let s = shared();
    let id = rid("btc");
    let body = json!({"request_id": id, "key_id": KEY, "chain": "bitcoin", "network": "regtest",
        "psbt": psbt.to_string()});
    let (status, v) = s.cluster.api.post("/v1/sign-requests", &body).unwrap();
    if status != 202 {
        return (status, v);
    }
    let r = s
        .cluster
        .wait_request(&id, Duration::from_secs(180))
        .unwrap();
    (200, serde_json::to_value(r).unwrap())
}

#[test]
fn three_input_psbt_with_change_signs_and_passes_bitcoin_core_script_checks() {
    let pk = shared().key.public_key.clone().unwrap();
    let spk = key_script(&pk);
    let amounts = [50_000u64, 51_000, 52_000];
    let (status, v) = sign(&psbt(&spk, &amounts, 100_000, 50_000));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["status"],
        serde_json::to_value(RequestStatus::Signed).unwrap(),
        "{v}"
    );
    assert_eq!(v["signatures"].as_array().unwrap().len(), 3);
    let raw = hex::decode(v["signed_tx"].as_str().unwrap()).unwrap();
    for (i, sat) in amounts.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(spk.as_bytes(), *sat, &raw, None, i, FLAGS)
            .unwrap_or_else(|e| panic!("input {i} fails script verification: {e:?}"));
        assert!(
            bitcoinconsensus::verify_with_flags(spk.as_bytes(), sat + 1, &raw, None, i, FLAGS)
                .is_err(),
            "input {i} must fail with a changed amount"
        );
    }
    let addrs = &shared().key.bitcoin;
    assert!(addrs.as_ref().unwrap()["regtest"].starts_with("bcrt1q"));
}

#[test]
fn psbt_refusals_get_stable_codes() {
    let pk = shared().key.public_key.clone().unwrap();
    let spk = key_script(&pk);
    let foreign = ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([0x33; 20]));
    let (status, v) = sign(&psbt(&foreign, &[10_000], 5_000, 4_000));
    assert_eq!(
        (status, v["code"].as_str().unwrap()),
        (422, "psbt.input_not_owned"),
        "{v}"
    );
    let mut p = psbt(&spk, &[10_000], 5_000, 4_000);
    p.inputs[0].sighash_type = Some(bitcoin::psbt::PsbtSighashType::from_u32(2));
    let (status, v) = sign(&p);
    assert_eq!(
        (status, v["code"].as_str().unwrap()),
        (422, "psbt.sighash_not_all"),
        "{v}"
    );
    let (status, v) = sign(&psbt(&spk, &[10_000], 9_000, 4_000));
    assert_eq!(
        (status, v["code"].as_str().unwrap()),
        (422, "amount.overflow"),
        "{v}"
    );
}
