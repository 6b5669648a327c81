//! Contract calls (`[contracts]`) and allowances, end to end through the public engine: the
//! calldata comes from alloy's `sol!` encoder, which the engine does not use (it decodes with
//! `dyn-abi` from the ABI in the policy).

use alloy_primitives::{Address, FixedBytes, U256};
use alloy_sol_types::{sol, SolCall};
use policy::{counted_intent, evaluate, tags, EvalContext, HistoryEntry, Outcome, Policy, Verdict};
use proto::intent::{Asset, ChainRef, IntentKind, Payment, WithdrawalIntent};

sol! {
    function settle(bytes32 batch, address to, uint256 amount);
    function deposit() payable;
    function multicall(bytes[] data);
    function approve(address spender, uint256 amount);
    function increaseAllowance(address spender, uint256 addedValue);
    function transferFrom(address from, address to, uint256 amount);
}

mod permit2 {
    alloy_sol_types::sol! {
        function approve(address token, address spender, uint160 amount, uint48 expiration);
    }
}

mod safe {
    alloy_sol_types::sol! {
        function execTransaction(address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, bytes signatures) payable returns (bool success);
    }
}

mod nesting {
    alloy_sol_types::sol! {
        function multicall(uint256 deadline, bytes[] data);
    }
}

const USDC: &str = "0x3333333333333333333333333333333333333333";
const VAULT: &str = "0x4444444444444444444444444444444444444444";
const SPENDER: &str = "0x5555555555555555555555555555555555555555";
const EXCHANGE: &str = "0x1111111111111111111111111111111111111111";
const STRANGER: &str = "0x6666666666666666666666666666666666666666";
const PERMIT2: &str = "0x000000000022d473030f116ddee9f6b43ac78ba3";
const NOW: u64 = 1_000_000;

pub const POLICY: &str = r#"
version = 1
name = "venue"

[chains.eth]
id = "ethereum:1"
max_fee = 1_000_000
contract_calls = true

[assets.eth]
chain = "eth"
asset = "native"
per_tx = 1000

[assets.usdc]
chain = "eth"
asset = "erc20:0x3333333333333333333333333333333333333333"
per_tx = 1000
unlimited_spenders = ["0x5555555555555555555555555555555555555555"]

[[assets.usdc.velocity]]
window = "1h"
max = 1500

[keys.hot]
assets = ["eth", "usdc"]

[destinations]
require_allowlist = true

[[destinations.allow]]
chain = "eth"
address = "0x1111111111111111111111111111111111111111"
label = "exchange"

[[destinations.allow]]
chain = "eth"
address = "0x4444444444444444444444444444444444444444"
label = "vault"

[[destinations.allow]]
chain = "eth"
address = "0x5555555555555555555555555555555555555555"
label = "router"

[contracts.vault]
chain = "eth"
address = "0x4444444444444444444444444444444444444444"

[contracts.vault.functions.settle]
signature = "settle(bytes32 batch, address to, uint256 amount)"
amount = "amount"
asset = "usdc"
recipient = "to"
args.to = { allowlisted = true }
args.amount = { max = 900 }
args.batch = { prefix = "0x00" }

[contracts.vault.functions.deposit]
signature = "deposit() payable"

[contracts.vault.functions.multicall]
signature = "multicall(bytes[] data)"
inner = "data"

[contracts.vault.functions.pause]
abi = '{"type":"function","name":"pause","inputs":[],"outputs":[],"stateMutability":"nonpayable"}'

[contracts.safe]
chain = "eth"
address = "0x7777777777777777777777777777777777777777"

[contracts.safe.functions.exec]
signature = "execTransaction(address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas, uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, bytes signatures) payable"
inner = "data"
inner_to = "to"
inner_value = "value"
inner_operation = "operation"
"#;

fn policy() -> Policy {
    Policy::from_toml(POLICY, "venue.toml").unwrap_or_else(|e| panic!("{}", e.render(POLICY)))
}

fn addr(s: &str) -> Address {
    s.parse().unwrap()
}

fn batch(first: u8) -> FixedBytes<32> {
    let mut b = [0x42u8; 32];
    b[0] = first;
    FixedBytes(b)
}

fn settle(to: &str, amount: u64) -> Vec<u8> {
    settleCall {
        batch: batch(0),
        to: addr(to),
        amount: U256::from(amount),
    }
    .abi_encode()
}

