//! People see what they approve: `policy eval` and `policy approve` print a contract call as
//! every node decodes it with the policy's ABI.

use std::fs;

use alloy_primitives::{Address, FixedBytes, U256};
use alloy_sol_types::{sol, SolCall};

use crate::snapshot::run;

sol! {
    function settle(bytes32 batch, address to, uint256 amount);
}

const POLICY: &str = r#"
version = 1
name = "venue"

[chains.sepolia]
id = "ethereum:11155111"
max_fee = "1_000_000_000_000_000"
contract_calls = true

[assets.usdc]
chain = "sepolia"
asset = "erc20:0x3333333333333333333333333333333333333333"
per_tx = 1000

[keys.hot]
assets = ["usdc"]

[destinations]
require_allowlist = false

[contracts.vault]
chain = "sepolia"
address = "0x4444444444444444444444444444444444444444"

[contracts.vault.functions.settle]
signature = "settle(bytes32 batch, address to, uint256 amount)"
amount = "amount"
asset = "usdc"
recipient = "to"
args.amount = { max = 900 }
"#;

fn calldata(amount: u64) -> String {
    let data = settleCall {
        batch: FixedBytes([0; 32]),
        to: Address::from([0x11; 20]),
        amount: U256::from(amount),
    }
    .abi_encode();
    format!("0x{}", hex::encode(data))
}

#[test]
fn eval_prints_the_decoded_call_and_denies_one_over_its_bound() {
    let dir = std::env::temp_dir().join(format!("policy-cli-calls-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("venue.toml");
    fs::write(&policy, POLICY).unwrap();
    let intent = |amount: u64| {
        let file = dir.join(format!("intent-{amount}.json"));
        let v = serde_json::json!({
            "key_id": "hot", "chain": {"chain": "ethereum", "chain_id": 11155111},
            "kind": "contract_call", "asset": {"type": "native"},
            "payments": [{"destination": "0x4444444444444444444444444444444444444444", "amount": "0"}],
            "fee": "1", "calldata": calldata(amount)
        });
        fs::write(&file, v.to_string()).unwrap();
        file
    };
    let p = policy.to_str().unwrap();
    let ok = intent(500);
    let (code, out, err) = run(&["eval", p, "--intent", ok.to_str().unwrap(), "--now", "1000"]);
    assert_eq!(code, 0, "{out}{err}");
    let line = format!(
        "call     vault.settle(batch=0x{}, to=0x{}, amount=500) at 0x{}",
        "00".repeat(32),
        "11".repeat(20),
        "44".repeat(20)
    );
    assert!(out.contains(&line), "{out}");
    assert!(out.contains("outcome: ALLOW"), "{out}");
    let over = intent(901);
    let (code, out, _) = run(&[
        "eval",
        p,
        "--intent",
        over.to_str().unwrap(),
        "--now",
        "1000",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("amount=901"), "{out}");
    let outcome = out
        .lines()
        .find(|l| l.starts_with("outcome: DENY"))
        .unwrap();
    assert!(outcome.contains("contract.arg"), "{out}");
    let _ = fs::remove_dir_all(&dir);
}
