//! `contract.unknown`, `contract.function`, `contract.arg`, `contract.nested` and
//! `allowance.unlimited`: the reading of a contract call ([`crate::calls`]) as rule results.

use proto::intent::IntentKind;

use super::{Check, Facts};
use crate::calls::Reading;
use crate::tags;

/// The five call rules, in [`tags::ALL`] order.
pub(super) fn rules(f: &Facts, r: &Reading) -> Vec<Check> {
    [
        (tags::CONTRACT_UNKNOWN, "no contract was looked up"),
        (tags::CONTRACT_FUNCTION, "no function was looked up"),
        (tags::CONTRACT_ARG, "no argument was decoded"),
        (tags::CONTRACT_NESTED, "the function carries no nested call"),
        (tags::ALLOWANCE_UNLIMITED, "the call grants no allowance"),
    ]
    .into_iter()
    .map(|(tag, idle)| {
        if f.intent.kind != IntentKind::ContractCall {
            return Check::na(tag, "not a contract call");
        }
        match (&r.refused, r.passed.get(tag)) {
            (Some((t, why)), _) if *t == tag => Check::fail(tag, why.clone()),
            (_, Some(why)) => Check::pass(tag, why.clone()),
            (Some((t, _)), None) => Check::na(tag, &format!("not reached: `{t}` refused the call")),
            (None, None) => Check::na(tag, idle),
        }
    })
    .collect()
}