fn call(to: &str, value: u128, data: &[u8]) -> WithdrawalIntent {
    WithdrawalIntent {
        key_id: "hot".into(),
        account: None,
        chain: ChainRef::Ethereum { chain_id: 1 },
        kind: IntentKind::ContractCall,
        asset: Asset::Native,
        payments: vec![Payment {
            destination: to.into(),
            amount: value,
        }],
        change: vec![],
        fee: 10,
        calldata: Some(format!("0x{}", hex::encode(data))),
        typed_data: None,
    }
}

fn ctx() -> EvalContext {
    EvalContext {
        now: NOW,
        request_id: "req-1".into(),
        payload_hash: [7; 32],
        first_seen: NOW,
        frozen: false,
        request_expires_at: None,
    }
}

fn judge(i: &WithdrawalIntent) -> policy::Decision {
    evaluate(i, &policy(), &[], &[], &ctx())
}

fn denied_by(d: &policy::Decision) -> Vec<String> {
    match &d.outcome {
        Outcome::Deny { rules } => rules.clone(),
        other => panic!("expected a deny, got {other:?}: {d:#?}"),
    }
}

/// The deny names `tag` (a refused call also leaves its raw destination, the contract or
/// token, to the destination rules).
fn denies(d: &policy::Decision, tag: &str) {
    assert!(denied_by(d).iter().any(|t| t == tag), "{tag}: {d:#?}");
}

fn reason(d: &policy::Decision, tag: &str) -> String {
    d.rule(tag).unwrap().reason.clone()
}

#[test]
fn contract_arg_a_settle_under_its_bound_is_allowed_and_counted_as_usdc_to_its_recipient() {
    let i = call(VAULT, 0, &settle(EXCHANGE, 500));
    let d = judge(&i);
    assert!(d.is_allow(), "{d:#?}");
    let view = d.call.as_ref().unwrap();
    assert_eq!(view.contract, "vault");
    assert_eq!(
        view.function,
        "settle(bytes32 batch, address to, uint256 amount)"
    );
    let args: Vec<(&str, &str)> = view
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(args[1], ("to", EXCHANGE));
    assert_eq!(args[2], ("amount", "500"));
    assert_eq!(d.rule(tags::LIMIT_PER_TX).unwrap().verdict, Verdict::Pass);
    assert!(reason(&d, tags::LIMIT_PER_TX).contains("`usdc`"), "{d:#?}");
    let counted = counted_intent(&i, &policy());
    assert_eq!(
        counted.asset,
        Asset::Erc20 {
            contract: USDC.into()
        }
    );
    assert_eq!(
        counted.payments,
        vec![Payment {
            destination: EXCHANGE.into(),
            amount: 500
        }]
    );
    assert!(
        view.lines()[0].starts_with("vault.settle(batch=0x0042"),
        "{:?}",
        view.lines()
    );
}

#[test]
fn contract_arg_over_its_bound_and_other_constraints_are_refused() {
    let d = judge(&call(VAULT, 0, &settle(EXCHANGE, 901)));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_ARG]);
    assert!(reason(&d, tags::CONTRACT_ARG).contains("`901` is above `900` (`max`)"));
    // The call is still shown as decoded, so people see what was refused.
    assert_eq!(d.call.as_ref().unwrap().args[2].value, "901");
    let d = judge(&call(VAULT, 0, &settle(STRANGER, 5)));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_ARG]);
    assert!(reason(&d, tags::CONTRACT_ARG).contains("not on the allowlist"));
    let wrong_batch = settleCall {
        batch: batch(1),
        to: addr(EXCHANGE),
        amount: U256::from(5),
    }
    .abi_encode();
    let d = judge(&call(VAULT, 0, &wrong_batch));
    assert!(
        reason(&d, tags::CONTRACT_ARG).contains("(`prefix`)"),
        "{d:#?}"
    );
    // Native value to a function that is not payable.
    let d = judge(&call(VAULT, 1, &settle(EXCHANGE, 5)));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_ARG]);
    assert!(reason(&d, tags::CONTRACT_ARG).contains("not payable"));
}

#[test]
fn limit_per_tx_applies_to_a_settle_amount() {
    let text = POLICY.replace(
        "args.amount = { max = 900 }",
        "args.amount = { max = 5000 }",
    );
    let p = Policy::from_toml(&text, "t.toml").unwrap();
    let d = evaluate(
        &call(VAULT, 0, &settle(EXCHANGE, 1200)),
        &p,
        &[],
        &[],
        &ctx(),
    );
    assert_eq!(denied_by(&d), vec![tags::LIMIT_PER_TX]);
}

