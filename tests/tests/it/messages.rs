//! Proof-of-reserves messages: refused by nodes whose message scope is off (the default), and,
//! once every node enables it, signed as EIP-191 (recovers to the key's address) and as BIP-322
//! simple (the `to_sign` transaction passes Bitcoin Core's script interpreter).

use proto::api::{RequestStatus, SignRequestView};
use serde_json::json;

use crate::common::{edit_node_config, exclusive, rid, Shared, KEY};

/// The attestation text the key's own address on `chain` signs (nodes sign no other message).
fn attestation(s: &Shared, chain: &str) -> String {
    let address = match chain {
        "ethereum" => s.key.ethereum_address.clone().unwrap(),
        _ => s.key.bitcoin.as_ref().unwrap()["regtest"].clone(),
    };
    let chain = if chain == "ethereum" {
        chain
    } else {
        "regtest"
    };
    proto::reserves::attestation(
        KEY,
        "master",
        chain,
        &address,
        "acme custody, 2026-11-24, nonce 7f3a",
    )
}

pub(crate) fn set_message_scope(s: &mut Shared, on: bool) {
    let (from, to) = match on {
        true => ("messages = false", "messages = true"),
        false => ("messages = true", "messages = false"),
    };
    for i in 0..s.cluster.layout.nodes.len() {
        edit_node_config(s, i, |text| {
            assert!(text.contains(from), "{text}");
            text.replace(from, to)
        });
    }
}

fn sign_message(s: &Shared, chain: &str) -> SignRequestView {
    let msg = attestation(s, chain);
    let mut body = json!({"request_id": rid("msg"), "key_id": KEY, "chain": chain, "message": msg});
    if chain == "bitcoin" {
        body["network"] = json!("regtest");
    }
    crate::signing::submit(s, &body)
}

#[test]
fn messages_need_the_message_scope_then_sign_as_eip191_and_bip322() {
    let mut s = exclusive();
    let refused = sign_message(&s, "ethereum");
    assert_eq!(refused.status, RequestStatus::Denied);
    assert_eq!(refused.error.unwrap().code, "node.scope.message");
    assert!(refused.signature.is_none());

    set_message_scope(&mut s, true);
    let eth = sign_message(&s, "ethereum");
    let sig = eth.signature.clone().unwrap_or_else(|| panic!("{eth:?}"));
    let b32 = |h: &str| {
        alloy_primitives::U256::from_be_slice(&hex::decode(h.trim_start_matches("0x")).unwrap())
    };
    let recovered = alloy_primitives::Signature::new(b32(&sig.r), b32(&sig.s), sig.y_parity == 1)
        .recover_address_from_msg(attestation(&s, "ethereum").as_bytes())
        .unwrap();
    assert_eq!(
        format!("{recovered:#x}"),
        s.key.ethereum_address.clone().unwrap()
    );

    let btc = sign_message(&s, "bitcoin");
    assert_eq!(btc.status, RequestStatus::Signed, "{btc:?}");
    assert!(btc
        .bip322_signature
        .as_deref()
        .is_some_and(|b| !b.is_empty()));
    let pk: [u8; 33] = hex::decode(s.key.public_key.as_deref().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sig = btc.signature.unwrap();
    let arr = |h: &str| -> [u8; 32] {
        hex::decode(h.trim_start_matches("0x"))
            .unwrap()
            .try_into()
            .unwrap()
    };
    let to_sign = proto::message::bip322_to_sign(attestation(&s, "bitcoin").as_bytes(), &pk)
        .unwrap()
        .signed_to_sign(&arr(&sig.r), &arr(&sig.s))
        .unwrap();
    let spk = proto::btc::p2wpkh_script(&pk).unwrap();
    let flags = bitcoinconsensus::VERIFY_P2SH | bitcoinconsensus::VERIFY_WITNESS;
    bitcoinconsensus::verify_with_flags(&spk, 0, &to_sign, None, 0, flags).unwrap();

    set_message_scope(&mut s, false);
}

/// Review finding: with the message scope on, any holder of a token got an EIP-191 or BIP-322
/// signature over arbitrary content (a 32-byte hash, a free text). Only attestation texts for
/// the signing key's own address are signed; anything else is `message.format`, refused by
/// the coordinator before any session.
#[test]
fn message_format_arbitrary_content_refused() {
    let mut s = exclusive();
    set_message_scope(&mut s, true);
    let other = attestation(&s, "ethereum").replace(
        s.key.ethereum_address.as_deref().unwrap(),
        "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf",
    );
    let cases = [
        ("ethereum", hex::encode([0xab; 32])),
        ("ethereum", format!("0x{}", hex::encode([0xab; 32]))),
        ("bitcoin", hex::encode([0xab; 32])),
        (
            "ethereum",
            "proof of reserves: acme custody, 2026-11-24".to_string(),
        ),
        ("bitcoin", "I agree to the terms".to_string()),
        ("ethereum", other),
        ("bitcoin", attestation(&s, "ethereum")),
    ];
    let mut outcomes = Vec::new();
    for (chain, msg) in &cases {
        let id = rid("msg-fmt");
        let mut body = json!({"request_id": id, "key_id": KEY, "chain": chain, "message": msg});
        if *chain == "bitcoin" {
            body["network"] = json!("regtest");
        }
        let (status, v) = s.cluster.api.post("/v1/sign-requests", &body).unwrap();
        let outcome = match status {
            202 => {
                let r = s
                    .cluster
                    .wait_request(&id, std::time::Duration::from_secs(120))
                    .unwrap();
                (status, format!("{:?}", r.status), r.signature.is_some())
            }
            _ => (
                status,
                v["code"].as_str().unwrap_or_default().to_string(),
                false,
            ),
        };
        outcomes.push((chain, msg.clone(), outcome));
    }
    set_message_scope(&mut s, false);
    for (chain, msg, outcome) in outcomes {
        assert_eq!(
            outcome,
            (422, "message.format".to_string(), false),
            "{chain}: {msg:?}"
        );
    }
}
