//! `amount.overflow`, `fee.max`, `limit.per_tx` and `limit.velocity`.

use std::collections::BTreeMap;

use super::{Check, Facts};
use crate::address::normalise;
use crate::input::HistoryEntry;
use crate::literals::format_duration;
use crate::model::Window;
use crate::tags;

pub(super) fn overflow(f: &Facts, velocity_overflowed: bool) -> Check {
    if f.total.is_none() || f.per_destination().is_none() {
        Check::fail(
            tags::AMOUNT_OVERFLOW,
            "the payments sum to more than 2^128-1 base units".into(),
        )
    } else if velocity_overflowed {
        Check::fail(
            tags::AMOUNT_OVERFLOW,
            "a velocity window sum overflows 2^128-1 base units".into(),
        )
    } else {
        Check::pass(tags::AMOUNT_OVERFLOW, "no amount overflows".into())
    }
}

pub(super) fn fee(f: &Facts) -> Check {
    let (Some(label), Some(chain)) = (f.chain_label, f.chain) else {
        return Check::na(tags::FEE_MAX, "chain not in the policy");
    };
    let fee = f.intent.fee;
    if fee <= chain.max_fee {
        Check::pass(
            tags::FEE_MAX,
            format!(
                "fee `{fee}` is within `max_fee` `{}` of `{label}`",
                chain.max_fee
            ),
        )
    } else {
        Check::fail(
            tags::FEE_MAX,
            format!(
                "fee `{fee}` exceeds `max_fee` `{}` of `{label}`",
                chain.max_fee
            ),
        )
    }
}

fn scope_note(f: &Facts, account_scoped: bool) -> String {
    match (&f.intent.account, account_scoped) {
        (Some(a), true) => format!(" (account `{a}`)"),
        _ => String::new(),
    }
}

pub(super) fn per_tx(f: &Facts) -> Check {
    let (Some(label), Some((limits, scoped))) = (f.asset_label, f.limits()) else {
        return Check::na(tags::LIMIT_PER_TX, "asset not in the policy");
    };
    let Some(total) = f.total else {
        return Check::na(tags::LIMIT_PER_TX, "the payment total overflowed");
    };
    let (limit, note) = (limits.per_tx, scope_note(f, scoped));
    if total <= limit {
        Check::pass(
            tags::LIMIT_PER_TX,
            format!(
                "total `{total}` is within the per-transaction limit `{limit}` for `{label}`{note}"
            ),
        )
    } else {
        Check::fail(
            tags::LIMIT_PER_TX,
            format!(
                "total `{total}` exceeds the per-transaction limit `{limit}` for `{label}`{note}"
            ),
        )
    }
}

/// Returns the check and whether a window sum overflowed (reported by `amount.overflow`).
pub(super) fn velocity(f: &Facts, history: &[HistoryEntry]) -> (Check, bool) {
    let (Some(label), Some((limits, scoped))) = (f.asset_label, f.limits()) else {
        return (
            Check::na(tags::LIMIT_VELOCITY, "asset not in the policy"),
            false,
        );
    };
    if limits.velocity.is_empty() {
        return (
            Check::na(
                tags::LIMIT_VELOCITY,
                &format!("no velocity window for `{label}`"),
            ),
            false,
        );
    }
    let (Some(total), Some(per_dest)) = (f.total, f.per_destination()) else {
        return (
            Check::na(tags::LIMIT_VELOCITY, "the payment total overflowed"),
            false,
        );
    };
    let i = f.intent;
    let relevant: Vec<(String, &HistoryEntry)> = history
        .iter()
        .filter(|h| h.key_id == i.key_id && h.chain == i.chain && h.asset == i.asset)
        .filter(|h| !scoped || h.account == i.account)
        .map(|h| {
            (
                normalise(&h.chain, &h.destination).unwrap_or_else(|_| h.destination.clone()),
                h,
            )
        })
        .collect();
    let mut lines = Vec::new();
    let mut exceeded = false;
    for w in &limits.velocity {
        let requests: BTreeMap<Option<&str>, u128> = if w.per_destination {
            per_dest.iter().map(|(d, a)| (Some(*d), *a)).collect()
        } else {
            BTreeMap::from([(None, total)])
        };
        for (dest, requested) in requests {
            let Some((line, over)) = window_line(f.ctx.now, w, dest, requested, &relevant) else {
                return (
                    Check::fail(
                        tags::LIMIT_VELOCITY,
                        format!("the {} window sum overflows", format_duration(w.window)),
                    ),
                    true,
                );
            };
            exceeded |= over;
            lines.push(line);
        }
    }
    let note = scope_note(f, scoped);
    let check = if exceeded {
        Check::fail(
            tags::LIMIT_VELOCITY,
            format!(
                "velocity limit exceeded for `{label}`{note}: {}",
                lines.join("; ")
            ),
        )
    } else {
        Check::pass(
            tags::LIMIT_VELOCITY,
            format!(
                "within every window for `{label}`{note}: {}",
                lines.join("; ")
            ),
        )
    };
    (check, false)
}

