//! `[account_classes.<class>]` and `[accounts.<name>]`.
//!
//! A named account's class is merged into its rule here, once, so that evaluation looks up a
//! single rule and the canonical form (and so the hash) shows what each account is held to.

use std::collections::BTreeMap;

use super::super::raw::{Label, RawAccount};
use super::Validator;
use crate::model::{AccountRule, AssetRule};
use crate::tags;

impl Validator<'_> {
    /// Validates the classes; a class may not name a class of its own.
    pub(super) fn account_classes(
        &mut self,
        raw: BTreeMap<Label, RawAccount>,
        assets: &BTreeMap<String, AssetRule>,
    ) -> BTreeMap<String, AccountRule> {
        let mut out = BTreeMap::new();
        for (name, c) in raw {
            if let Some(class) = &c.class {
                let msg = format!(
                    "`class` is not allowed in `[account_classes.{}]`: a class cannot belong to another class",
                    name.get_ref()
                );
                self.err(class.span(), msg);
            }
            let section = format!("account_classes.{}", name.get_ref());
            let rule = self.account_rule(&c, assets, &section);
            out.insert(name.into_inner(), rule);
        }
        out
    }

    /// Validates the accounts and merges each with the class it names.
    pub(super) fn accounts(
        &mut self,
        raw: BTreeMap<Label, RawAccount>,
        assets: &BTreeMap<String, AssetRule>,
        classes: &BTreeMap<String, AccountRule>,
    ) -> BTreeMap<String, AccountRule> {
        let mut out = BTreeMap::new();
        for (name, a) in raw {
            let section = format!("accounts.{}", name.get_ref());
            let own = self.account_rule(&a, assets, &section);
            let rule = match &a.class {
                None => own,
                Some(label) => match classes.get(label.get_ref()) {
                    Some(class) => merge(label.get_ref(), class, own),
                    None => {
                        self.unknown_class(label, classes);
                        own
                    }
                },
            };
            out.insert(name.into_inner(), rule);
        }
        out
    }

    /// The limits, allowlist and denylist of one section (`accounts.<name>` or
    /// `account_classes.<class>`), as written.
    fn account_rule(
        &mut self,
        a: &RawAccount,
        assets: &BTreeMap<String, AssetRule>,
        section: &str,
    ) -> AccountRule {
        let mut limits = BTreeMap::new();
        for (asset, l) in &a.limits {
            let Some(rule) = assets.get(asset.get_ref()) else {
                self.unknown_asset(asset, assets);
                continue;
            };
            let Some(own) = self.limits(&l.per_tx, &l.velocity) else {
                continue;
            };
            let table = format!("`[{section}.limits.{}]`", asset.get_ref());
            if own.velocity.is_empty() {
                let who = if section.starts_with("accounts.") {
                    "the account"
                } else {
                    "each account of the class"
                };
                let msg = format!(
                    "{table} has no velocity window: it replaces the windows of asset `{}`, so only `per_tx` bounds {who}",
                    asset.get_ref()
                );
                self.warn(tags::WARN_VELOCITY_MISSING, Some(asset.span()), msg);
            }
            self.tier_split(&table, &l.velocity, &rule.timelock, &rule.approval);
            limits.insert(asset.get_ref().clone(), own);
        }
        if let Some(list) = a.allow.as_ref().filter(|_| !self.require_allowlist) {
            let msg = format!(
                "`[[{section}.allow]]` restricts nothing: `destinations.require_allowlist = false`, so only the denylists apply"
            );
            let at = list.first().map(|e| e.chain.span());
            self.warn(tags::WARN_ALLOWLIST_IGNORED, at, msg);
        }
        AccountRule {
            class: None,
            limits,
            allow: a.allow.as_ref().map(|list| self.allow_list(list)),
            deny: self.deny_list(&a.deny),
        }
    }

    fn unknown_class(&mut self, label: &Label, classes: &BTreeMap<String, AccountRule>) {
        let msg = if classes.is_empty() {
            format!(
                "unknown account class `{}`: the policy has no `[account_classes.<class>]` section",
                label.get_ref()
            )
        } else {
            let known = classes
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "unknown account class `{}`: expected one of the `[account_classes.<class>]` sections ({known})",
                label.get_ref()
            )
        };
        self.err(label.span(), msg);
    }
}

