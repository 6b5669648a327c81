//! Settlement contract calls on the real cluster: the devnet policy names the venue's vault
//! (`[contracts.vault]`, `settle` counted as the test token, at most 500 per call). The calldata
//! comes from alloy's `sol!` encoder, which the nodes do not use (they decode with `dyn-abi`
//! from their own policy), and every signature is checked by recovering the sender with alloy
//! (k256), not the nodes' libsecp256k1.

use alloy_primitives::{Address, FixedBytes, U256};
use alloy_sol_types::{sol, SolCall};
use custody_tests::{governance::VAULT, sample};
use serde_json::json;

use crate::common::{rid, shared, KEY};
use crate::signing::{assert_refused, assert_valid_signature, submit};

sol! {
    function settle(bytes32 batch, address to, uint256 amount);
    function approve(address spender, uint256 amount);
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
