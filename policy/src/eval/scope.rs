//! `intent.shape`, `freeze`, `request.expired` and the `scope.*` rules.

use proto::intent::IntentKind;

use super::{Check, Facts};
use crate::address::{chain_name, normalise};
use crate::tags;

pub(super) fn shape(f: &Facts) -> Check {
    let i = f.intent;
    if i.key_id.is_empty() {
        return Check::fail(tags::INTENT_SHAPE, "the intent names no key".into());
    }
    match (i.kind, i.payments.is_empty()) {
        (IntentKind::Transfer, true) => {
            return Check::fail(tags::INTENT_SHAPE, "a transfer with no payment".into())
        }
        (IntentKind::Message, false) => {
            return Check::fail(
                tags::INTENT_SHAPE,
                "a message signature that carries payments".into(),
            )
        }
        _ => {}
    }
    for p in &i.payments {
        if let Err(e) = normalise(&i.chain, &p.destination) {
            return Check::fail(tags::INTENT_SHAPE, e);
        }
    }
    Check::pass(
        tags::INTENT_SHAPE,
        format!(
            "{} payment(s), all to well-formed addresses",
            i.payments.len()
        ),
    )
}

pub(super) fn freeze(f: &Facts) -> Check {
    let key = &f.intent.key_id;
    if f.ctx.frozen {
        Check::fail(tags::FREEZE, format!("key `{key}` is frozen by the node"))
    } else if f.key.is_some_and(|k| k.frozen) {
        Check::fail(tags::FREEZE, format!("key `{key}` is frozen by the policy"))
    } else {
        Check::pass(tags::FREEZE, format!("key `{key}` is not frozen"))
    }
}

pub(super) fn expired(f: &Facts) -> Check {
    let now = f.ctx.now;
    if let Some(at) = f.ctx.request_expires_at {
        if now >= at {
            return Check::fail(
                tags::REQUEST_EXPIRED,
                format!("the request expired at `{at}`, now is `{now}`"),
            );
        }
    }
    if let Some(max_age) = f.doc.request_max_age {
        let age = now.saturating_sub(f.ctx.first_seen);
        if age >= max_age {
            return Check::fail(
                tags::REQUEST_EXPIRED,
                format!("the request is {age}s old, at or past `request.max_age` of {max_age}s"),
            );
        }
    }
    match (f.ctx.request_expires_at, f.doc.request_max_age) {
        (None, None) => Check::na(tags::REQUEST_EXPIRED, "the request has no expiry"),
        _ => Check::pass(tags::REQUEST_EXPIRED, "the request has not expired".into()),
    }
}

pub(super) fn key(f: &Facts) -> Check {
    let key = &f.intent.key_id;
    match f.key {
        Some(_) => Check::pass(tags::SCOPE_KEY, format!("key `{key}` is listed")),
        None => Check::fail(
            tags::SCOPE_KEY,
            format!("key `{key}` is not listed in `[keys]`"),
        ),
    }
}

pub(super) fn chain(f: &Facts) -> Check {
    let name = chain_name(&f.intent.chain);
    let Some(label) = f.chain_label else {
        return Check::fail(
            tags::SCOPE_CHAIN,
            format!("chain `{name}` is not in the policy"),
        );
    };
    let Some(key) = f.key else {
        return Check::pass(
            tags::SCOPE_CHAIN,
            format!("chain `{name}` is `[chains.{label}]`"),
        );
    };
    let allowed = key
        .assets
        .iter()
        .any(|a| f.doc.assets.get(a).is_some_and(|r| r.chain == label));
    if allowed {
        Check::pass(
            tags::SCOPE_CHAIN,
            format!("key `{}` may use chain `{label}`", f.intent.key_id),
        )
    } else {
        Check::fail(
            tags::SCOPE_CHAIN,
            format!("key `{}` may not use chain `{label}`", f.intent.key_id),
        )
    }
}