#[test]
fn limit_velocity_counts_transfers_and_settle_calls_together() {
    let spent = HistoryEntry {
        key_id: "hot".into(),
        account: None,
        chain: ChainRef::Ethereum { chain_id: 1 },
        asset: Asset::Erc20 {
            contract: USDC.into(),
        },
        destination: EXCHANGE.into(),
        amount: 800,
        signed_at: NOW - 60,
    };
    // An earlier settle, as the node's ledger records it (its counted moves).
    let earlier = counted_intent(&call(VAULT, 0, &settle(EXCHANGE, 600)), &policy()).into_owned();
    let settled = HistoryEntry {
        amount: earlier.payments[0].amount,
        destination: earlier.payments[0].destination.clone(),
        asset: earlier.asset.clone(),
        signed_at: NOW - 30,
        ..spent.clone()
    };
    let history = [spent, settled];
    // 800 + 600 + 100 = 1500: at the window's max.
    let d = evaluate(
        &call(VAULT, 0, &settle(EXCHANGE, 100)),
        &policy(),
        &history,
        &[],
        &ctx(),
    );
    assert!(d.is_allow(), "{d:#?}");
    let d = evaluate(
        &call(VAULT, 0, &settle(EXCHANGE, 101)),
        &policy(),
        &history,
        &[],
        &ctx(),
    );
    assert_eq!(denied_by(&d), vec![tags::LIMIT_VELOCITY]);
}

#[test]
fn contract_unknown_and_contract_function_refuse_what_the_policy_does_not_name() {
    let d = judge(&call(STRANGER, 0, &settle(EXCHANGE, 5)));
    assert_eq!(
        denied_by(&d),
        vec![tags::CONTRACT_UNKNOWN, tags::DEST_ALLOW]
    );
    assert!(d.call.is_none());
    let from = transferFromCall {
        from: addr(EXCHANGE),
        to: addr(EXCHANGE),
        amount: U256::from(5),
    }
    .abi_encode();
    let d = judge(&call(VAULT, 0, &from));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_FUNCTION]);
    assert!(reason(&d, tags::CONTRACT_FUNCTION)
        .contains("it allows: deposit, multicall, pause, settle"));
    let d = judge(&call(VAULT, 0, &[0xab, 0xcd]));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_FUNCTION]);
    // A contract creation names no contract.
    let mut create = call(VAULT, 0, &[]);
    create.calldata = None;
    denies(&judge(&create), tags::CONTRACT_UNKNOWN);
    // Another chain: not in the policy at all.
    let mut other = call(VAULT, 0, &settle(EXCHANGE, 5));
    other.chain = ChainRef::Ethereum { chain_id: 5 };
    denies(&judge(&other), tags::CONTRACT_UNKNOWN);
}

#[test]
fn contract_arg_refuses_calldata_that_is_not_the_canonical_encoding() {
    let good = settle(EXCHANGE, 5);
    let mut trailing = good.clone();
    trailing.extend([0u8; 32]);
    let d = judge(&call(VAULT, 0, &trailing));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_ARG]);
    assert!(
        reason(&d, tags::CONTRACT_ARG).contains("32 trailing bytes"),
        "{d:#?}"
    );
    let mut dirty = good.clone();
    dirty[4 + 32] = 0xff; // a high byte of the `to` address word
    let d = judge(&call(VAULT, 0, &dirty));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_ARG]);
    let truncated = &good[..good.len() - 1];
    let d = judge(&call(VAULT, 0, truncated));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_ARG]);
    assert!(
        reason(&d, tags::CONTRACT_ARG).contains("does not decode"),
        "{d:#?}"
    );
}

#[test]
fn a_payable_call_counts_its_native_value() {
    let i = call(VAULT, 700, &depositCall {}.abi_encode());
    let d = judge(&i);
    assert!(d.is_allow(), "{d:#?}");
    assert_eq!(counted_intent(&i, &policy()).payments[0].amount, 700);
    let d = judge(&call(VAULT, 1001, &depositCall {}.abi_encode()));
    assert_eq!(denied_by(&d), vec![tags::LIMIT_PER_TX]);
    // A function given as a JSON ABI fragment.
    let pause = alloy_primitives::keccak256("pause()")[..4].to_vec();
    assert!(judge(&call(VAULT, 0, &pause)).is_allow());
}

