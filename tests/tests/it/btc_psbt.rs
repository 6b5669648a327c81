//! Bitcoin end to end: a 3-input PSBT with change, signed by the cluster through the REST API.
//! The finalized transaction is checked with Bitcoin Core's script interpreter
//! (`bitcoinconsensus`, all pre-taproot flags), and fails it when an amount is changed.

use std::time::Duration;

use bitcoin::{hashes::Hash, psbt::Psbt, ScriptBuf, WPubkeyHash};
use proto::api::RequestStatus;
use serde_json::{json, Value};

use crate::common::{rid, shared, KEY};

/// Bitcoin Core's pre-taproot script verification flags.
pub(crate) const FLAGS: u32 = bitcoinconsensus::VERIFY_P2SH
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

/// `psbt` with input `input`'s `witness_utxo` amount replaced by `sat`; with `keep_prev`, each
/// input keeps its (truthful) `non_witness_utxo`, otherwise every one is dropped.
fn lying(psbt: &Psbt, input: usize, sat: u64, keep_prev: bool) -> Psbt {
    let mut p = psbt.clone();
    if let Some(utxo) = p.inputs[input].witness_utxo.as_mut() {
        utxo.value = bitcoin::Amount::from_sat(sat);
    }
    if !keep_prev {
        for i in &mut p.inputs {
            i.non_witness_utxo = None;
        }
    }
    p
}

/// If both requests were signed, splice: for each input take a witness that Bitcoin Core's
/// interpreter accepts at the TRUE amount. A spliced transaction valid at every input is the
/// attack succeeding.
fn assert_no_splice(spk: &ScriptBuf, truth: &[u64], signed: &[&Value]) {
    use bitcoin::consensus::{deserialize, serialize};
    let txs: Vec<bitcoin::Transaction> = signed
        .iter()
        .filter_map(|v| v["signed_tx"].as_str())
        .map(|h| deserialize(&hex::decode(h).unwrap()).unwrap())
        .collect();
    let Some(first) = txs.first() else { return };
    let mut spliced = first.clone();
    let mut valid = 0;
    for (i, sat) in truth.iter().enumerate() {
        for tx in &txs {
            spliced.input[i].witness = tx.input[i].witness.clone();
            let raw = serialize(&spliced);
            if bitcoinconsensus::verify_with_flags(spk.as_bytes(), *sat, &raw, None, i, FLAGS)
                .is_ok()
            {
                valid += 1;
                break;
            }
        }
    }
    assert!(
        valid < truth.len(),
        "fee attack succeeded: spliced tx {} is valid at the true amounts {truth:?}",
        hex::encode(serialize(&spliced))
    );
}

/// CVE-2020-14199, the segwit v0 fee attack. One transaction spends two of the key's outputs
/// (0.2 BTC each) and pays out 0.2999 BTC: its true fee, 0.1001 BTC, is over the regtest
/// `max_fee` (0.1 BTC). Request A understates input 1 and request B input 0, so each shows a
/// 10 000 sat fee; were both signed, A's witness for input 0 and B's for input 1 would splice
/// into a valid transaction paying the true fee. Without the previous transactions both are
/// refused (`psbt.missing_prev_tx`); with them, the lie contradicts them (`psbt.utxo_mismatch`).
#[test]
fn fee_attack_cve_2020_14199_refused() {
    let pk = shared().key.public_key.clone().unwrap();
    let spk = key_script(&pk);
    let truth = [20_000_000u64, 20_000_000];
    let honest = psbt(&spk, &truth, 1_000_000, 28_990_000);
    for (keep_prev, code) in [
        (false, "psbt.missing_prev_tx"),
        (true, "psbt.utxo_mismatch"),
    ] {
        let (a, b) = (
            sign(&lying(&honest, 1, 10_000_000, keep_prev)),
            sign(&lying(&honest, 0, 10_000_000, keep_prev)),
        );
        assert_no_splice(&spk, &truth, &[&a.1, &b.1]);
        for (status, v) in [&a, &b] {
            assert_eq!((*status, v["code"].as_str()), (422, Some(code)), "{v}");
            assert!(
                v.get("signatures").is_none() && v.get("signed_tx").is_none(),
                "{v}"
            );
        }
    }
    // Told the truth, the nodes see the fee and refuse it.
    let (status, v) = sign(&honest);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["status"],
        serde_json::to_value(RequestStatus::Denied).unwrap(),
        "{v}"
    );
    assert_eq!(v["error"]["code"], json!("policy.fee.max"), "{v}");
    assert!(v["signed_tx"].is_null(), "{v}");
}
