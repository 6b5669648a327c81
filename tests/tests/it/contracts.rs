//! Settlement contract calls on the real cluster: the devnet policy names the venue's vault
//! (`[contracts.vault]`, `settle` counted as the test token, at most 500 per call). The calldata
//! comes from alloy's `sol!` encoder, which the nodes do not use (they decode with `dyn-abi`
//! from their own policy), and every signature is checked by recovering the sender with alloy
//! (k256), not the nodes' libsecp256k1.

use alloy_primitives::{Address, FixedBytes, U256};
use alloy_sol_types::{sol, SolCall};
use custody_tests::{
    governance::{VAULT, VELOCITY_CHAIN, VEL_TOKEN, VEL_VAULT},
    sample,
};
use serde_json::json;

use crate::common::{rid, shared, Shared, KEY};
use crate::signing::{assert_refused, assert_valid_signature, submit};

sol! {
    function settle(bytes32 batch, address to, uint256 amount);
    function approve(address spender, uint256 amount);
    function transfer(address to, uint256 amount);
}

const TOKEN: u128 = 1_000_000_000_000_000_000;

fn to20(hex_addr: &str) -> [u8; 20] {
    hex::decode(hex_addr.trim_start_matches("0x"))
        .unwrap()
        .try_into()
        .unwrap()
}

pub fn settle_data(to: [u8; 20], tokens: u128) -> Vec<u8> {
    settleCall {
        batch: FixedBytes([0x0b; 32]),
        to: Address::from(to),
        amount: U256::from(tokens * TOKEN),
    }
    .abi_encode()
}

fn body(nonce: u64, to: [u8; 20], data: Vec<u8>) -> serde_json::Value {
    json!({"request_id": rid("settle"), "key_id": KEY, "chain": "ethereum",
        "unsigned_tx": sample::eth_tx(nonce, to, 0, data)})
}

#[test]
fn contract_arg_a_settle_under_its_bound_is_signed_and_over_it_refused() {
    let s = shared();
    let r = submit(&s, &body(9001, to20(VAULT), settle_data([0x42; 20], 100)));
    assert_valid_signature(&s, &r);
    // Every node shows the call as it decoded it.
    for (node, v) in &r.verdicts {
        let call = v.call.as_ref().unwrap_or_else(|| panic!("{node}: {v:?}"));
        assert_eq!(call.contract, "vault", "{node}");
        assert_eq!(
            call.function,
            "settle(bytes32 batch, address to, uint256 amount)"
        );
        assert_eq!(call.args[1].value, format!("0x{}", "42".repeat(20)));
        assert_eq!(call.args[2].value, (100 * TOKEN).to_string());
    }
    let r = submit(&s, &body(9002, to20(VAULT), settle_data([0x42; 20], 501)));
    assert_refused(&r, "policy.contract.arg");
    let message = &r.verdicts.values().next().unwrap().message;
    assert!(message.contains("contract.arg"), "{message}");
}

#[test]
fn allowance_unlimited_approve_is_refused_and_a_limited_one_signed() {
    let s = shared();
    let token = to20(custody_tests::governance::TEST_TOKEN);
    let unlimited = approveCall {
        spender: Address::from([0x42; 20]),
        amount: U256::MAX,
    }
    .abi_encode();
    assert_refused(
        &submit(&s, &body(9003, token, unlimited)),
        "policy.allowance.unlimited",
    );
    let limited = approveCall {
        spender: Address::from([0x42; 20]),
        amount: U256::from(10 * TOKEN),
    }
    .abi_encode();
    let r = submit(&s, &body(9004, token, limited));
    assert_valid_signature(&s, &r);
    let call = r.verdicts.values().next().unwrap().call.clone().unwrap();
    let allowance = call.allowance.unwrap();
    assert_eq!(allowance.amount, (10 * TOKEN).to_string());
    assert!(!allowance.unlimited);
}

sol! {
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }
}

/// The EIP-712 signing hash of the sample permit, computed with alloy's static `sol!` types
/// (not the `dyn-abi` typed-data code the nodes run).
fn permit_hash(verifying: [u8; 20], owner: &str, spender: [u8; 20], value: u128) -> [u8; 32] {
    let domain = alloy_sol_types::eip712_domain! {
        name: "Test Token",
        version: "1",
        chain_id: 11_155_111,
        verifying_contract: Address::from(verifying),
    };
    let permit = Permit {
        owner: owner.parse().unwrap(),
        spender: Address::from(spender),
        value: U256::from(value),
        nonce: U256::ZERO,
        deadline: U256::from(4_102_444_800u64),
    };
    alloy_sol_types::SolStruct::eip712_signing_hash(&permit, &domain).0
}