#[test]
fn contract_nested_opens_a_multicall_and_judges_every_inner_call() {
    let inner = vec![settle(EXCHANGE, 300).into(), settle(EXCHANGE, 400).into()];
    let i = call(VAULT, 0, &multicallCall { data: inner }.abi_encode());
    let d = judge(&i);
    assert!(d.is_allow(), "{d:#?}");
    assert_eq!(d.call.as_ref().unwrap().inner.len(), 2);
    let counted = counted_intent(&i, &policy());
    let total: u128 = counted.payments.iter().map(|p| p.amount).sum();
    assert_eq!(total, 700);
    // Two calls, each under per_tx, together over it.
    let inner = vec![settle(EXCHANGE, 800).into(), settle(EXCHANGE, 800).into()];
    let d = judge(&call(VAULT, 0, &multicallCall { data: inner }.abi_encode()));
    denies(&d, tags::LIMIT_PER_TX);
    // An inner call the policy refuses.
    let inner = vec![settle(EXCHANGE, 1).into(), settle(STRANGER, 1).into()];
    let d = judge(&call(VAULT, 0, &multicallCall { data: inner }.abi_encode()));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_NESTED]);
    assert!(reason(&d, tags::CONTRACT_NESTED).contains("inner call #1 refused by `contract.arg`"));
    // A multicall inside a multicall.
    let deep = multicallCall {
        data: vec![settle(EXCHANGE, 1).into()],
    }
    .abi_encode();
    let d = judge(&call(
        VAULT,
        0,
        &multicallCall {
            data: vec![deep.into()],
        }
        .abi_encode(),
    ));
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_NESTED]);
    // Native value with a multicall: each inner call could spend it again. Not payable here
    // (`contract.arg`); declared payable, the nesting rule still refuses it.
    let with_value = multicallCall {
        data: vec![depositCall {}.abi_encode().into()],
    }
    .abi_encode();
    assert_eq!(
        denied_by(&judge(&call(VAULT, 5, &with_value))),
        vec![tags::CONTRACT_ARG]
    );
    let text = POLICY.replace(
        "\"multicall(bytes[] data)\"",
        "\"multicall(bytes[] data) payable\"",
    );
    let p = Policy::from_toml(&text, "t.toml").unwrap();
    let d = evaluate(&call(VAULT, 5, &with_value), &p, &[], &[], &ctx());
    denies(&d, tags::CONTRACT_NESTED);
    assert!(reason(&d, tags::CONTRACT_NESTED).contains("each inner call could spend them"));
}

#[test]
fn contract_nested_refuses_a_nesting_function_the_policy_does_not_open() {
    let text = format!(
        "{POLICY}\n[contracts.vault.functions.batch]\nsignature = \"multicall(uint256 deadline, bytes[] data)\"\n"
    );
    let p = Policy::from_toml(&text, "t.toml").unwrap();
    let data = nesting::multicallCall {
        deadline: U256::from(1),
        data: vec![settle(EXCHANGE, 1).into()],
    }
    .abi_encode();
    let d = evaluate(&call(VAULT, 0, &data), &p, &[], &[], &ctx());
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_NESTED]);
    assert!(reason(&d, tags::CONTRACT_NESTED).contains("does not open them"));
}

fn approve(spender: &str, amount: U256) -> Vec<u8> {
    approveCall {
        spender: addr(spender),
        amount,
    }
    .abi_encode()
}

#[test]
fn allowance_unlimited_is_refused_unless_the_token_names_the_spender() {
    let d = judge(&call(USDC, 0, &approve(EXCHANGE, U256::MAX)));
    denies(&d, tags::ALLOWANCE_UNLIMITED);
    assert!(
        d.call
            .as_ref()
            .unwrap()
            .allowance
            .as_ref()
            .unwrap()
            .unlimited
    );
    // 2^128 cannot be counted against any limit: as good as unlimited.
    let d = judge(&call(USDC, 0, &approve(EXCHANGE, U256::from(1) << 128)));
    denies(&d, tags::ALLOWANCE_UNLIMITED);
    // The router is named in `unlimited_spenders`: allowed, counted as 0.
    let i = call(USDC, 0, &approve(SPENDER, U256::MAX));
    assert!(judge(&i).is_allow(), "{:#?}", judge(&i));
    assert_eq!(counted_intent(&i, &policy()).payments[0].amount, 0);
}

