//! Findings of the security review, checked end to end: what `proto` decodes is what the
//! engine limits.

use policy::{evaluate, EvalContext, Outcome, Policy};
use proto::eth::UnsignedEip1559;

/// Contract calls allowed, no allowlist: only `limit.per_tx` (1000 wei) can stop a creation.
const POLICY: &str = r#"
version = 1
name = "review"

[chains.eth]
id = "ethereum:1"
max_fee = 1_000_000
contract_calls = true

[assets.eth]
chain = "eth"
asset = "native"
per_tx = 1000

[keys.hot]
assets = ["eth"]

[destinations]
require_allowlist = false
"#;

/// RLP of an unsigned integer.
fn rlp_uint(n: u128) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    match &bytes[skip..] {
        [] => vec![0x80],
        [b] if *b < 0x80 => vec![*b],
        rest => [&[0x80 + rest.len() as u8][..], rest].concat(),
    }
}

/// `0x02 || rlp([1, nonce, 1, 10, 100000, "", value, "", []])`: an EIP-1559 contract creation
/// (empty `to`) on mainnet, hand-encoded so that no encoder under test builds it.
fn creation(nonce: u64, value: u128) -> Vec<u8> {
    let fields: Vec<u8> = [
        rlp_uint(1),
        rlp_uint(u128::from(nonce)),
        rlp_uint(1),
        rlp_uint(10),
        rlp_uint(100_000),
        vec![0x80],
        rlp_uint(value),
        vec![0x80],
        vec![0xc0],
    ]
    .concat();
    assert!(fields.len() < 56);
    [&[0x02, 0xc0 + fields.len() as u8][..], &fields].concat()
}

fn ctx() -> EvalContext {
    EvalContext {
        now: 1_000_000,
        request_id: "req-1".into(),
        payload_hash: [7; 32],
        first_seen: 1_000_000,
        frozen: false,
        request_expires_at: None,
    }
}

/// Finding: a contract creation hid its `value` from the intent, so no limit applied to it.
/// Since `[contracts]`, a creation is refused outright (`contract.unknown`: no policy names a
/// contract to deploy), and its value still counts against `limit.per_tx`.
#[test]
fn contract_creation_value_is_limited_by_per_tx() {
    let policy = Policy::from_toml(POLICY, "review.toml").unwrap();
    let sender = [0x5e; 20];
    let decide = |value: u128| {
        let tx = UnsignedEip1559::decode(&creation(3, value)).unwrap();
        let intent = tx.intent("hot", &sender).unwrap();
        evaluate(&intent, &policy, &[], &[], &ctx())
    };
    let over = decide(1_001);
    assert_eq!(
        over.outcome,
        Outcome::Deny {
            rules: vec!["contract.unknown".into(), "limit.per_tx".into()]
        },
        "{over:#?}"
    );
    for value in [1_000, 0] {
        let within = decide(value);
        assert_eq!(
            within.outcome,
            Outcome::Deny {
                rules: vec!["contract.unknown".into()]
            },
            "{within:#?}"
        );
    }
}
