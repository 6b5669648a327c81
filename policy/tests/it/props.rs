//! Property tests of the engine.

use ed25519_dalek::SigningKey;
use policy::{evaluate, sign_approval, EvalContext, HistoryEntry, Policy};
use proptest::prelude::*;
use proto::intent::{Asset, ChainRef, IntentKind, Payment, WithdrawalIntent};

const DESTS: [&str; 3] = [
    "0x1111111111111111111111111111111111111111",
    "0x2222222222222222222222222222222222222222",
    "0x3333333333333333333333333333333333333333",
];

fn policy(w1: u64, m1: u128, w2: u64, m2: u128, per_dest: u128) -> Policy {
    let approvers: Vec<String> = (1..=4u8)
        .map(|n| format!("\"{}\"", hex::encode(key(n).verifying_key().to_bytes())))
        .collect();
    let text = format!(
        r#"
version = 1
[chains.eth]
id = "ethereum:1"
max_fee = 100
[assets.eth]
chain = "eth"
asset = "native"
per_tx = "{per_tx}"
[[assets.eth.velocity]]
window = {w1}
max = "{m1}"
[[assets.eth.velocity]]
window = {w2}
max = "{m2}"
[[assets.eth.velocity]]
window = {w2}
max = "{per_dest}"
per_destination = true
[[assets.eth.approval]]
at_or_above = 1000
require = {{ treasury = 2, security = 1 }}
[approvers.treasury]
keys = [{t}]
[approvers.security]
keys = [{s}]
[keys.hot]
assets = ["eth"]
[destinations]
require_allowlist = false
"#,
        per_tx = u128::MAX,
        t = approvers[..3].join(", "),
        s = approvers[3],
    );
    Policy::from_toml(&text, "prop.toml").unwrap()
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn intent(payments: &[(usize, u128)]) -> WithdrawalIntent {
    WithdrawalIntent {
        key_id: "hot".into(),
        account: None,
        chain: ChainRef::Ethereum { chain_id: 1 },
        kind: IntentKind::Transfer,
        asset: Asset::Native,
        payments: payments
            .iter()
            .map(|(d, a)| Payment {
                destination: DESTS[*d].into(),
                amount: *a,
            })
            .collect(),
        change: vec![],
        fee: 1,
        calldata: None,
        typed_data: None,
    }
}

fn ctx(now: u64) -> EvalContext {
    EvalContext {
        now,
        request_id: "r".into(),
        payload_hash: [0; 32],
        first_seen: now,
        frozen: false,
        request_expires_at: None,
    }
}

/// The largest sum over any window `(t - w, t]`, optionally for one destination.
fn max_window_sum(history: &[HistoryEntry], w: u64, dest: Option<&str>) -> u128 {
    history
        .iter()
        .map(|end| {
            history
                .iter()
                .filter(|h| h.signed_at <= end.signed_at && h.signed_at + w > end.signed_at)
                .filter(|h| dest.is_none_or(|d| h.destination == d))
                .map(|h| h.amount)
                .sum()
        })
        .max()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// No sequence of allowed withdrawals sums above any window's limit within any window.
    #[test]
    fn allowed_withdrawals_never_exceed_a_window(
        w1 in 1u64..60, m1 in 1u128..200,
        w2_extra in 1u64..150, m2 in 1u128..400, per_dest in 1u128..150,
        steps in prop::collection::vec((0u64..40, prop::collection::vec((0usize..3, 1u128..120), 1..3)), 1..40),
    ) {
        let w2 = w1 + w2_extra;
        let p = policy(w1, m1, w2, m2, per_dest);
        let mut now = 1_000_000u64;
        let mut history: Vec<HistoryEntry> = Vec::new();
        for (gap, payments) in steps {
            now += gap;
            let i = intent(&payments);
            // Amounts stay below the approval tier, so every intent is allowed or denied.
            let d = evaluate(&i, &p, &history, &[], &ctx(now));
            if d.is_allow() {
                for pay in &i.payments {
                    history.push(HistoryEntry {
                        key_id: "hot".into(), account: None, chain: i.chain.clone(), asset: Asset::Native,
                        destination: pay.destination.clone(), amount: pay.amount, signed_at: now,
                    });
                }
            }
        }
        prop_assert!(max_window_sum(&history, w1, None) <= m1);
        prop_assert!(max_window_sum(&history, w2, None) <= m2);
        for d in DESTS {
            prop_assert!(max_window_sum(&history, w2, Some(d)) <= per_dest);
        }
    }

    /// The same inputs always give the same bytes.
    #[test]
    fn evaluation_is_deterministic(
        amounts in prop::collection::vec((0usize..3, 0u128..1_000), 0..4),
        past in prop::collection::vec((0usize..3, 0u128..1_000, 0u64..100_000), 0..20),
        now in 0u64..200_000, frozen in any::<bool>(),
    ) {
        let p = policy(3_600, 500, 86_400, 2_000, 700);
        let history: Vec<HistoryEntry> = past.iter().map(|(d, a, t)| HistoryEntry {
            key_id: "hot".into(), account: None, chain: ChainRef::Ethereum { chain_id: 1 }, asset: Asset::Native,
            destination: DESTS[*d].into(), amount: *a, signed_at: *t,
        }).collect();
        let i = intent(&amounts);
        let mut c = ctx(now);
        c.frozen = frozen;
        let a = evaluate(&i, &p, &history, &[], &c).to_json_bytes();
        let b = evaluate(&i.clone(), &p.clone(), &history.clone(), &[], &c.clone()).to_json_bytes();
        prop_assert_eq!(a, b);
    }

    /// Reordering (and repeating) approvals changes nothing.
    #[test]
    fn approval_order_does_not_matter(
        who in prop::collection::vec((1u8..=6, any::<bool>()), 0..8),
        seed in any::<u64>(),
    ) {
        let p = policy(3_600, 5_000, 86_400, 20_000, 7_000);
        let i = intent(&[(0, 1_000)]);
        let now = 1_000u64;
        let approvals: Vec<_> = who.iter().map(|(n, fresh)| {
            let expires = if *fresh { now + 60 } else { now };
            sign_approval(&key(*n), &i, policy::ApprovalSubject { request_id: "r", payload_hash: &[0; 32] }, &p.hash(), expires)
        }).collect();
        let reference = evaluate(&i, &p, &[], &approvals, &ctx(now)).to_json_bytes();
        let mut shuffled = approvals.clone();
        // A seeded Fisher-Yates shuffle.
        let mut state = seed | 1;
        for k in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            let j = (state % (k as u64 + 1)) as usize;
            shuffled.swap(k, j);
        }
        prop_assert_eq!(&reference, &evaluate(&i, &p, &[], &shuffled, &ctx(now)).to_json_bytes());
        let mut reversed = approvals;
        reversed.reverse();
        prop_assert_eq!(&reference, &evaluate(&i, &p, &[], &reversed, &ctx(now)).to_json_bytes());
    }
}
