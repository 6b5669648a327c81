//! `dest.deny`, `dest.allow` and `dest.cooldown`.

use super::{Check, Facts};
use crate::literals::format_duration;
use crate::model::{AllowEntry, AllowList};
use crate::tags;

fn allow_list<'a>(f: &Facts<'a>) -> &'a AllowList {
    f.doc.allow_list_for(f.account)
}

fn allowed<'a>(f: &Facts<'a>, dest: &str) -> Option<&'a AllowEntry> {
    allow_list(f).get(f.chain_label?)?.get(dest)
}

fn unique_destinations<'f>(f: &'f Facts) -> Vec<&'f str> {
    let mut out: Vec<&str> = f.destinations.iter().map(String::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

pub(super) fn deny(f: &Facts) -> Check {
    if f.destinations.is_empty() {
        return Check::na(tags::DEST_DENY, "no destination");
    }
    let Some(chain) = f.chain_label else {
        return Check::na(tags::DEST_DENY, "chain not in the policy");
    };
    let lists = [Some(&f.doc.destinations.deny), f.account.map(|a| &a.deny)];
    let mut hits = Vec::new();
    for dest in unique_destinations(f) {
        let entry = lists
            .iter()
            .flatten()
            .find_map(|l| l.get(chain).and_then(|m| m.get(dest)));
        if let Some(entry) = entry {
            let why = entry
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            hits.push(format!("`{dest}`{why}"));
        }
    }
    if hits.is_empty() {
        Check::pass(tags::DEST_DENY, "no destination is on the denylist".into())
    } else {
        Check::fail(
            tags::DEST_DENY,
            format!("on the denylist: {}", hits.join(", ")),
        )
    }
}

pub(super) fn allow(f: &Facts) -> Check {
    if !f.doc.destinations.require_allowlist {
        return Check::na(tags::DEST_ALLOW, "the allowlist is not required");
    }
    if f.destinations.is_empty() {
        return Check::na(tags::DEST_ALLOW, "no destination");
    }
    let (mut labels, mut missing) = (Vec::new(), Vec::new());
    for dest in unique_destinations(f) {
        match allowed(f, dest) {
            Some(e) => labels.push(format!("`{dest}` ({})", e.label)),
            None => missing.push(format!("`{dest}`")),
        }
    }
    let whose = match (f.account_name(), f.account.and_then(|a| a.allow.as_ref())) {
        (Some(a), Some(_)) => format!("the allowlist of {a}"),
        _ => "the allowlist".to_string(),
    };
    if missing.is_empty() {
        Check::pass(
            tags::DEST_ALLOW,
            format!("on {whose}: {}", labels.join(", ")),
        )
    } else {
        Check::fail(
            tags::DEST_ALLOW,
            format!("not on {whose}: {}", missing.join(", ")),
        )
    }
}

pub(super) fn cooldown(f: &Facts) -> Check {
    let Some(cooldown) = f.doc.destinations.cooldown else {
        return Check::na(tags::DEST_COOLDOWN, "no cool-down is configured");
    };
    let now = f.ctx.now;
    let mut waiting: Option<u64> = None;
    let mut checked = 0;
    for dest in unique_destinations(f) {
        // Only allowlisted destinations have a listing time; `dest.allow` handles the rest.
        let Some(added) = allowed(f, dest).and_then(|e| e.added) else {
            continue;
        };
        checked += 1;
        let ready = added.saturating_add(cooldown);
        if ready > now {
            waiting = Some(waiting.map_or(ready, |w| w.max(ready)));
        }
    }
    match waiting {
        Some(at) => Check::defer(
            tags::DEST_COOLDOWN,
            format!(
                "a destination was allowlisted less than {} ago; it may receive funds from `{at}`",
                format_duration(cooldown)
            ),
            Some(at),
        ),
        None if checked == 0 => Check::na(tags::DEST_COOLDOWN, "no allowlisted destination"),
        None => Check::pass(
            tags::DEST_COOLDOWN,
            format!(
                "every destination has been allowlisted for at least {}",
                format_duration(cooldown)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use proto::intent::Payment;

    use crate::decision::Verdict::{self, *};
    use crate::tags::*;
    use crate::testutil::*;
    use crate::{evaluate, Outcome, Policy};

    fn v(p: &Policy, i: &proto::intent::WithdrawalIntent, tag: &str) -> Verdict {
        evaluate(i, p, &[], &[], &ctx()).rule(tag).unwrap().verdict
    }

    fn to(dest: &str) -> proto::intent::WithdrawalIntent {
        let mut i = intent(1);
        i.payments[0].destination = dest.into();
        i
    }

    const DENY_DEST: &str = "[[destinations.deny]]\nchain = \"eth\"\naddress = \"0x1111111111111111111111111111111111111111\"\nreason = \"sanctioned\"\n";

    #[test]
    fn dest_deny_allow_deny() {
        let p =
            policy_extra(&DENY_DEST.replace("0x1111111111111111111111111111111111111111", OTHER));
        assert_eq!(v(&p, &intent(1), DEST_DENY), Pass);
        assert_eq!(v(&p, &to(OTHER), DEST_DENY), Fail);
        let mut two = intent(1);
        two.payments.push(Payment {
            destination: OTHER.into(),
            amount: 1,
        });
        assert_eq!(
            v(&p, &two, DEST_DENY),
            Fail,
            "one denied destination among several"
        );
    }

    #[test]
    fn dest_deny_wins_over_the_allowlist() {
        let p = policy_extra(DENY_DEST);
        let d = evaluate(&intent(1), &p, &[], &[], &ctx());
        assert_eq!(d.rule(DEST_ALLOW).unwrap().verdict, Pass);
        assert_eq!(
            d.outcome,
            Outcome::Deny {
                rules: vec![DEST_DENY.into()]
            }
        );
        assert!(p
            .warnings()
            .iter()
            .any(|w| w.message.contains("on both lists")));
    }

    #[test]
    fn dest_allow_allow_deny() {
        let p = base_policy();
        assert_eq!(v(&p, &intent(1), DEST_ALLOW), Pass);
        assert_eq!(v(&p, &to(OTHER), DEST_ALLOW), Fail);
        // Case does not matter for EVM addresses.
        assert_eq!(
            v(
                &p,
                &to("0x1111111111111111111111111111111111111111"),
                DEST_ALLOW
            ),
            Pass
        );
        let open = policy_replace("require_allowlist = true", "require_allowlist = false");
        assert_eq!(v(&open, &to(OTHER), DEST_ALLOW), NotApplicable);
    }

    #[test]
    fn dest_allow_per_account() {
        let p = policy_extra(&format!(
            "[[accounts.client-a.allow]]\nchain = \"eth\"\naddress = \"{OTHER}\"\nlabel = \"client a bank\"\n"
        ));
        let mut i = to(OTHER);
        i.account = Some("client-a".into());
        assert_eq!(v(&p, &i, DEST_ALLOW), Pass);
        let mut i = intent(1);
        i.account = Some("client-a".into());
        assert_eq!(
            v(&p, &i, DEST_ALLOW),
            Fail,
            "the account list replaces the global one"
        );
        i.account = Some("client-b".into());
        assert_eq!(v(&p, &i, DEST_ALLOW), Pass, "no section: the global list");
    }

    fn of(
        mut i: proto::intent::WithdrawalIntent,
        account: &str,
    ) -> proto::intent::WithdrawalIntent {
        i.account = Some(account.into());
        i
    }

    const THIRD: &str = "0x3333333333333333333333333333333333333333";

    /// Class `retail` allows only OTHER; `client-b` is retail with its own allowlist (THIRD).
    fn classes() -> Policy {
        policy_extra(&format!(
            "[[account_classes.retail.allow]]\nchain = \"eth\"\naddress = \"{OTHER}\"\nlabel = \"retail bank\"\n\n\
             [accounts.client-a]\nclass = \"retail\"\n\n\
             [accounts.client-b]\nclass = \"retail\"\n\n\
             [[accounts.client-b.allow]]\nchain = \"eth\"\naddress = \"{THIRD}\"\nlabel = \"b's bank\"\n"
        ))
    }

    #[test]
    fn dest_allow_from_the_account_class() {
        let p = classes();
        let d = evaluate(&of(to(OTHER), "client-a"), &p, &[], &[], &ctx());
        let rule = d.rule(DEST_ALLOW).unwrap();
        assert_eq!(rule.verdict, Pass, "the class's allowlist");
        assert!(
            rule.reason
                .starts_with("on the allowlist of account `client-a` of class `retail`"),
            "{}",
            rule.reason
        );
        assert_eq!(
            v(&p, &of(intent(1), "client-a"), DEST_ALLOW),
            Fail,
            "the class's list replaces the global one"
        );
        assert_eq!(v(&p, &of(to(THIRD), "client-b"), DEST_ALLOW), Pass);
        assert_eq!(
            v(&p, &of(to(OTHER), "client-b"), DEST_ALLOW),
            Fail,
            "the account's list replaces the class's"
        );
        assert_eq!(
            v(&p, &to(OTHER), DEST_ALLOW),
            Fail,
            "the master keeps the global list"
        );
    }

    #[test]
    fn dest_allow_default_class_for_unnamed_accounts() {
        let p = policy_extra(&format!(
            "[[account_classes.default.allow]]\nchain = \"eth\"\naddress = \"{OTHER}\"\nlabel = \"any client\"\n\n[accounts.vip]\n"
        ));
        assert_eq!(v(&p, &of(to(OTHER), "walk-in"), DEST_ALLOW), Pass);
        assert_eq!(v(&p, &of(intent(1), "walk-in"), DEST_ALLOW), Fail);
        assert_eq!(
            v(&p, &of(intent(1), "vip"), DEST_ALLOW),
            Pass,
            "a named account"
        );
        assert_eq!(v(&p, &intent(1), DEST_ALLOW), Pass, "the master");
    }

    #[test]
    fn dest_deny_adds_the_class_and_account_lists() {
        let deny = |owner: &str, addr: &str| {
            format!("[[{owner}.deny]]\nchain = \"eth\"\naddress = \"{addr}\"\n")
        };
        let text = format!(
            "{BASE}\n{}\n{}\n[accounts.client-a]\nclass = \"retail\"\n\n{}\n[accounts.client-b]\nclass = \"retail\"\n",
            deny("destinations", DEST),
            deny("account_classes.retail", OTHER),
            deny("accounts.client-a", THIRD),
        );
        // Without the allowlist requirement, so that only the denylists decide.
        let p = policy_of(&text.replace("require_allowlist = true", "require_allowlist = false"));
        for (account, dest, verdict) in [
            ("client-a", OTHER, Fail),
            ("client-a", THIRD, Fail),
            ("client-a", DEST, Fail),
            ("client-b", OTHER, Fail),
            ("client-b", THIRD, Pass),
            ("client-b", DEST, Fail),
        ] {
            assert_eq!(
                v(&p, &of(to(dest), account), DEST_DENY),
                verdict,
                "{account} to {dest}"
            );
        }
        assert_eq!(
            v(&p, &to(OTHER), DEST_DENY),
            Pass,
            "the master has no class"
        );
    }

    #[test]
    fn dest_cooldown_allow_defer_boundary() {
        let p = policy_replace(
            "require_allowlist = true",
            "require_allowlist = true\ncooldown = \"48h\"",
        );
        // The entry was added at 1000; NOW is 1_000_000 > 1000 + 172_800.
        assert_eq!(v(&p, &intent(1), DEST_COOLDOWN), Pass);
        let fresh = |added: u64| {
            policy_of(
                &BASE
                    .replace(
                        "require_allowlist = true",
                        "require_allowlist = true\ncooldown = \"48h\"",
                    )
                    .replace("added = 1000", &format!("added = {added}")),
            )
        };
        assert_eq!(
            v(&fresh(NOW - 172_800), &intent(1), DEST_COOLDOWN),
            Pass,
            "exactly the cool-down"
        );
        let d = evaluate(&intent(1), &fresh(NOW - 172_799), &[], &[], &ctx());
        assert_eq!(
            d.rule(DEST_COOLDOWN).unwrap().verdict,
            Defer,
            "one second short"
        );
        assert_eq!(
            d.outcome,
            Outcome::Defer {
                not_before: Some(NOW + 1),
                missing_approvals: Default::default()
            }
        );
        assert_eq!(v(&base_policy(), &intent(1), DEST_COOLDOWN), NotApplicable);
    }
}
