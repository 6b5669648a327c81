//! Shared fixtures for the in-module tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ed25519_dalek::SigningKey;
use proto::intent::{Asset, ChainRef, IntentKind, Payment, WithdrawalIntent};

use crate::{evaluate, Decision, EvalContext, HistoryEntry, Policy};

pub const DEST: &str = "0x1111111111111111111111111111111111111111";
pub const OTHER: &str = "0x2222222222222222222222222222222222222222";
pub const NOW: u64 = 1_000_000;

/// A small valid policy: one ethereum and one bitcoin chain, native assets, key `hot`.
pub const BASE: &str = r#"
version = 1
name = "test"

[chains.eth]
id = "ethereum:1"
max_fee = 50

[chains.btc]
id = "bitcoin:mainnet"
max_fee = 10
messages = true

[assets.eth]
chain = "eth"
asset = "native"
per_tx = 1000

[assets.btc]
chain = "btc"
asset = "native"
per_tx = 1000

[keys.hot]
assets = ["eth", "btc"]

[destinations]
require_allowlist = true

[[destinations.allow]]
chain = "eth"
address = "0x1111111111111111111111111111111111111111"
label = "exchange"
added = 1000
"#;

pub fn policy_of(text: &str) -> Policy {
    Policy::from_toml(text, "test.toml").unwrap_or_else(|e| panic!("{}", e.render(text)))
}

pub fn base_policy() -> Policy {
    policy_of(BASE)
}

/// The base policy with TOML appended (array tables and new tables only).
pub fn policy_extra(extra: &str) -> Policy {
    policy_of(&format!("{BASE}\n{extra}\n"))
}

/// The base policy with one text replacement.
pub fn policy_replace(from: &str, to: &str) -> Policy {
    assert!(BASE.contains(from), "{from}");
    policy_of(&BASE.replace(from, to))
}

pub fn intent(amount: u128) -> WithdrawalIntent {
    WithdrawalIntent {
        key_id: "hot".into(),
        account: None,
        chain: ChainRef::Ethereum { chain_id: 1 },
        kind: IntentKind::Transfer,
        asset: Asset::Native,
        payments: vec![Payment {
            destination: DEST.into(),
            amount,
        }],
        change: vec![],
        fee: 10,
        calldata: None,
        typed_data: None,
    }
}

/// The payload hash of [`ctx`]'s request.
pub const PAYLOAD: [u8; 32] = [7; 32];

/// The approval subject of [`ctx`]'s request.
pub fn subject() -> crate::ApprovalSubject<'static> {
    crate::ApprovalSubject {
        request_id: "req-1",
        payload_hash: &PAYLOAD,
    }
}

pub fn ctx() -> EvalContext {
    EvalContext {
        now: NOW,
        request_id: "req-1".into(),
        payload_hash: PAYLOAD,
        first_seen: NOW,
        frozen: false,
        request_expires_at: None,
    }
}

pub fn eval_simple(policy: &Policy, intent: &WithdrawalIntent) -> Decision {
    evaluate(intent, policy, &[], &[], &ctx())
}

pub fn hist(amount: u128, signed_at: u64) -> HistoryEntry {
    HistoryEntry {
        key_id: "hot".into(),
        account: None,
        chain: ChainRef::Ethereum { chain_id: 1 },
        asset: Asset::Native,
        destination: DEST.into(),
        amount,
        signed_at,
    }
}

pub fn signer(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub fn pubhex(n: u8) -> String {
    hex::encode(signer(n).verifying_key().to_bytes())
}

/// The warnings tagged `tag` of the base policy with `extra` appended.
pub fn tagged(extra: &str, tag: &str) -> Vec<crate::PolicyWarning> {
    policy_extra(extra)
        .warnings()
        .iter()
        .filter(|w| w.tag == tag)
        .cloned()
        .collect()
}