#[test]
fn a_limited_allowance_counts_as_a_payment_to_the_spender() {
    let i = call(USDC, 0, &approve(EXCHANGE, U256::from(600)));
    let d = judge(&i);
    assert!(d.is_allow(), "{d:#?}");
    assert_eq!(
        counted_intent(&i, &policy()).payments,
        vec![Payment {
            destination: EXCHANGE.into(),
            amount: 600
        }]
    );
    let d = judge(&call(USDC, 0, &approve(EXCHANGE, U256::from(1001))));
    assert_eq!(denied_by(&d), vec![tags::LIMIT_PER_TX]);
    let d = judge(&call(USDC, 0, &approve(STRANGER, U256::from(1))));
    assert_eq!(denied_by(&d), vec![tags::DEST_ALLOW]);
    let more = increaseAllowanceCall {
        spender: addr(STRANGER),
        addedValue: U256::from(1),
    }
    .abi_encode();
    assert_eq!(
        denied_by(&judge(&call(USDC, 0, &more))),
        vec![tags::DEST_ALLOW]
    );
    // Revoking an allowance moves nothing: allowed for any spender, counted as no payment.
    let revoke = call(USDC, 0, &approve(STRANGER, U256::ZERO));
    assert!(judge(&revoke).is_allow(), "{:#?}", judge(&revoke));
    assert!(counted_intent(&revoke, &policy()).payments.is_empty());
}

#[test]
fn permit2_allowances_are_read_too() {
    let unlimited = permit2::approveCall {
        token: addr(USDC),
        spender: addr(EXCHANGE),
        amount: alloy_primitives::Uint::<160, 3>::MAX,
        expiration: alloy_primitives::Uint::<48, 1>::from(NOW + 3600),
    }
    .abi_encode();
    let d = judge(&call(PERMIT2, 0, &unlimited));
    denies(&d, tags::ALLOWANCE_UNLIMITED);
    assert_eq!(d.call.as_ref().unwrap().contract, "permit2");
    let some = permit2::approveCall {
        token: addr(USDC),
        spender: addr(EXCHANGE),
        amount: alloy_primitives::Uint::<160, 3>::from(20u64),
        expiration: alloy_primitives::Uint::<48, 1>::from(NOW + 3600),
    }
    .abi_encode();
    assert!(judge(&call(PERMIT2, 0, &some)).is_allow());
    // A token the policy does not hold: `scope.asset`.
    let other = permit2::approveCall {
        token: addr(STRANGER),
        spender: addr(EXCHANGE),
        amount: alloy_primitives::Uint::<160, 3>::from(20u64),
        expiration: alloy_primitives::Uint::<48, 1>::from(NOW + 3600),
    }
    .abi_encode();
    assert_eq!(
        denied_by(&judge(&call(PERMIT2, 0, &other))),
        vec![tags::SCOPE_ASSET]
    );
}

#[test]
fn contract_calls_true_allows_nothing_by_itself() {
    let text = POLICY.split("[contracts.vault]").next().unwrap();
    let p = Policy::from_toml(text, "t.toml").unwrap();
    let d = evaluate(&call(VAULT, 0, &settle(EXCHANGE, 5)), &p, &[], &[], &ctx());
    assert_eq!(denied_by(&d), vec![tags::CONTRACT_UNKNOWN]);
    assert_eq!(
        d.rule(tags::SCOPE_CONTRACT_CALL).unwrap().verdict,
        Verdict::Pass
    );
}

