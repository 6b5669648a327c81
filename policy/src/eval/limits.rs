//! `amount.overflow`, `fee.max`, `limit.per_tx` and `limit.velocity`.

use std::collections::BTreeMap;

use proto::intent::WithdrawalIntent;

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

/// Names the account when `shown`, e.g. ` (account `a` of class `c`)`.
fn scope_note(f: &Facts, shown: bool) -> String {
    match f.account_name() {
        Some(a) if shown => format!(" ({a})"),
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
    let (Some(label), Some((limits, _))) = (f.asset_label, f.limits()) else {
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
    let relevant: Vec<(String, &HistoryEntry)> = history
        .iter()
        .filter(|h| same_ledger(f.intent, h))
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
    // The ledger is always the account's own, whichever limits apply.
    let note = scope_note(f, true);
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

/// Whether a past withdrawal counts against the intent's windows: same key, chain and asset,
/// and same account. Each account, and the key's master (no account), has its own ledger, so
/// one account's spending never uses another's allowance, even under the global limits.
fn same_ledger(i: &WithdrawalIntent, h: &HistoryEntry) -> bool {
    h.key_id == i.key_id && h.chain == i.chain && h.asset == i.asset && h.account == i.account
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
    use proto::intent::{Payment, WithdrawalIntent};

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
        // Without an account, the asset's limits and the master's own history apply: the
        // account's 50 does not count (700 + 100 = 800 passes; it would be 850 otherwise).
        assert_eq!(
            v(
                &p,
                &intent(100),
                &[mine.clone(), theirs.clone()],
                LIMIT_VELOCITY
            ),
            Pass
        );
        assert_eq!(v(&p, &intent(101), &[mine, theirs], LIMIT_VELOCITY), Fail);
    }

    fn of(mut i: WithdrawalIntent, account: &str) -> WithdrawalIntent {
        i.account = Some(account.into());
        i
    }

    fn spent(amount: u128, account: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            account: account.map(Into::into),
            ..hist(amount, NOW - 10)
        }
    }

    const BTC_DEST: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

    fn btc(amount: u128) -> WithdrawalIntent {
        let mut i = intent(amount);
        i.chain = proto::intent::ChainRef::Bitcoin {
            network: "mainnet".into(),
        };
        i.payments[0].destination = BTC_DEST.into();
        i
    }

    /// Class `retail`: eth 100 per transaction and 300 per 24 h, btc 10 per transaction.
    const RETAIL: &str = "[account_classes.retail.limits.eth]\nper_tx = 100\n\n[[account_classes.retail.limits.eth.velocity]]\nwindow = \"24h\"\nmax = 300\n\n[account_classes.retail.limits.btc]\nper_tx = 10\n";

    #[test]
    fn limit_per_tx_and_limit_velocity_from_the_account_class() {
        let p = policy_extra(&format!(
            "{RETAIL}\n[accounts.client-a]\nclass = \"retail\"\n"
        ));
        let a = |n| of(intent(n), "client-a");
        assert_eq!(v(&p, &a(100), &[], LIMIT_PER_TX), Pass);
        assert_eq!(
            v(&p, &a(101), &[], LIMIT_PER_TX),
            Fail,
            "the class's per_tx"
        );
        assert_eq!(
            v(&p, &intent(101), &[], LIMIT_PER_TX),
            Pass,
            "the master is no member"
        );
        let h = [spent(250, Some("client-a"))];
        assert_eq!(v(&p, &a(50), &h, LIMIT_VELOCITY), Pass);
        let d = evaluate(&a(51), &p, &h, &[], &ctx());
        let rule = d.rule(LIMIT_VELOCITY).unwrap();
        assert_eq!(rule.verdict, Fail, "the class's window");
        assert!(
            rule.reason
                .contains("(account `client-a` of class `retail`)"),
            "{}",
            rule.reason
        );
    }

    #[test]
    fn limit_per_tx_account_override_beats_the_class_for_that_asset() {
        let p = policy_extra(&format!(
            "{RETAIL}\n[accounts.client-a]\nclass = \"retail\"\n\n[accounts.client-a.limits.eth]\nper_tx = 500\n"
        ));
        let a = |i| of(i, "client-a");
        assert_eq!(v(&p, &a(intent(500)), &[], LIMIT_PER_TX), Pass);
        assert_eq!(v(&p, &a(intent(501)), &[], LIMIT_PER_TX), Fail);
        assert_eq!(
            v(
                &p,
                &a(intent(1)),
                &[spent(900, Some("client-a"))],
                LIMIT_VELOCITY
            ),
            NotApplicable,
            "the override replaces the class's windows for eth too"
        );
        assert_eq!(v(&p, &a(btc(10)), &[], LIMIT_PER_TX), Pass);
        assert_eq!(
            v(&p, &a(btc(11)), &[], LIMIT_PER_TX),
            Fail,
            "btc keeps the class's limit"
        );
    }

    #[test]
    fn limit_per_tx_default_class_applies_to_unnamed_accounts() {
        let p = policy_extra(&format!(
            "{}\n[accounts.vip]\n",
            RETAIL.replace("retail", "default")
        ));
        let walk_in = |n| of(intent(n), "walk-in");
        assert_eq!(v(&p, &walk_in(100), &[], LIMIT_PER_TX), Pass);
        let d = evaluate(&walk_in(101), &p, &[], &[], &ctx());
        let rule = d.rule(LIMIT_PER_TX).unwrap();
        assert_eq!(rule.verdict, Fail, "the `default` class");
        assert!(
            rule.reason
                .ends_with("(account `walk-in` of class `default`)"),
            "{}",
            rule.reason
        );
        assert_eq!(
            v(&p, &of(intent(101), "vip"), &[], LIMIT_PER_TX),
            Pass,
            "a named account without a class keeps the global limit"
        );
        assert_eq!(
            v(&p, &intent(101), &[], LIMIT_PER_TX),
            Pass,
            "the master too"
        );
        // Without a `default` class an unnamed account has the global limits.
        let p = policy_extra(RETAIL);
        assert_eq!(v(&p, &walk_in(1000), &[], LIMIT_PER_TX), Pass);
        assert_eq!(v(&p, &walk_in(1001), &[], LIMIT_PER_TX), Fail);
    }

    #[test]
    fn limit_velocity_accounts_of_one_class_have_separate_ledgers() {
        let p = policy_extra(&format!(
            "[[assets.eth.velocity]]\nwindow = \"24h\"\nmax = 300\n\n{RETAIL}\n[accounts.a]\nclass = \"retail\"\n\n[accounts.b]\nclass = \"retail\"\n"
        ));
        let h = [spent(300, Some("a"))];
        assert_eq!(
            v(&p, &of(intent(1), "a"), &h, LIMIT_VELOCITY),
            Fail,
            "a is spent"
        );
        assert_eq!(
            v(&p, &of(intent(100), "b"), &h, LIMIT_VELOCITY),
            Pass,
            "b is not"
        );
        assert_eq!(
            v(&p, &intent(300), &h, LIMIT_VELOCITY),
            Pass,
            "nor is the master"
        );
        let h = [spent(300, None)];
        assert_eq!(
            v(&p, &intent(1), &h, LIMIT_VELOCITY),
            Fail,
            "the master is spent"
        );
        assert_eq!(
            v(&p, &of(intent(100), "a"), &h, LIMIT_VELOCITY),
            Pass,
            "a is not"
        );
    }

    #[test]
    fn limit_velocity_global_limits_count_each_account_apart() {
        // Both accounts and the master use the asset's own window.
        let p = policy_extra(
            "[[assets.eth.velocity]]\nwindow = \"24h\"\nmax = 300\n\n[account_classes.retail]\n\n[accounts.a]\nclass = \"retail\"\n\n[accounts.b]\nclass = \"retail\"\n",
        );
        let h = [
            spent(200, Some("a")),
            spent(250, Some("b")),
            spent(280, None),
        ];
        assert_eq!(v(&p, &of(intent(100), "a"), &h, LIMIT_VELOCITY), Pass);
        assert_eq!(v(&p, &of(intent(101), "a"), &h, LIMIT_VELOCITY), Fail);
        assert_eq!(v(&p, &of(intent(50), "b"), &h, LIMIT_VELOCITY), Pass);
        assert_eq!(v(&p, &of(intent(51), "b"), &h, LIMIT_VELOCITY), Fail);
        assert_eq!(v(&p, &intent(20), &h, LIMIT_VELOCITY), Pass);
        assert_eq!(v(&p, &intent(21), &h, LIMIT_VELOCITY), Fail);
        // An account without a section has its own ledger too.
        assert_eq!(v(&p, &of(intent(300), "c"), &h, LIMIT_VELOCITY), Pass);
    }
}