pub(super) fn asset(f: &Facts) -> Check {
    let id = f.intent.asset.id();
    let (Some(chain), Some(label)) = (f.chain_label, f.asset_label) else {
        return Check::fail(
            tags::SCOPE_ASSET,
            format!("asset `{id}` is not in the policy for this chain"),
        );
    };
    match f.key {
        Some(k) if !k.assets.contains(label) => Check::fail(
            tags::SCOPE_ASSET,
            format!("key `{}` may not move asset `{label}`", f.intent.key_id),
        ),
        _ => Check::pass(
            tags::SCOPE_ASSET,
            format!("asset `{id}` on `{chain}` is `[assets.{label}]`"),
        ),
    }
}

pub(super) fn contract_call(f: &Facts) -> Check {
    if f.intent.kind != IntentKind::ContractCall {
        return Check::na(tags::SCOPE_CONTRACT_CALL, "not a contract call");
    }
    match (f.chain_label, f.chain) {
        (Some(label), Some(c)) if c.contract_calls => Check::pass(
            tags::SCOPE_CONTRACT_CALL,
            format!("chain `{label}` allows contract calls; the `contract.*` rules judge this one"),
        ),
        (Some(label), _) => Check::fail(
            tags::SCOPE_CONTRACT_CALL,
            format!("chain `{label}` does not allow contract calls (`contract_calls = false`)"),
        ),
        _ => Check::fail(
            tags::SCOPE_CONTRACT_CALL,
            "contract call on a chain not in the policy".into(),
        ),
    }
}

