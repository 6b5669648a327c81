//! The evaluation: one pure function from inputs to a [`Decision`].

mod contract;
mod dest;
mod limits;
mod scope;
mod tiers;

use std::borrow::Cow;
use std::collections::BTreeMap;

use proto::intent::WithdrawalIntent;

use crate::address::normalise;
use crate::decision::{Decision, Outcome, RuleResult, Verdict};
use crate::input::{Approval, EvalContext, HistoryEntry};
use crate::model::{
    AccountRule, AssetRule, ChainRule, KeyRule, Limits, Policy, PolicyDoc, DEFAULT_CLASS,
};

/// Evaluates a withdrawal against a policy.
///
/// Pure and deterministic: the same inputs give a byte-identical [`Decision`]. Every rule in
/// [`crate::tags::ALL`] is reported, in that order. Any failing rule makes the outcome a final
/// deny; otherwise any deferring rule makes it a retryable defer; otherwise it is an allow.
pub fn evaluate(
    intent: &WithdrawalIntent,
    policy: &Policy,
    history: &[HistoryEntry],
    approvals: &[Approval],
    ctx: &EvalContext,
) -> Decision {
    evaluate_counted(intent, policy, history, approvals, ctx).0
}

/// [`evaluate`], also returning the intent as it counted it ([`counted_intent`]), from the one
/// reading of its call: what a node reserves and records in its ledger.
pub fn evaluate_counted<'i>(
    intent: &'i WithdrawalIntent,
    policy: &Policy,
    history: &[HistoryEntry],
    approvals: &[Approval],
    ctx: &EvalContext,
) -> (Decision, Cow<'i, WithdrawalIntent>) {
    let reading = read_call(intent, &policy.doc);
    let counted = counted(intent, &reading);
    let f = Facts::new(&counted, &policy.doc, ctx);
    let (velocity, velocity_overflow) = limits::velocity(&f, history);
    let mut checks = vec![
        scope::shape(&f),
        scope::freeze(&f),
        scope::expired(&f),
        scope::key(&f),
        scope::chain(&f),
        scope::asset(&f),
        scope::contract_call(&f),
    ];
    checks.extend(contract::rules(&f, &reading));
    checks.extend([
        scope::message(&f),
        limits::overflow(&f, velocity_overflow),
        limits::fee(&f),
        limits::per_tx(&f),
        velocity,
        dest::deny(&f),
        dest::allow(&f),
        dest::cooldown(&f),
        tiers::timelock(&f),
        tiers::approval(&f, policy, approvals),
    ]);
    let mut decision = decide(policy, ctx, checks);
    decision.call = reading.view;
    (decision, counted)
}

/// The intent as the limits count it: a decoded contract call moves the asset of its amount
/// argument to its recipient, an allowance moves its amount of the token to the spender. The
/// node records these moves in its ledger (velocity), so they are what [`evaluate`] checked.
pub fn counted_intent<'i>(
    intent: &'i WithdrawalIntent,
    policy: &Policy,
) -> Cow<'i, WithdrawalIntent> {
    counted(intent, &read_call(intent, &policy.doc))
}

/// A contract call as the policy's ABI decodes it (what `policy approve` shows its signer);
/// `None` for a transfer, a message, or a call to a contract the policy does not name.
pub fn decoded_call(intent: &WithdrawalIntent, policy: &Policy) -> Option<proto::call::CallView> {
    read_call(intent, &policy.doc).view
}

fn read_call(intent: &WithdrawalIntent, doc: &PolicyDoc) -> crate::calls::Reading {
    let (account, _) = account_rule(intent, doc);
    let list = doc
        .chain_label(&intent.chain)
        .and_then(|l| doc.allow_list_for(account).get(l));
    let allowlisted = |a: &str| list.is_some_and(|m| m.contains_key(a));
    crate::calls::read(intent, doc, &allowlisted)
}

fn counted<'i>(
    intent: &'i WithdrawalIntent,
    r: &crate::calls::Reading,
) -> Cow<'i, WithdrawalIntent> {
    match (&r.refused, &r.counted) {
        (None, Some((asset, payments))) => {
            let mut c = intent.clone();
            c.asset = asset.clone();
            c.payments = payments.clone();
            Cow::Owned(c)
        }
        _ => Cow::Borrowed(intent),
    }
}

fn decide(policy: &Policy, ctx: &EvalContext, checks: Vec<Check>) -> Decision {
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.tag.to_string())
        .collect();
    let deferring = checks.iter().any(|c| c.verdict == Verdict::Defer);
    let outcome = if !failing.is_empty() {
        Outcome::Deny { rules: failing }
    } else if deferring {
        let not_before = checks.iter().filter_map(|c| c.not_before).max();
        let mut missing_approvals = BTreeMap::new();
        for c in &checks {
            missing_approvals.extend(c.missing.clone());
        }
        Outcome::Defer {
            not_before,
            missing_approvals,
        }
    } else {
        Outcome::Allow
    };
    Decision {
        outcome,
        policy_version: policy.version(),
        policy_hash: policy.hash(),
        request_id: ctx.request_id.clone(),
        evaluated_at: ctx.now,
        rules: checks
            .into_iter()
            .map(|c| RuleResult {
                tag: c.tag.to_string(),
                verdict: c.verdict,
                reason: c.reason,
            })
            .collect(),
        call: None,
    }
}

/// One rule's result plus what a defer needs.
pub(crate) struct Check {
    tag: &'static str,
    verdict: Verdict,
    reason: String,
    not_before: Option<u64>,
    missing: BTreeMap<String, u32>,
}

