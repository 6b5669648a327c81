//! Contract-call calldata: any bytes sent to the policy's vault (or as an ERC-20 allowance to
//! its token, or to Permit2) are judged without a panic. A call the engine allows decoded
//! canonically: its decision names the call, and the moves it counts are what it judged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::{counted_intent, evaluate, EvalContext, Policy};
use proto::intent::{Asset, ChainRef, IntentKind, Payment, WithdrawalIntent};

const POLICY: &str = r#"
version = 1
[chains.eth]
id = "ethereum:1"
max_fee = 1_000_000
contract_calls = true
[assets.usdc]
chain = "eth"
asset = "erc20:0x3333333333333333333333333333333333333333"
per_tx = "1_000_000_000_000"
[keys.hot]
assets = ["usdc"]
[destinations]
require_allowlist = false
[contracts.vault]
chain = "eth"
address = "0x4444444444444444444444444444444444444444"
[contracts.vault.functions.settle]
signature = "settle(bytes32 batch, address to, uint256 amount)"
amount = "amount"
asset = "usdc"
recipient = "to"
[contracts.vault.functions.multicall]
signature = "multicall(bytes[] data)"
inner = "data"
[contracts.vault.functions.order]
signature = "order((address,uint256[],string) o, bytes32[2] salts)"
"#;

const TARGETS: [&str; 3] = [
    "0x4444444444444444444444444444444444444444",
    "0x3333333333333333333333333333333333333333",
    "0x000000000022d473030f116ddee9f6b43ac78ba3",
];

fuzz_target!(|data: &[u8]| {
    let Some((pick, calldata)) = data.split_first() else {
        return;
    };
    static PARSED: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    let policy = PARSED
        .get_or_init(|| Policy::from_toml(POLICY, "fuzz.toml").expect("the fuzz policy is valid"));
    let intent = WithdrawalIntent {
        key_id: "hot".into(),
        account: None,
        chain: ChainRef::Ethereum { chain_id: 1 },
        kind: IntentKind::ContractCall,
        asset: Asset::Native,
        payments: vec![Payment {
            destination: TARGETS[usize::from(*pick) % TARGETS.len()].into(),
            amount: 0,
        }],
        change: vec![],
        fee: 1,
        calldata: Some(format!("0x{}", hex::encode(calldata))),
        typed_data: None,
    };
    let ctx = EvalContext {
        now: 1_000,
        request_id: "fuzz".into(),
        payload_hash: [0; 32],
        first_seen: 1_000,
        frozen: false,
        request_expires_at: None,
    };
    let d = evaluate(&intent, policy, &[], &[], &ctx);
    if d.is_allow() {
        let call = d.call.as_ref().expect("an allowed call was decoded");
        assert!(!call.function.is_empty());
        let counted = counted_intent(&intent, policy);
        assert!(counted
            .payments
            .iter()
            .all(|p| p.amount <= 1_000_000_000_000));
    }
});
