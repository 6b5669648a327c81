//! `timelock.tier` and `approval.quorum`: requirements that grow with the amount.

use std::collections::{BTreeMap, BTreeSet};

use super::{Check, Facts};
use crate::approval::{approval_digest, verify, ApprovalSubject, MAX_APPROVAL_LIFETIME_SECS};
use crate::input::Approval;
use crate::literals::format_duration;
use crate::model::Policy;
use crate::tags;

pub(super) fn timelock(f: &Facts) -> Check {
    let (Some(label), Some(asset)) = (f.asset_label, f.asset) else {
        return Check::na(tags::TIMELOCK_TIER, "asset not in the policy");
    };
    let Some(total) = f.total else {
        return Check::na(tags::TIMELOCK_TIER, "the payment total overflowed");
    };
    let tier = asset
        .timelock
        .iter()
        .filter(|t| total >= t.at_or_above)
        .max_by_key(|t| t.delay);
    let Some(tier) = tier else {
        return Check::na(
            tags::TIMELOCK_TIER,
            &format!("total `{total}` is below every time-lock tier of `{label}`"),
        );
    };
    let first_seen = f.ctx.first_seen;
    let not_before = first_seen.saturating_add(tier.delay);
    let head = format!(
        "total `{total}` is at or above `{}`: {} time-lock from first seen `{first_seen}`",
        tier.at_or_above,
        format_duration(tier.delay)
    );
    if f.ctx.now >= not_before {
        Check::pass(
            tags::TIMELOCK_TIER,
            format!("{head}, signable since `{not_before}`"),
        )
    } else {
        Check::defer(
            tags::TIMELOCK_TIER,
            format!("{head}, signable at `{not_before}`"),
            Some(not_before),
        )
    }
}

/// Why approvals did not count, for the reason string. Counts do not depend on order.
#[derive(Default)]
struct Ignored {
    expired: usize,
    too_long: usize,
    invalid: usize,
    unknown: usize,
    duplicate: usize,
}

impl Ignored {
    fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.expired, "expired"),
            (self.too_long, "valid for longer than the 7-day maximum"),
            (self.invalid, "with an invalid signature"),
            (self.unknown, "from an unknown key"),
            (self.duplicate, "duplicate"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("; ignored {}", parts.join(", "))
        }
    }
}

pub(super) fn approval(f: &Facts, policy: &Policy, approvals: &[Approval]) -> Check {
    let (Some(label), Some(asset)) = (f.asset_label, f.asset) else {
        return Check::na(tags::APPROVAL_QUORUM, "asset not in the policy");
    };
    let Some(total) = f.total else {
        return Check::na(tags::APPROVAL_QUORUM, "the payment total overflowed");
    };
    // Every tier the amount reaches applies; a group needs the largest count any of them asks.
    let mut required: BTreeMap<&str, u32> = BTreeMap::new();
    for tier in asset.approval.iter().filter(|t| total >= t.at_or_above) {
        for (group, n) in &tier.require {
            let slot = required.entry(group.as_str()).or_insert(0);
            *slot = (*slot).max(*n);
        }
    }
    if required.is_empty() {
        return Check::na(
            tags::APPROVAL_QUORUM,
            &format!("total `{total}` is below every approval tier of `{label}`"),
        );
    }
    let (have, ignored) = count(f, policy, approvals);
    let mut missing = BTreeMap::new();
    let mut parts = Vec::new();
    for (group, need) in &required {
        let got = have.get(group).map_or(0, |s| s.len());
        let got32 = u32::try_from(got).unwrap_or(u32::MAX);
        parts.push(format!("`{group}` {got} of {need}"));
        if got32 < *need {
            missing.insert((*group).to_string(), need - got32);
        }
    }
    let reason = format!("{}{}", parts.join(", "), ignored.describe());
    if missing.is_empty() {
        Check::pass(tags::APPROVAL_QUORUM, reason)
    } else {
        let mut c = Check::defer(
            tags::APPROVAL_QUORUM,
            format!("waiting for approvals: {reason}"),
            None,
        );
        c.missing = missing;
        c
    }
}

