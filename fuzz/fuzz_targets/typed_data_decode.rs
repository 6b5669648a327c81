//! EIP-712 typed data: any bytes either decode (and then hash, and are judged by a policy with
//! an EIP-2612 permit entry and Permit2 entries, without a panic) or are refused with `typed_data.malformed`. What decodes
//! has a 66-byte preimage starting with 0x1901, and decodes the same twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::{evaluate, EvalContext, Policy};

const POLICY: &str = r#"
version = 1
[chains.eth]
id = "ethereum:1"
max_fee = 1_000_000
contract_calls = true
[assets.usdc]
chain = "eth"
asset = "erc20:0x3333333333333333333333333333333333333333"
per_tx = 1000
[keys.hot]
assets = ["usdc"]
[destinations]
require_allowlist = false
[typed_data.permit]
chain = "eth"
verifying_contract = "0x3333333333333333333333333333333333333333"
primary_type = "Permit"
permit = "usdc"
fields.deadline = { max = 2_000_000 }
[typed_data.permit2-single]
chain = "eth"
verifying_contract = "0x000000000022d473030f116ddee9f6b43ac78ba3"
primary_type = "PermitSingle"
[typed_data.permit2-batch]
chain = "eth"
verifying_contract = "0x000000000022d473030f116ddee9f6b43ac78ba3"
primary_type = "PermitBatch"
[typed_data.permit2-transfer]
chain = "eth"
verifying_contract = "0x000000000022d473030f116ddee9f6b43ac78ba3"
primary_type = "PermitTransferFrom"
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = proto::typed::decode(data) else {
        return;
    };
    assert_eq!(t.preimage.len(), 66);
    assert_eq!(&t.preimage[..2], &[0x19, 0x01]);
    let again = proto::typed::decode(data).expect("decodes twice");
    assert_eq!(again.preimage, t.preimage);
    static PARSED: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    let policy = PARSED
        .get_or_init(|| Policy::from_toml(POLICY, "fuzz.toml").expect("the fuzz policy is valid"));
    let intent = proto::typed::intent("hot", &t, data);
    let ctx = EvalContext {
        now: 1_000,
        request_id: "fuzz".into(),
        payload_hash: [0; 32],
        first_seen: 1_000,
        frozen: false,
        request_expires_at: None,
    };
    let _ = evaluate(&intent, policy, &[], &[], &ctx);
});