pub(super) fn message(f: &Facts) -> Check {
    if f.intent.kind != IntentKind::Message {
        return Check::na(tags::SCOPE_MESSAGE, "not a message signature");
    }
    match (f.chain_label, f.chain) {
        (Some(label), Some(c)) if c.messages => Check::pass(
            tags::SCOPE_MESSAGE,
            format!("chain `{label}` allows message signatures"),
        ),
        (Some(label), _) => Check::fail(
            tags::SCOPE_MESSAGE,
            format!("chain `{label}` does not allow message signatures (`messages = false`)"),
        ),
        _ => Check::fail(
            tags::SCOPE_MESSAGE,
            "message signature on a chain not in the policy".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use proto::intent::{Asset, ChainRef};

    use crate::decision::Verdict::{self, *};
    use crate::tags::*;
    use crate::testutil::*;
    use crate::{evaluate, EvalContext, Policy};

    fn verdict(
        p: &Policy,
        i: &proto::intent::WithdrawalIntent,
        c: &EvalContext,
        tag: &str,
    ) -> Verdict {
        evaluate(i, p, &[], &[], c).rule(tag).unwrap().verdict
    }

    fn v(i: &proto::intent::WithdrawalIntent, tag: &str) -> Verdict {
        verdict(&base_policy(), i, &ctx(), tag)
    }

    #[test]
    fn intent_shape_allow_deny_boundary() {
        assert_eq!(v(&intent(1), INTENT_SHAPE), Pass);
        let mut i = intent(1);
        i.payments.clear();
        assert_eq!(v(&i, INTENT_SHAPE), Fail);
        let mut i = intent(1);
        i.key_id.clear();
        assert_eq!(v(&i, INTENT_SHAPE), Fail);
        let mut i = intent(1);
        i.payments[0].destination = "0x12".into();
        assert_eq!(v(&i, INTENT_SHAPE), Fail);
        let mut i = intent(1);
        i.kind = proto::intent::IntentKind::Message;
        assert_eq!(v(&i, INTENT_SHAPE), Fail, "a message carries no payment");
        i.payments.clear();
        assert_eq!(v(&i, INTENT_SHAPE), Pass);
    }

    #[test]
    fn freeze_allow_deny() {
        let mut c = ctx();
        assert_eq!(verdict(&base_policy(), &intent(1), &c, FREEZE), Pass);
        c.frozen = true;
        assert_eq!(verdict(&base_policy(), &intent(1), &c, FREEZE), Fail);
        let p = policy_replace(
            "assets = [\"eth\", \"btc\"]",
            "assets = [\"eth\", \"btc\"]\nfrozen = true",
        );
        assert_eq!(verdict(&p, &intent(1), &ctx(), FREEZE), Fail);
    }

    #[test]
    fn request_expired_allow_deny_boundary() {
        let mut c = ctx();
        assert_eq!(
            verdict(&base_policy(), &intent(1), &c, REQUEST_EXPIRED),
            NotApplicable
        );
        c.request_expires_at = Some(NOW + 1);
        assert_eq!(
            verdict(&base_policy(), &intent(1), &c, REQUEST_EXPIRED),
            Pass
        );
        c.request_expires_at = Some(NOW);
        assert_eq!(
            verdict(&base_policy(), &intent(1), &c, REQUEST_EXPIRED),
            Fail,
            "expiry is exclusive"
        );

        let p = policy_extra("[request]\nmax_age = \"1h\"");
        let mut c = ctx();
        c.first_seen = NOW - 3_599;
        assert_eq!(verdict(&p, &intent(1), &c, REQUEST_EXPIRED), Pass);
        c.first_seen = NOW - 3_600;
        assert_eq!(verdict(&p, &intent(1), &c, REQUEST_EXPIRED), Fail);
    }

    #[test]
    fn scope_key_allow_deny() {
        assert_eq!(v(&intent(1), SCOPE_KEY), Pass);
        let mut i = intent(1);
        i.key_id = "cold".into();
        assert_eq!(v(&i, SCOPE_KEY), Fail);
    }

    #[test]
    fn scope_chain_allow_deny() {
        assert_eq!(v(&intent(1), SCOPE_CHAIN), Pass);
        let mut i = intent(1);
        i.chain = ChainRef::Ethereum { chain_id: 5 };
        assert_eq!(v(&i, SCOPE_CHAIN), Fail, "chain id not in the policy");
        let p = policy_replace("assets = [\"eth\", \"btc\"]", "assets = [\"eth\"]");
        let mut i = intent(1);
        i.chain = ChainRef::Bitcoin {
            network: "mainnet".into(),
        };
        i.payments[0].destination = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4".into();
        assert_eq!(
            verdict(&p, &i, &ctx(), SCOPE_CHAIN),
            Fail,
            "key may not use btc"
        );
        assert_eq!(verdict(&base_policy(), &i, &ctx(), SCOPE_CHAIN), Pass);
    }

    #[test]
    fn scope_asset_allow_deny() {
        assert_eq!(v(&intent(1), SCOPE_ASSET), Pass);
        let mut i = intent(1);
        i.asset = Asset::Erc20 {
            contract: DEST.into(),
        };
        assert_eq!(v(&i, SCOPE_ASSET), Fail);
        let p = policy_replace("assets = [\"eth\", \"btc\"]", "assets = [\"btc\"]");
        assert_eq!(verdict(&p, &intent(1), &ctx(), SCOPE_ASSET), Fail);
    }

    #[test]
    fn scope_contract_call_allow_deny() {
        assert_eq!(v(&intent(1), SCOPE_CONTRACT_CALL), NotApplicable);
        let mut i = intent(1);
        i.kind = proto::intent::IntentKind::ContractCall;
        assert_eq!(v(&i, SCOPE_CONTRACT_CALL), Fail);
        let p = policy_replace("max_fee = 50", "max_fee = 50\ncontract_calls = true");
        assert_eq!(verdict(&p, &i, &ctx(), SCOPE_CONTRACT_CALL), Pass);
    }

    #[test]
    fn scope_message_allow_deny() {
        assert_eq!(v(&intent(1), SCOPE_MESSAGE), NotApplicable);
        let mut i = intent(0);
        i.kind = proto::intent::IntentKind::Message;
        i.payments.clear();
        assert_eq!(v(&i, SCOPE_MESSAGE), Fail, "eth has messages = false");
        i.chain = ChainRef::Bitcoin {
            network: "mainnet".into(),
        };
        assert_eq!(v(&i, SCOPE_MESSAGE), Pass);
        let d = evaluate(&i, &base_policy(), &[], &[], &ctx());
        assert!(d.is_allow(), "{d:#?}");
    }
}