/// Distinct valid approvers per group.
fn count<'p>(
    f: &Facts,
    policy: &'p Policy,
    approvals: &[Approval],
) -> (BTreeMap<&'p str, BTreeSet<[u8; 32]>>, Ignored) {
    let mut have: BTreeMap<&str, BTreeSet<[u8; 32]>> = BTreeMap::new();
    let mut ignored = Ignored::default();
    let mut counted = 0usize;
    for a in approvals {
        if a.expires_at <= f.ctx.now {
            ignored.expired += 1;
            continue;
        }
        if a.expires_at - f.ctx.now > MAX_APPROVAL_LIFETIME_SECS {
            ignored.too_long += 1;
            continue;
        }
        let Some(group) = policy.doc.group_of(&a.approver) else {
            ignored.unknown += 1;
            continue;
        };
        let subject = ApprovalSubject {
            request_id: &f.ctx.request_id,
            payload_hash: &f.ctx.payload_hash,
        };
        let digest = approval_digest(f.intent, subject, &policy.hash(), a.expires_at);
        if !verify(a, &digest) {
            ignored.invalid += 1;
            continue;
        }
        counted += 1;
        have.entry(group).or_default().insert(a.approver);
    }
    let distinct: usize = have.values().map(BTreeSet::len).sum();
    ignored.duplicate = counted - distinct;
    (have, ignored)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::collections::BTreeMap;

    use crate::decision::Verdict::*;
    use crate::tags::*;
    use crate::testutil::*;
    use crate::{evaluate, sign_approval, Approval, Outcome, Policy};

    const TIMELOCK: &str = "[[assets.eth.timelock]]\nat_or_above = 100\ndelay = \"1h\"\n\n[[assets.eth.timelock]]\nat_or_above = 500\ndelay = \"24h\"\n";

    fn quorum_policy() -> Policy {
        policy_extra(&format!(
            "[approvers.treasury]\nkeys = [\"{}\", \"{}\", \"{}\"]\n\n[approvers.security]\nkeys = [\"{}\"]\n\n\
             [[assets.eth.approval]]\nat_or_above = 100\nrequire = {{ treasury = 1 }}\n\n\
             [[assets.eth.approval]]\nat_or_above = 500\nrequire = {{ treasury = 2, security = 1 }}\n",
            pubhex(1), pubhex(2), pubhex(3), pubhex(4)
        ))
    }

    fn approve(p: &Policy, amount: u128, who: u8) -> Approval {
        sign_approval(
            &signer(who),
            &intent(amount),
            subject(),
            &p.hash(),
            NOW + 600,
        )
    }

    #[test]
    fn timelock_tier_allow_defer_boundary() {
        let p = policy_extra(TIMELOCK);
        let mut c = ctx();
        let d = |amount: u128, c: &crate::EvalContext| evaluate(&intent(amount), &p, &[], &[], c);
        assert_eq!(
            d(99, &c).rule(TIMELOCK_TIER).unwrap().verdict,
            NotApplicable,
            "below the first tier"
        );
        let at = d(100, &c);
        assert_eq!(
            at.rule(TIMELOCK_TIER).unwrap().verdict,
            Defer,
            "exactly the tier"
        );
        assert_eq!(
            at.outcome,
            Outcome::Defer {
                not_before: Some(NOW + 3_600),
                missing_approvals: BTreeMap::new()
            }
        );
        c.now = NOW + 3_599;
        assert_eq!(d(100, &c).rule(TIMELOCK_TIER).unwrap().verdict, Defer);
        c.now = NOW + 3_600;
        assert_eq!(
            d(100, &c).rule(TIMELOCK_TIER).unwrap().verdict,
            Pass,
            "signable exactly at not_before"
        );
        assert_eq!(d(499, &c).rule(TIMELOCK_TIER).unwrap().verdict, Pass);
        assert_eq!(
            d(500, &c).rule(TIMELOCK_TIER).unwrap().verdict,
            Defer,
            "the higher tier's delay"
        );
    }

    #[test]
    fn approval_quorum_allow_defer_boundary() {
        let p = quorum_policy();
        let eval = |amount: u128, a: &[Approval]| evaluate(&intent(amount), &p, &[], a, &ctx());
        assert_eq!(
            eval(99, &[]).rule(APPROVAL_QUORUM).unwrap().verdict,
            NotApplicable
        );
        let d = eval(100, &[]);
        assert_eq!(
            d.outcome,
            Outcome::Defer {
                not_before: None,
                missing_approvals: BTreeMap::from([("treasury".into(), 1)])
            }
        );
        assert!(eval(100, &[approve(&p, 100, 1)]).is_allow());
        // 500 needs 2 treasury and 1 security.
        let two = [approve(&p, 500, 1), approve(&p, 500, 2)];
        let d = eval(500, &two);
        assert_eq!(
            d.outcome,
            Outcome::Defer {
                not_before: None,
                missing_approvals: BTreeMap::from([("security".into(), 1)])
            }
        );
        let all = [
            approve(&p, 500, 1),
            approve(&p, 500, 2),
            approve(&p, 500, 4),
        ];
        assert!(eval(500, &all).is_allow(), "{:#?}", eval(500, &all));
    }

    #[test]
    fn approval_quorum_duplicates_count_once() {
        let p = quorum_policy();
        let a = [
            approve(&p, 500, 1),
            approve(&p, 500, 1),
            approve(&p, 500, 4),
        ];
        let d = evaluate(&intent(500), &p, &[], &a, &ctx());
        assert_eq!(d.rule(APPROVAL_QUORUM).unwrap().verdict, Defer);
        assert!(d
            .rule(APPROVAL_QUORUM)
            .unwrap()
            .reason
            .contains("1 duplicate"));
    }

    #[test]
    fn approval_quorum_ignores_unknown_expired_and_forged() {
        let p = quorum_policy();
        let unknown = approve(&p, 100, 9);
        let expired = sign_approval(&signer(1), &intent(100), subject(), &p.hash(), NOW);
        let other = crate::ApprovalSubject {
            request_id: "req-2",
            ..subject()
        };
        let wrong_request = sign_approval(&signer(2), &intent(100), other, &p.hash(), NOW + 600);
        let wrong_intent = approve(&p, 99, 3);
        let mut tampered = approve(&p, 100, 1);
        tampered.expires_at += 1;
        let a = [unknown, expired, wrong_request, wrong_intent, tampered];
        let d = evaluate(&intent(100), &p, &[], &a, &ctx());
        let r = d.rule(APPROVAL_QUORUM).unwrap();
        assert_eq!(r.verdict, Defer, "{r:?}");
        assert!(
            r.reason
                .ends_with("ignored 1 expired, 3 with an invalid signature, 1 from an unknown key"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn approval_quorum_is_bound_to_the_policy_hash() {
        let p = quorum_policy();
        let other = policy_of(&format!("{}\n", quorum_toml_v2()));
        let a = [sign_approval(
            &signer(1),
            &intent(100),
            subject(),
            &other.hash(),
            NOW + 600,
        )];
        assert_eq!(
            evaluate(&intent(100), &p, &[], &a, &ctx())
                .rule(APPROVAL_QUORUM)
                .unwrap()
                .verdict,
            Defer
        );
    }

    fn quorum_toml_v2() -> String {
        BASE.replace("version = 1", "version = 2")
    }

    /// Finding "one approval, many payouts": an approval for one payload does not count for
    /// another payload under the same request id (another nonce, other inputs, same intent).
    #[test]
    fn approval_quorum_is_bound_to_the_payload_hash() {
        let p = quorum_policy();
        let other_payload = [8u8; 32];
        let other = crate::ApprovalSubject {
            payload_hash: &other_payload,
            ..subject()
        };
        let a = [sign_approval(
            &signer(1),
            &intent(100),
            other,
            &p.hash(),
            NOW + 600,
        )];
        let d = evaluate(&intent(100), &p, &[], &a, &ctx());
        let r = d.rule(APPROVAL_QUORUM).unwrap();
        assert_eq!(r.verdict, Defer, "{r:?}");
        assert!(
            r.reason.contains("1 with an invalid signature"),
            "{}",
            r.reason
        );
        assert!(evaluate(&intent(100), &p, &[], &[approve(&p, 100, 1)], &ctx()).is_allow());
    }

    /// An approval valid for longer than the maximum lifetime is ignored: one signature cannot
    /// wait indefinitely for a payload.
    #[test]
    fn approval_quorum_ignores_approvals_beyond_the_maximum_lifetime() {
        let p = quorum_policy();
        let max = crate::MAX_APPROVAL_LIFETIME_SECS;
        let long = sign_approval(
            &signer(1),
            &intent(100),
            subject(),
            &p.hash(),
            NOW + max + 1,
        );
        let d = evaluate(&intent(100), &p, &[], &[long], &ctx());
        let r = d.rule(APPROVAL_QUORUM).unwrap();
        assert_eq!(r.verdict, Defer, "{r:?}");
        assert!(
            r.reason.contains("longer than the 7-day maximum"),
            "{}",
            r.reason
        );
        let edge = sign_approval(&signer(1), &intent(100), subject(), &p.hash(), NOW + max);
        assert!(evaluate(&intent(100), &p, &[], &[edge], &ctx()).is_allow());
    }
}
