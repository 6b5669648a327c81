//! Proof-of-reserves messages: refused by nodes whose message scope is off (the default), and,
//! once every node enables it, signed as EIP-191 (recovers to the key's address) and as BIP-322
//! simple (the `to_sign` transaction passes Bitcoin Core's script interpreter).

use proto::api::{RequestStatus, SignRequestView};
use serde_json::json;

use crate::common::{edit_node_config, exclusive, rid, Shared, KEY};

const MSG: &str = "proof of reserves: acme custody, 2026-11-24, nonce 7f3a";

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
    let mut body = json!({"request_id": rid("msg"), "key_id": KEY, "chain": chain, "message": MSG});
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
    assert_eq!(refused.error.unwrap().code, "policy.scope.message");
    assert!(refused.signature.is_none());

    set_message_scope(&mut s, true);
    let eth = sign_message(&s, "ethereum");
    let sig = eth.signature.clone().unwrap_or_else(|| panic!("{eth:?}"));
    let b32 = |h: &str| {
        alloy_primitives::U256::from_be_slice(&hex::decode(h.trim_start_matches("0x")).unwrap())
    };
    let recovered = alloy_primitives::Signature::new(b32(&sig.r), b32(&sig.s), sig.y_parity == 1)
        .recover_address_from_msg(MSG.as_bytes())
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
    let to_sign = proto::message::bip322_to_sign(MSG.as_bytes(), &pk)
        .unwrap()
        .signed_to_sign(&arr(&sig.r), &arr(&sig.s))
        .unwrap();
    let spk = proto::btc::p2wpkh_script(&pk).unwrap();
    let flags = bitcoinconsensus::VERIFY_P2SH | bitcoinconsensus::VERIFY_WITNESS;
    bitcoinconsensus::verify_with_flags(&spk, 0, &to_sign, None, 0, flags).unwrap();

    set_message_scope(&mut s, false);
}