#[test]
fn broken_contract_entries_are_parse_errors_with_line_and_column() {
    let cases: [(&str, &str, &str); 9] = [
        ("contract_calls = true\n", "", "which does not allow contract calls"),
        ("signature = \"settle(bytes32 batch, address to, uint256 amount)\"", "signature = \"settle(bytes32 batch, address to, uint256 amount\"", "`signature`:"),
        ("amount = \"amount\"", "amount = \"to\"", "`amount` names `to`, of type `address`"),
        ("args.amount = { max = 900 }", "args.amount = { max = 900 }\nargs.nope = { eq = 1 }", "no parameter `nope`"),
        ("args.amount = { max = 900 }", "args.amount = { max = 900 }\nargs.batch2 = { allowlisted = true }", "no parameter `batch2`"),
        ("args.to = { allowlisted = true }", "args.to = { prefix = \"0x00\" }", "`prefix` applies to bytes and strings"),
        ("args.amount = { max = 900 }", "args.amount = { max = \"lots\" }", "expected an amount"),
        ("asset = \"usdc\"\n", "asset = \"dai\"\n", "no asset `dai` on chain `eth`"),
        ("abi = '{\"type\":\"function\",\"name\":\"pause\",\"inputs\":[],\"outputs\":[],\"stateMutability\":\"nonpayable\"}'", "abi = '{\"name\":1}'", "`abi`: not the JSON ABI"),
    ];
    for (from, to, want) in cases {
        assert!(POLICY.contains(from), "{from}");
        let text = POLICY.replacen(from, to, 1);
        let e = Policy::from_toml(&text, "t.toml").unwrap_err();
        assert!(e.message.contains(want), "{from} -> {to}: {e}");
        assert!(e.line > 1 && e.column >= 1, "{e}");
    }
    // An approve on a token of the policy is built in.
    let text = format!("{POLICY}\n[contracts.usdc]\nchain = \"eth\"\naddress = \"{USDC}\"\nfunctions.approve.signature = \"approve(address spender, uint256 amount)\"\n");
    let e = Policy::from_toml(&text, "t.toml").unwrap_err();
    assert!(e.message.contains("decoded built in"), "{e}");
}

#[test]
fn a_signature_and_its_json_fragment_hash_the_same() {
    let json = r#"abi = '{"type":"function","name":"settle","inputs":[{"name":"batch","type":"bytes32"},{"name":"to","type":"address"},{"name":"amount","type":"uint256"}],"outputs":[],"stateMutability":"nonpayable"}'"#;
    let text = POLICY.replace(
        "signature = \"settle(bytes32 batch, address to, uint256 amount)\"",
        json,
    );
    let a = Policy::from_toml(&text, "a.toml").unwrap();
    assert_eq!(a.hash(), policy().hash());
    let text = POLICY.replace("args.amount = { max = 900 }", "args.amount = { max = 901 }");
    assert_ne!(
        Policy::from_toml(&text, "b.toml").unwrap().hash(),
        policy().hash()
    );
}

const SAFE: &str = "0x7777777777777777777777777777777777777777";

fn exec(to: &str, value: u64, data: Vec<u8>, operation: u8) -> Vec<u8> {
    safe::execTransactionCall {
        to: addr(to),
        value: U256::from(value),
        data: data.into(),
        operation,
        safeTxGas: U256::ZERO,
        baseGas: U256::ZERO,
        gasPrice: U256::ZERO,
        gasToken: Address::ZERO,
        refundReceiver: Address::ZERO,
        signatures: vec![1u8; 65].into(),
    }
    .abi_encode()
}

#[test]
fn contract_nested_opens_a_safe_transaction_to_a_named_contract_only() {
    let i = call(SAFE, 0, &exec(VAULT, 0, settle(EXCHANGE, 300), 0));
    let d = judge(&i);
    assert!(d.is_allow(), "{d:#?}");
    assert_eq!(d.call.as_ref().unwrap().inner[0].contract, "vault");
    assert_eq!(
        counted_intent(&i, &policy()).payments,
        vec![Payment {
            destination: EXCHANGE.into(),
            amount: 300
        }]
    );
    // The inner call is judged by the vault's own constraints.
    let d = judge(&call(SAFE, 0, &exec(VAULT, 0, settle(EXCHANGE, 901), 0)));
    denies(&d, tags::CONTRACT_NESTED);
    assert!(
        reason(&d, tags::CONTRACT_NESTED).contains("`contract.arg`"),
        "{d:#?}"
    );
    // A DELEGATECALL would run the inner code as the Safe itself.
    let d = judge(&call(SAFE, 0, &exec(VAULT, 0, settle(EXCHANGE, 3), 1)));
    denies(&d, tags::CONTRACT_NESTED);
    assert!(reason(&d, tags::CONTRACT_NESTED).contains("delegatecall"));
    // To a contract the policy does not name.
    let d = judge(&call(SAFE, 0, &exec(STRANGER, 0, settle(EXCHANGE, 3), 0)));
    denies(&d, tags::CONTRACT_NESTED);
    // Value to the vault's payable deposit is counted as the chain's coin.
    let i = call(SAFE, 0, &exec(VAULT, 400, depositCall {}.abi_encode(), 0));
    assert!(judge(&i).is_allow(), "{:#?}", judge(&i));
    assert_eq!(counted_intent(&i, &policy()).payments[0].amount, 400);
    assert_eq!(counted_intent(&i, &policy()).asset, Asset::Native);
}