/// One window's line and whether it is exceeded; `None` on overflow.
///
/// A past withdrawal counts while `signed_at + window > now`, so the window is `(now - w, now]`;
/// entries in the future (clock skew) count too, which only makes the rule stricter.
fn window_line(
    now: u64,
    w: &Window,
    dest: Option<&str>,
    requested: u128,
    history: &[(String, &HistoryEntry)],
) -> Option<(String, bool)> {
    let used = history
        .iter()
        .filter(|(d, h)| h.signed_at.saturating_add(w.window) > now && dest.is_none_or(|x| x == d))
        .try_fold(0u128, |acc, (_, h)| acc.checked_add(h.amount))?;
    let after = used.checked_add(requested)?;
    let to = dest.map(|d| format!(" to `{d}`")).unwrap_or_default();
    let line = format!(
        "{}{to}: `{used}` signed + `{requested}` requested = `{after}` of `{}`",
        format_duration(w.window),
        w.max
    );
    Some((line, after > w.max))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use proto::intent::Payment;

    use crate::decision::Verdict::{self, *};
    use crate::tags::*;
    use crate::testutil::*;
    use crate::{evaluate, HistoryEntry, Outcome, Policy};

    fn v(
        p: &Policy,
        i: &proto::intent::WithdrawalIntent,
        h: &[HistoryEntry],
        tag: &str,
    ) -> Verdict {
        evaluate(i, p, h, &[], &ctx()).rule(tag).unwrap().verdict
    }

    const VELOCITY: &str = "[[assets.eth.velocity]]\nwindow = \"1h\"\nmax = 500\n\n[[assets.eth.velocity]]\nwindow = \"24h\"\nmax = 800\n";

    #[test]
    fn amount_overflow_deny() {
        let p = base_policy();
        let mut i = intent(u128::MAX);
        assert_eq!(v(&p, &i, &[], AMOUNT_OVERFLOW), Pass);
        i.payments.push(Payment {
            destination: DEST.into(),
            amount: 1,
        });
        let d = evaluate(&i, &p, &[], &[], &ctx());
        assert_eq!(d.rule(AMOUNT_OVERFLOW).unwrap().verdict, Fail);
        assert!(
            matches!(d.outcome, Outcome::Deny { ref rules } if rules.contains(&AMOUNT_OVERFLOW.to_string()))
        );
    }

    #[test]
    fn amount_overflow_in_a_velocity_window() {
        let p = policy_extra(VELOCITY);
        let h = [hist(u128::MAX, NOW), hist(1, NOW)];
        assert_eq!(v(&p, &intent(1), &h, AMOUNT_OVERFLOW), Fail);
        assert_eq!(v(&p, &intent(1), &h, LIMIT_VELOCITY), Fail);
    }

    #[test]
    fn fee_max_allow_deny_boundary() {
        let p = base_policy();
        let mut i = intent(1);
        i.fee = 50;
        assert_eq!(v(&p, &i, &[], FEE_MAX), Pass, "exactly the ceiling");
        i.fee = 51;
        assert_eq!(v(&p, &i, &[], FEE_MAX), Fail, "the ceiling plus 1");
    }

    #[test]
    fn limit_per_tx_allow_deny_boundary() {
        let p = base_policy();
        assert_eq!(v(&p, &intent(999), &[], LIMIT_PER_TX), Pass);
        assert_eq!(
            v(&p, &intent(1000), &[], LIMIT_PER_TX),
            Pass,
            "exactly the limit"
        );
        assert_eq!(
            v(&p, &intent(1001), &[], LIMIT_PER_TX),
            Fail,
            "the limit plus 1"
        );
        let mut i = intent(600);
        i.payments.push(Payment {
            destination: DEST.into(),
            amount: 401,
        });
        assert_eq!(v(&p, &i, &[], LIMIT_PER_TX), Fail, "payments are summed");
    }

    #[test]
    fn limit_velocity_allow_deny_boundary() {
        let p = policy_extra(VELOCITY);
        assert_eq!(
            v(&base_policy(), &intent(1), &[], LIMIT_VELOCITY),
            NotApplicable
        );
        let h = [hist(300, NOW - 10)];
        assert_eq!(
            v(&p, &intent(200), &h, LIMIT_VELOCITY),
            Pass,
            "exactly the 1h limit"
        );
        assert_eq!(
            v(&p, &intent(201), &h, LIMIT_VELOCITY),
            Fail,
            "the 1h limit plus 1"
        );
        // An entry exactly one window old has left the window; one second younger has not.
        assert_eq!(
            v(&p, &intent(500), &[hist(300, NOW - 3_600)], LIMIT_VELOCITY),
            Pass
        );
        assert_eq!(
            v(&p, &intent(500), &[hist(300, NOW - 3_599)], LIMIT_VELOCITY),
            Fail
        );
        // The 24h window still sees it.
        let h = [hist(400, NOW - 7_200)];
        assert_eq!(v(&p, &intent(400), &h, LIMIT_VELOCITY), Pass);
        assert_eq!(v(&p, &intent(401), &h, LIMIT_VELOCITY), Fail);
    }

    #[test]
    fn limit_velocity_ignores_other_keys_assets_and_chains() {
        let p = policy_extra(VELOCITY);
        let mut other_key = hist(500, NOW);
        other_key.key_id = "cold".into();
        let mut other_asset = hist(500, NOW);
        other_asset.asset = proto::intent::Asset::Erc20 {
            contract: DEST.into(),
        };
        let mut other_chain = hist(500, NOW);
        other_chain.chain = proto::intent::ChainRef::Ethereum { chain_id: 10 };
        assert_eq!(
            v(
                &p,
                &intent(500),
                &[other_key, other_asset, other_chain],
                LIMIT_VELOCITY
            ),
            Pass
        );
    }

    #[test]
    fn limit_velocity_per_destination() {
        let p = policy_extra(
            "[[assets.eth.velocity]]\nwindow = \"24h\"\nmax = 100\nper_destination = true\n",
        );
        let mut elsewhere = hist(100, NOW);
        elsewhere.destination = OTHER.into();
        assert_eq!(
            v(&p, &intent(100), &[elsewhere.clone()], LIMIT_VELOCITY),
            Pass
        );
        assert_eq!(
            v(&p, &intent(100), &[elsewhere, hist(1, NOW)], LIMIT_VELOCITY),
            Fail
        );
        // Destinations compare normalised.
        let mut upper = hist(1, NOW);
        upper.destination = DEST.to_ascii_uppercase().replace("0X", "0x");
        assert_eq!(v(&p, &intent(100), &[upper], LIMIT_VELOCITY), Fail);
    }

    #[test]
    fn account_overrides_limits_and_scopes_history() {
        let p = policy_extra(
            "[[assets.eth.velocity]]\nwindow = \"24h\"\nmax = 800\n\n[accounts.client-a.limits.eth]\nper_tx = 50\n\n[[accounts.client-a.limits.eth.velocity]]\nwindow = \"24h\"\nmax = 100\n",
        );
        let mut i = intent(50);
        i.account = Some("client-a".into());
        assert_eq!(v(&p, &i, &[], LIMIT_PER_TX), Pass);
        i.payments[0].amount = 51;
        assert_eq!(
            v(&p, &i, &[], LIMIT_PER_TX),
            Fail,
            "account per_tx replaces the asset's"
        );
        i.payments[0].amount = 50;
        let mut mine = hist(50, NOW);
        mine.account = Some("client-a".into());
        let theirs = hist(700, NOW);
        assert_eq!(
            v(&p, &i, &[mine.clone(), theirs.clone()], LIMIT_VELOCITY),
            Pass,
            "only the account's history counts"
        );
        let mut more = mine.clone();
        more.amount = 51;
        assert_eq!(v(&p, &i, &[more, theirs.clone()], LIMIT_VELOCITY), Fail);
        // Without an account, the asset's limits and the whole key's history apply.
        assert_eq!(
            v(
                &p,
                &intent(50),
                &[mine.clone(), theirs.clone()],
                LIMIT_VELOCITY
            ),
            Pass
        );
        assert_eq!(v(&p, &intent(51), &[mine, theirs], LIMIT_VELOCITY), Fail);
        assert_eq!(v(&p, &intent(100), &[hist(700, NOW)], LIMIT_VELOCITY), Pass);
        assert_eq!(v(&p, &intent(101), &[hist(700, NOW)], LIMIT_VELOCITY), Fail);
    }
}