impl Check {
    fn new(tag: &'static str, verdict: Verdict, reason: String) -> Check {
        Check {
            tag,
            verdict,
            reason,
            not_before: None,
            missing: BTreeMap::new(),
        }
    }
    pub(crate) fn pass(tag: &'static str, reason: String) -> Check {
        Check::new(tag, Verdict::Pass, reason)
    }
    pub(crate) fn fail(tag: &'static str, reason: String) -> Check {
        Check::new(tag, Verdict::Fail, reason)
    }
    pub(crate) fn na(tag: &'static str, reason: &str) -> Check {
        Check::new(tag, Verdict::NotApplicable, reason.to_string())
    }
    pub(crate) fn defer(tag: &'static str, reason: String, not_before: Option<u64>) -> Check {
        Check {
            not_before,
            ..Check::new(tag, Verdict::Defer, reason)
        }
    }
}

/// What the rules need to know, derived once from the intent and the policy.
pub(crate) struct Facts<'a> {
    pub intent: &'a WithdrawalIntent,
    pub doc: &'a PolicyDoc,
    pub ctx: &'a EvalContext,
    pub chain_label: Option<&'a str>,
    pub chain: Option<&'a ChainRule>,
    pub asset_label: Option<&'a str>,
    pub asset: Option<&'a AssetRule>,
    pub key: Option<&'a KeyRule>,
    /// Sum of the payments; `None` on overflow.
    pub total: Option<u128>,
    /// The rule of the intent's account: its section (merged with its class), or else the
    /// `default` class. `None` for an intent without an account.
    pub account: Option<&'a AccountRule>,
    /// The class that `account` comes from or was merged with.
    pub class: Option<&'a str>,
    /// Payment destinations, normalised for the chain when it is known and they parse.
    pub destinations: Vec<String>,
}

impl<'a> Facts<'a> {
    fn new(intent: &'a WithdrawalIntent, doc: &'a PolicyDoc, ctx: &'a EvalContext) -> Self {
        let chain_label = doc.chain_label(&intent.chain);
        let chain = chain_label.and_then(|l| doc.chains.get(l));
        let asset_label = chain_label.and_then(|l| doc.asset_label(l, &intent.asset));
        let destinations = intent
            .payments
            .iter()
            .map(|p| {
                normalise(&intent.chain, &p.destination).unwrap_or_else(|_| p.destination.clone())
            })
            .collect();
        let (account, class) = account_rule(intent, doc);
        Facts {
            intent,
            doc,
            ctx,
            chain_label,
            chain,
            asset_label,
            asset: asset_label.and_then(|l| doc.assets.get(l)),
            key: doc.keys.get(&intent.key_id),
            total: intent.total_amount(),
            account,
            class,
            destinations,
        }
    }

    /// The limits in force and whether they come from the intent's account section.
    pub fn limits(&self) -> Option<(&'a Limits, bool)> {
        let label = self.asset_label?;
        match self.account.and_then(|a| a.limits.get(label)) {
            Some(l) => Some((l, true)),
            None => self.asset.map(|a| (&a.limits, false)),
        }
    }

    /// `account `a``, with its class when it has one, for reasons.
    pub fn account_name(&self) -> Option<String> {
        let name = self.intent.account.as_ref()?;
        Some(match self.class {
            Some(c) => format!("account `{name}` of class `{c}`"),
            None => format!("account `{name}`"),
        })
    }

    /// Amounts per normalised destination; `None` on overflow.
    pub fn per_destination(&self) -> Option<BTreeMap<&str, u128>> {
        let mut out: BTreeMap<&str, u128> = BTreeMap::new();
        for (dest, p) in self.destinations.iter().zip(&self.intent.payments) {
            let slot = out.entry(dest.as_str()).or_insert(0);
            *slot = slot.checked_add(p.amount)?;
        }
        Some(out)
    }
}

/// The account's own (merged) rule, or the `default` class for an account without a section.
fn account_rule<'a>(
    intent: &WithdrawalIntent,
    doc: &'a PolicyDoc,
) -> (Option<&'a AccountRule>, Option<&'a str>) {
    let Some(name) = intent.account.as_ref() else {
        return (None, None);
    };
    if let Some(rule) = doc.accounts.get(name) {
        return (Some(rule), rule.class.as_deref());
    }
    match doc.account_classes.get_key_value(DEFAULT_CLASS) {
        Some((class, rule)) => (Some(rule), Some(class.as_str())),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::tags;
    use crate::testutil::*;

    #[test]
    fn every_tag_is_reported_in_order() {
        let d = eval_simple(&base_policy(), &intent(100));
        let got: Vec<&str> = d.rules.iter().map(|r| r.tag.as_str()).collect();
        assert_eq!(got, tags::ALL);
        assert!(d.is_allow(), "{d:#?}");
    }

    #[test]
    fn a_failure_outranks_a_defer() {
        let p = policy_extra("[[assets.eth.timelock]]\nat_or_above = 0\ndelay = \"1h\"");
        let mut i = intent(100);
        i.payments[0].destination = OTHER.into();
        let d = eval_simple(&p, &i);
        assert_eq!(
            d.outcome,
            Outcome::Deny {
                rules: vec![tags::DEST_ALLOW.into()]
            }
        );
        assert_eq!(d.rule(tags::TIMELOCK_TIER).unwrap().verdict, Verdict::Defer);
    }

    #[test]
    fn decisions_serialise_to_stable_json() {
        let d = eval_simple(&base_policy(), &intent(100));
        let json = String::from_utf8(d.to_json_bytes()).unwrap();
        assert!(
            json.starts_with(r#"{"outcome":{"kind":"allow"},"policy_version":1,"policy_hash":""#),
            "{json}"
        );
        assert!(json.contains(r#"{"tag":"limit.per_tx","verdict":"pass","reason":"total `100` is within the per-transaction limit `1000` for `eth`"}"#), "{json}");
    }
}