#[test]
fn typed_data_a_permit_is_signed_by_the_key_and_a_foreign_domain_refused() {
    let s = shared();
    let owner = s.key.ethereum_address.clone().unwrap();
    let token = to20(custody_tests::governance::TEST_TOKEN);
    let body = json!({"request_id": rid("permit"), "key_id": KEY, "chain": "ethereum",
        "typed_data": sample::permit_typed_data(token, &owner, [0x42; 20], 7 * TOKEN)});
    let r = submit(&s, &body);
    assert_eq!(r.status, proto::api::RequestStatus::Signed, "{r:?}");
    assert!(r.signed_tx.is_none());
    let sig = r.signature.as_ref().unwrap();
    let word = |h: &str| U256::from_be_slice(&hex::decode(h.trim_start_matches("0x")).unwrap());
    let signature = alloy_primitives::Signature::new(word(&sig.r), word(&sig.s), sig.y_parity == 1);
    let hash = permit_hash(token, &owner, [0x42; 20], 7 * TOKEN);
    let from = signature
        .recover_address_from_prehash(&hash.into())
        .unwrap();
    assert_eq!(
        format!("{from:#x}"),
        owner,
        "the key signed the EIP-712 hash"
    );
    for (node, v) in &r.verdicts {
        let call = v.call.as_ref().unwrap_or_else(|| panic!("{node}: {v:?}"));
        assert_eq!(call.contract, "test-token-permit");
        assert_eq!(
            call.allowance.as_ref().unwrap().amount,
            (7 * TOKEN).to_string()
        );
    }
    // The same permit for another verifying contract: no entry names that domain.
    let body = json!({"request_id": rid("permit"), "key_id": KEY, "chain": "ethereum",
        "typed_data": sample::permit_typed_data([0x77; 20], &owner, [0x42; 20], 7 * TOKEN)});
    assert_refused(&submit(&s, &body), "policy.typed_data.domain");
}

/// `limit.velocity` on the cluster: the `vel-token` window (30 units per 24 hours for
/// `vel-key`) is filled by ERC-20 transfers and `vel-vault` `settle` calls together, each node
/// counting both kinds in the reservations it keeps. 10 by transfer and 15 by settle leave 5:
/// a settle of 10 is refused only if the transfer was counted, a transfer of 10 only if the
/// settle was. Signatures are recovered with alloy (k256) to `vel-key`'s address.
#[test]
fn limit_velocity_window_is_filled_by_transfers_and_settle_calls_together() {
    let s = shared();
    let (st, key) = s.cluster.api.get("/v1/keys/vel-key").unwrap();
    assert_eq!(st, 200, "{key}");
    let address = key["ethereum_address"].as_str().unwrap().to_string();
    let transfer = |nonce: u64, units: u64| {
        let data = transferCall {
            to: Address::from([0x5a; 20]),
            amount: U256::from(units),
        }
        .abi_encode();
        vel_request(nonce, to20(VEL_TOKEN), data)
    };
    let settle = |nonce: u64, units: u64| {
        let data = settleCall {
            batch: FixedBytes([0x0c; 32]),
            to: Address::from([0x5a; 20]),
            amount: U256::from(units),
        }
        .abi_encode();
        vel_request(nonce, to20(VEL_VAULT), data)
    };
    assert_signed_by(&s, &transfer(1, 10), &address);
    let r = assert_signed_by(&s, &settle(2, 15), &address);
    for (node, v) in &r.verdicts {
        let call = v.call.as_ref().unwrap_or_else(|| panic!("{node}: {v:?}"));
        assert_eq!(call.contract, "vel-vault", "{node}");
    }
    assert_refused(&submit(&s, &settle(3, 10)), "policy.limit.velocity");
    assert_refused(&submit(&s, &transfer(4, 10)), "policy.limit.velocity");
    // What is left of the window is still usable, by either kind.
    assert_signed_by(&s, &settle(5, 5), &address);
    assert_refused(&submit(&s, &transfer(6, 1)), "policy.limit.velocity");
}

/// A request of `vel-key` on Hoodi: a call to `to` with `data`.
fn vel_request(nonce: u64, to: [u8; 20], data: Vec<u8>) -> serde_json::Value {
    json!({"request_id": rid("vel-mix"), "key_id": "vel-key", "chain": "ethereum",
        "unsigned_tx": sample::eth_tx_on(VELOCITY_CHAIN, nonce, to, 0, data)})
}

/// Submits `body`, asserts it was signed and that the signed transaction recovers (alloy, k256)
/// to `address`.
fn assert_signed_by(
    s: &Shared,
    body: &serde_json::Value,
    address: &str,
) -> proto::api::SignRequestView {
    use alloy_consensus::{transaction::SignerRecoverable, TxEnvelope};
    use alloy_eips::eip2718::Decodable2718;
    let r = submit(s, body);
    assert_eq!(r.status, proto::api::RequestStatus::Signed, "{r:?}");
    let raw = hex::decode(r.signed_tx.as_deref().unwrap().trim_start_matches("0x")).unwrap();
    let signer = TxEnvelope::decode_2718(&mut raw.as_slice())
        .unwrap()
        .recover_signer()
        .unwrap();
    assert_eq!(format!("{signer:#x}"), address);
    r
}