/// The account's own rule on top of its class: its limits replace the class's per asset, its
/// allowlist replaces the class's when it has one, and the denylists add up.
fn merge(name: &str, class: &AccountRule, own: AccountRule) -> AccountRule {
    let mut limits = class.limits.clone();
    limits.extend(own.limits);
    let mut deny = class.deny.clone();
    for (chain, entries) in own.deny {
        deny.entry(chain).or_default().extend(entries);
    }
    AccountRule {
        class: Some(name.to_string()),
        limits,
        allow: own.allow.or_else(|| class.allow.clone()),
        deny,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use crate::tags;
    use crate::testutil::*;
    use crate::Policy;

    const RETAIL: &str = "[account_classes.retail.limits.eth]\nper_tx = 100\n\n[accounts.client-a]\nclass = \"retail\"\n";

    fn error(extra: &str) -> crate::PolicyError {
        let text = format!("{BASE}\n{extra}\n");
        let errors = Policy::check(&text, "t.toml").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn an_unknown_account_class_is_a_parse_error() {
        let e = error(&RETAIL.replace("class = \"retail\"", "class = \"retial\""));
        assert_eq!(
            e.message,
            "unknown account class `retial`: expected one of the `[account_classes.<class>]` sections (`retail`)"
        );
        let base_lines = BASE.lines().count();
        assert_eq!(
            (e.line, e.column),
            (base_lines + 6, 9),
            "points at the value"
        );
        let e = error("[accounts.client-a]\nclass = \"retail\"\n");
        assert_eq!(
            e.message,
            "unknown account class `retail`: the policy has no `[account_classes.<class>]` section"
        );
    }

    #[test]
    fn a_class_may_not_name_a_class() {
        let e = error("[account_classes.retail]\nclass = \"vip\"\n");
        assert!(
            e.message
                .starts_with("`class` is not allowed in `[account_classes.retail]`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_class_naming_an_unknown_asset_is_a_parse_error() {
        let e = error("[account_classes.retail.limits.doge]\nper_tx = 1\n");
        assert!(
            e.message.starts_with("unknown asset `doge`"),
            "{}",
            e.message
        );
        let e = error("[account_classes.retail.limits.eth]\nper_tx = 0\n");
        assert!(e.message.starts_with("`per_tx` must be greater than 0"));
    }

    #[test]
    fn account_class_changes_change_the_policy_hash() {
        let p = policy_extra(RETAIL);
        let used = policy_extra(&RETAIL.replace("per_tx = 100", "per_tx = 101"));
        assert_ne!(p.hash(), used.hash(), "a class an account uses");
        let unused = policy_extra(&format!(
            "{RETAIL}\n[account_classes.default.limits.eth]\nper_tx = 5\n"
        ));
        assert_ne!(
            p.hash(),
            unused.hash(),
            "the `default` class no account names"
        );
        let unused2 = policy_extra(&format!(
            "{RETAIL}\n[account_classes.default.limits.eth]\nper_tx = 6\n"
        ));
        assert_ne!(unused.hash(), unused2.hash());
        let moved = policy_extra(&RETAIL.replace("class = \"retail\"", ""));
        assert_ne!(p.hash(), moved.hash(), "an account leaving its class");
        let canonical = String::from_utf8(p.canonical_bytes()).unwrap();
        assert!(
            canonical.contains(r#""account_classes":{"retail":"#),
            "{canonical}"
        );
        assert!(canonical.contains(r#""class":"retail""#), "{canonical}");
        let plain = String::from_utf8(base_policy().canonical_bytes()).unwrap();
        assert!(
            !plain.contains("account_classes") && !plain.contains("\"class\""),
            "a policy without classes keeps its old canonical form: {plain}"
        );
    }

    #[test]
    fn warn_velocity_missing_in_an_account_or_class_section() {
        // The asset has a window, but a limits section replaces it: the account has none.
        let extra = "[[assets.eth.velocity]]\nwindow = \"1h\"\nmax = 500\n\n[accounts.client-a.limits.eth]\nper_tx = 50\n";
        let w = tagged(extra, tags::WARN_VELOCITY_MISSING);
        let msgs: Vec<&str> = w.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "asset `btc` has no velocity window: only `per_tx` bounds it",
                "`[accounts.client-a.limits.eth]` has no velocity window: it replaces the windows of asset `eth`, so only `per_tx` bounds the account",
            ]
        );
        let base_lines = BASE.lines().count();
        assert_eq!((w[1].line, w[1].column), (Some(base_lines + 6), Some(27)));
        let w = tagged(RETAIL, tags::WARN_VELOCITY_MISSING);
        assert!(
            w.iter().any(|w| w.message
                == "`[account_classes.retail.limits.eth]` has no velocity window: it replaces the windows of asset `eth`, so only `per_tx` bounds each account of the class"),
            "{w:?}"
        );
        let windowed = format!("{RETAIL}\n[[account_classes.retail.limits.eth.velocity]]\nwindow = \"1d\"\nmax = 300\n");
        assert!(
            tagged(&windowed, tags::WARN_VELOCITY_MISSING)
                .iter()
                .all(|w| w.message.starts_with("asset ")),
            "the class has a window now"
        );
    }

    #[test]
    fn warn_tier_split_in_an_account_window() {
        let extra = "[[assets.eth.timelock]]\nat_or_above = 200\ndelay = \"1h\"\n\n[accounts.client-a.limits.eth]\nper_tx = 100\n\n[[accounts.client-a.limits.eth.velocity]]\nwindow = \"1d\"\nmax = 400\nper_destination = true\n";
        let w = tagged(extra, tags::WARN_TIER_SPLIT);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].message,
            "`[accounts.client-a.limits.eth]`: withdrawals below the lowest time-lock tier (`200`) add up to `400` in the 24h window per destination, so a withdrawal split into such pieces avoids every tier"
        );
        assert!(tagged(
            &extra.replace("max = 400", "max = 199"),
            tags::WARN_TIER_SPLIT
        )
        .is_empty());
    }

    #[test]
    fn warn_allowlist_ignored_when_the_allowlist_is_not_required() {
        let list = format!("[[accounts.client-a.allow]]\nchain = \"eth\"\naddress = \"{OTHER}\"\nlabel = \"own\"\n");
        assert!(tagged(&list, tags::WARN_ALLOWLIST_IGNORED).is_empty());
        let text = format!("{BASE}\n{list}\n")
            .replace("require_allowlist = true", "require_allowlist = false");
        let p = policy_of(&text);
        let w: Vec<_> = p
            .warnings()
            .iter()
            .filter(|w| w.tag == tags::WARN_ALLOWLIST_IGNORED)
            .collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].message,
            "`[[accounts.client-a.allow]]` restricts nothing: `destinations.require_allowlist = false`, so only the denylists apply"
        );
        assert_eq!(w[0].line, Some(BASE.lines().count() + 3));
    }
}
