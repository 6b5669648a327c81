//! Segregated accounts, end to end: keys derived by every node match an independent BIP-32
//! implementation (the `bitcoin` crate) from the key's xpub; an account signs only its own
//! coins, under its child key and not the master key; each account has its own velocity
//! ledger; nodes refuse foreign inputs and presignatures for derived keys themselves; and a
//! proof-of-reserves report verifies offline.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use bitcoin::{
    bip32::{ChainCode, ChildNumber, Xpub},
    psbt::Psbt,
    CompressedPublicKey, ScriptBuf,
};
use custody_tests::{governance::VELOCITY_CHAIN, sample};
use proto::{
    api::{AccountView, KeyInfo, RequestStatus, ReservesView, SignRequestView},
    btc::{Network, UnsignedPsbt},
    payload::SignPayload,
    wire::SessionKind,
};
use serde_json::{json, Value};

use crate::{
    agreement::rogue_pair,
    common::{exclusive, rid, shared, Shared},
    messages::set_message_scope,
    presign::{results, start_for},
};

const KEY: &str = "acct-key";
const FLAGS: u32 = bitcoinconsensus::VERIFY_P2SH | bitcoinconsensus::VERIFY_WITNESS;

fn key_info(s: &Shared) -> KeyInfo {
    let (st, v) = s.cluster.api.get(&format!("/v1/keys/{KEY}")).unwrap();
    assert_eq!(st, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

/// Creates (or fetches) an account; every node must have registered it.
fn account(s: &Shared, name: &str) -> AccountView {
    let (st, v) = s
        .cluster
        .api
        .post(
            &format!("/v1/keys/{KEY}/accounts"),
            &json!({ "name": name }),
        )
        .unwrap();
    assert!(st == 201 || st == 200, "{st} {v}");
    let view: AccountView = serde_json::from_value(v).unwrap();
    assert_eq!(view.status, "ready", "{view:?}");
    view
}

fn master(info: &KeyInfo) -> Xpub {
    let pk = hex::decode(info.public_key.as_deref().unwrap()).unwrap();
    let cc: [u8; 32] = hex::decode(info.chain_code.as_deref().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    Xpub {
        network: bitcoin::NetworkKind::Main,
        depth: 0,
        parent_fingerprint: Default::default(),
        child_number: ChildNumber::from_normal_idx(0).unwrap(),
        public_key: bitcoin::secp256k1::PublicKey::from_slice(&pk).unwrap(),
        chain_code: ChainCode::from(cc),
    }
}

fn derive(x: &Xpub, path: &[u32]) -> Xpub {
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let path: Vec<ChildNumber> = path
        .iter()
        .map(|i| ChildNumber::from_normal_idx(*i).unwrap())
        .collect();
    x.derive_pub(&secp, &path).unwrap()
}

fn eth_address(pk: &bitcoin::secp256k1::PublicKey) -> String {
    let raw = pk.serialize_uncompressed();
    let a = alloy_primitives::Address::from_raw_public_key(&raw[1..]);
    format!("{a:#x}")
}

fn script(a: &AccountView, i: usize) -> ScriptBuf {
    let pk = hex::decode(&a.addresses[i].public_key).unwrap();
    ScriptBuf::new_p2wpkh(&CompressedPublicKey::from_slice(&pk).unwrap().wpubkey_hash())
}

fn submit(s: &Shared, body: &Value) -> (u16, Value) {
    s.cluster.api.post("/v1/sign-requests", body).unwrap()
}

fn signed(s: &Shared, body: &Value) -> SignRequestView {
    let (st, v) = submit(s, body);
    assert_eq!(st, 202, "{v}");
    let id = body["request_id"].as_str().unwrap();
    s.cluster
        .wait_request(id, Duration::from_secs(180))
        .unwrap()
}

fn psbt_body(account: Option<&str>, p: &Psbt) -> Value {
    let mut b = json!({"request_id": rid("acct"), "key_id": KEY, "chain": "bitcoin",
        "network": "regtest", "psbt": p.to_string()});
    if let Some(a) = account {
        b["account"] = json!(a);
    }
    b
}

fn arr(h: &str) -> [u8; 32] {
    hex::decode(h.trim_start_matches("0x"))
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn account_keys_match_bip32_from_the_xpub_and_accounts_sign_only_their_own_coins() {
    let s = shared();
    let info = key_info(&s);
    let m = master(&info);
    let accts: Vec<AccountView> = ["acct-a", "acct-b", "acct-c"]
        .iter()
        .map(|n| account(&s, n))
        .collect();
    let mut numbers: Vec<u32> = accts.iter().map(|a| a.index).collect();
    // `dedup` drops only adjacent repeats: sort first, or [0, 1, 0] would pass.
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 3, "distinct account numbers: {numbers:?}");
    assert_eq!(
        account(&s, "acct-a"),
        accts[0],
        "creating again returns the account"
    );
    for a in &accts {
        assert_eq!(a.nodes.len(), 3, "every node derived it: {a:?}");
        let x = derive(&m, &[a.index]);
        assert_eq!(
            a.public_key.as_deref(),
            Some(x.public_key.to_string().as_str())
        );
        assert_eq!(
            a.chain_code.as_deref(),
            Some(hex::encode(x.chain_code.as_bytes()).as_str())
        );
        assert_eq!(a.addresses.len(), 8);
        for addr in &a.addresses {
            let child = derive(&m, &[a.index, addr.index]);
            assert_eq!(addr.public_key, child.public_key.to_string());
            assert_eq!(addr.path, format!("m/{}/{}", a.index, addr.index));
            let cpk = CompressedPublicKey(child.public_key);
            let want = bitcoin::Address::p2wpkh(&cpk, bitcoin::Network::Regtest).to_string();
            assert_eq!(addr.bitcoin["regtest"], want);
            assert_eq!(addr.ethereum_address, eth_address(&child.public_key));
        }
        assert_ne!(a.ethereum_address, info.ethereum_address);
    }
    let (a, b) = (&accts[0], &accts[1]);

    // Account A spends two of its addresses, with change to a third: signed under the child keys.
    let amounts = [40_000u64, 30_000];
    let (s0, s1, s2) = (script(a, 0), script(a, 1), script(a, 2));
    let p = sample::btc_psbt_from(
        &[(s0.as_bytes(), amounts[0]), (s1.as_bytes(), amounts[1])],
        50_000,
        s2.as_bytes(),
        19_000,
    );
    let v = signed(&s, &psbt_body(Some("acct-a"), &p));
    assert_eq!(v.status, RequestStatus::Signed, "{v:?}");
    assert_eq!(v.presigned, 0, "derived keys never sign from presignatures");
    let raw = hex::decode(v.signed_tx.as_deref().unwrap()).unwrap();
    for (i, (spk, sat)) in [(&s0, amounts[0]), (&s1, amounts[1])]
        .into_iter()
        .enumerate()
    {
        bitcoinconsensus::verify_with_flags(spk.as_bytes(), sat, &raw, None, i, FLAGS)
            .unwrap_or_else(|e| panic!("input {i}: {e:?}"));
    }
    let keys: Vec<[u8; 33]> = a
        .addresses
        .iter()
        .map(|x| hex::decode(&x.public_key).unwrap().try_into().unwrap())
        .collect();
    let decoded =
        UnsignedPsbt::decode_for(&p.serialize(), Network::Regtest, &keys, Some("acct-a")).unwrap();
    let master_pk: [u8; 33] = hex::decode(info.public_key.as_deref().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sig = &v.signatures[0];
    let sighash = decoded.sighash(0).unwrap();
    assert!(proto::sig::verify(&keys[0], &sighash, &arr(&sig.r), &arr(&sig.s)).is_ok());
    assert!(
        proto::sig::verify(&master_pk, &sighash, &arr(&sig.r), &arr(&sig.s)).is_err(),
        "the signature must not verify under the master key"
    );

    // Mixing an input of account B into account A's spend is refused, as is an unknown account.
    let sb = script(b, 0);
    let mixed = sample::btc_psbt_from(
        &[(s0.as_bytes(), 10_000), (sb.as_bytes(), 10_000)],
        15_000,
        s2.as_bytes(),
        4_000,
    );
    let (st, e) = submit(&s, &psbt_body(Some("acct-a"), &mixed));
    assert_eq!(
        (st, e["code"].as_str()),
        (422, Some("account.input_not_owned")),
        "{e}"
    );
    let (st, e) = submit(&s, &psbt_body(None, &mixed));
    assert_eq!(
        (st, e["code"].as_str()),
        (422, Some("psbt.input_not_owned")),
        "{e}"
    );
    let (st, e) = submit(&s, &psbt_body(Some("acct-zz"), &p));
    assert_eq!(
        (st, e["code"].as_str()),
        (404, Some("account.not_found")),
        "{e}"
    );

    // An Ethereum transaction of account B is sent from B's address, not the master's.
    let body = json!({"request_id": rid("acct-eth"), "key_id": KEY, "chain": "ethereum",
        "account": "acct-b", "unsigned_tx": sample::eth_tx_on(11_155_111, 0, [0x5a; 20], 1000, vec![])});
    let v = signed(&s, &body);
    assert_eq!(v.status, RequestStatus::Signed, "{v:?}");
    let raw = hex::decode(v.signed_tx.unwrap().trim_start_matches("0x")).unwrap();
    let env = <alloy_consensus::TxEnvelope as alloy_eips::eip2718::Decodable2718>::decode_2718(
        &mut raw.as_slice(),
    )
    .unwrap();
    let from = alloy_consensus::transaction::SignerRecoverable::recover_signer(&env).unwrap();
    assert_eq!(Some(format!("{from:#x}")), b.ethereum_address);
}

/// A transfer with a nonce of its own (nodes refuse one transaction under two request ids).
fn transfer(account: Option<&str>, wei: u128) -> Value {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NONCE: AtomicU64 = AtomicU64::new(1);
    let nonce = NONCE.fetch_add(1, Ordering::SeqCst);
    let mut b = json!({"request_id": rid("acct-vel"), "key_id": KEY, "chain": "ethereum",
        "unsigned_tx": sample::eth_tx_on(VELOCITY_CHAIN, nonce, [0x5a; 20], wei, vec![])});
    if let Some(a) = account {
        b["account"] = json!(a);
    }
    b
}

/// `limit.velocity`: at most 30 wei per 24 h on Hoodi, counted per account's own ledger.
#[test]
fn limit_velocity_is_per_account_ledger() {
    let s = shared();
    for n in ["vel-a", "vel-b"] {
        account(&s, n);
    }
    assert_eq!(
        signed(&s, &transfer(Some("vel-a"), 20)).status,
        RequestStatus::Signed
    );
    let v = signed(&s, &transfer(Some("vel-a"), 20));
    assert_eq!(v.status, RequestStatus::Denied, "{v:?}");
    assert_eq!(v.error.unwrap().code, "policy.limit.velocity");
    let v = signed(&s, &transfer(Some("vel-b"), 20));
    assert_eq!(
        v.status,
        RequestStatus::Signed,
        "account B has its own allowance: {v:?}"
    );
    let v = signed(&s, &transfer(None, 20));
    assert_eq!(
        v.status,
        RequestStatus::Signed,
        "and so has the master key: {v:?}"
    );
}

/// `limit.per_tx` from the policy's `default` account class: 0.01 BTC per withdrawal of any
/// account, while the master key keeps the asset's own limit.
#[test]
fn limit_per_tx_of_the_default_account_class_holds_for_accounts() {
    let s = shared();
    let a = account(&s, "class-a");
    let (s0, s1) = (script(&a, 0), script(&a, 1));
    let big = sample::btc_psbt_from(
        &[(s0.as_bytes(), 2_000_000)],
        1_000_001,
        s1.as_bytes(),
        990_000,
    );
    let v = signed(&s, &psbt_body(Some("class-a"), &big));
    assert_eq!(v.status, RequestStatus::Denied, "{v:?}");
    assert_eq!(v.error.unwrap().code, "policy.limit.per_tx");
    let ok = sample::btc_psbt_from(
        &[(s0.as_bytes(), 2_000_000)],
        1_000_000,
        s1.as_bytes(),
        990_000,
    );
    let v = signed(&s, &psbt_body(Some("class-a"), &ok));
    assert_eq!(
        v.status,
        RequestStatus::Signed,
        "exactly the limit passes: {v:?}"
    );
}

fn account_sign(account: &str, payload: SignPayload, presig: Option<[u8; 32]>) -> SessionKind {
    SessionKind::Sign {
        request_id: rid("rogue-acct"),
        payload,
        part: 0,
        approvals: vec![],
        presignature: presig,
        account: Some(account.into()),
    }
}

/// A coordinator that skips its own checks still gets nothing: each node checks ownership
/// with its own registry, refuses unknown accounts and never uses a presignature for them.
#[test]
fn nodes_check_account_ownership_themselves() {
    let mut s = exclusive();
    let (a, b) = (account(&s, "acct-a"), account(&s, "acct-b"));
    let mixed = sample::btc_psbt_from(
        &[
            (script(&a, 0).as_bytes(), 10_000),
            (script(&b, 0).as_bytes(), 10_000),
        ],
        15_000,
        script(&a, 1).as_bytes(),
        4_000,
    );
    let own = sample::btc_psbt_from(
        &[(script(&a, 0).as_bytes(), 10_000)],
        5_000,
        script(&a, 1).as_bytes(),
        4_000,
    );
    let btc = |p: &Psbt| SignPayload::BtcPsbt {
        network: "regtest".into(),
        psbt: p.serialize(),
    };
    let (rogue, _children, _) = rogue_pair(&mut s);
    let cases = [
        (
            account_sign("acct-a", btc(&mixed), None),
            "account.input_not_owned",
        ),
        (
            account_sign("acct-a", btc(&own), Some([7; 32])),
            "presig.hd_forbidden",
        ),
        (
            account_sign("acct-zz", btc(&own), None),
            "account.not_found",
        ),
    ];
    for (kind, code) in cases {
        let sid = start_for(&rogue, KEY, kind);
        let got = results(&rogue, sid);
        assert_eq!(got, vec![Err(code.to_string()), Err(code.to_string())]);
    }
}

#[test]
fn proof_of_reserves_report_verifies_offline() {
    let mut s = exclusive();
    for n in ["acct-a", "acct-b", "acct-c"] {
        account(&s, n);
    }
    set_message_scope(&mut s, true);
    let body = json!({"report_id": rid("por").replace(':', "-"), "accounts": ["acct-a", "acct-b", "acct-c"],
        "statement": "reserves as of regtest block 100, auditor nonce 42",
        "bitcoin_network": "regtest", "bitcoin_addresses": 1});
    let path = format!("/v1/keys/{KEY}/reserves");
    for (bad, want) in [
        (json!({"accounts": ["acct-zz"]}), (404, "account.not_found")),
        (
            json!({"statement": "two\nlines"}),
            (422, "reserves.invalid"),
        ),
        (json!({"bitcoin_addresses": 9}), (422, "reserves.invalid")),
        (json!({"report_id": "bad id!"}), (422, "reserves.invalid")),
    ] {
        let mut b = body.clone();
        for (k, v) in bad.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (st, v) = s.cluster.api.post(&path, &b).unwrap();
        assert_eq!((st, v["code"].as_str().unwrap()), want, "{v}");
    }
    let (st, v) = s.cluster.api.post(&path, &body).unwrap();
    assert_eq!(st, 202, "{v}");
    let id = body["report_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let view = loop {
        let (_, v) = s.cluster.api.get(&format!("{path}/{id}")).unwrap();
        let view: ReservesView = serde_json::from_value(v).unwrap();
        if view.status != "signing" {
            break view;
        }
        assert!(Instant::now() < deadline, "report not done: {view:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    set_message_scope(&mut s, false);
    assert_eq!(view.status, "complete", "{view:?}");
    let report = view.report.unwrap();
    assert_eq!((report.entries.len(), view.total), (6, 6));
    assert_eq!(proto::reserves::verify(&report), Ok(6));
    // Independent checks: alloy recovers each Ethereum signer; Bitcoin Core's interpreter runs
    // each BIP-322 `to_sign`.
    for e in &report.entries {
        if e.chain == "ethereum" {
            let sig = hex::decode(
                e.eip191_signature
                    .as_deref()
                    .unwrap()
                    .trim_start_matches("0x"),
            )
            .unwrap();
            let b32 = |b: &[u8]| alloy_primitives::U256::from_be_slice(b);
            let sig =
                alloy_primitives::Signature::new(b32(&sig[..32]), b32(&sig[32..64]), sig[64] == 28);
            let from = sig.recover_address_from_msg(e.message.as_bytes()).unwrap();
            assert_eq!(format!("{from:#x}"), e.address);
        } else {
            let pk: [u8; 33] = hex::decode(&e.public_key).unwrap().try_into().unwrap();
            let (r, sig_s, _) =
                proto::message::parse_bip322_simple(e.bip322_signature.as_deref().unwrap())
                    .unwrap();
            let tx = proto::message::bip322_to_sign(e.message.as_bytes(), &pk)
                .unwrap()
                .signed_to_sign(&r, &sig_s)
                .unwrap();
            let spk = proto::btc::p2wpkh_script(&pk).unwrap();
            bitcoinconsensus::verify_with_flags(&spk, 0, &tx, None, 0, FLAGS).unwrap();
            // The address is the P2WPKH address of that key on the report's network (regtest),
            // derived independently by the `bitcoin` crate; merely parsing proves nothing.
            assert_eq!(e.chain, "regtest", "{e:?}");
            let cpk = CompressedPublicKey::from_slice(&pk).unwrap();
            let want = bitcoin::Address::p2wpkh(&cpk, bitcoin::Network::Regtest);
            let parsed = bitcoin::Address::from_str(&e.address)
                .unwrap()
                .require_network(bitcoin::Network::Regtest)
                .unwrap();
            assert_eq!(parsed, want, "{e:?}");
            assert_eq!(e.address, want.to_string(), "{e:?}");
        }
    }
    // A forged report fails: another account's address swapped in, or a changed statement.
    let mut forged = report.clone();
    forged.entries[0].address = report.entries[2].address.clone();
    assert!(proto::reserves::verify(&forged).is_err());
    let mut forged = report.clone();
    forged.statement.push('!');
    assert!(proto::reserves::verify(&forged).is_err());
    // The same report id with the same body is the same report.
    let (st, v) = s.cluster.api.post(&path, &body).unwrap();
    assert_eq!((st, v["status"].as_str()), (200, Some("complete")), "{v}");
}
