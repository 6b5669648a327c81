//! `contract.*`, `typed_data.*` and `allowance.unlimited`: the reading of a contract call or
//! of typed data ([`crate::calls`]) as rule results.

use proto::intent::IntentKind;

use super::{Check, Facts};
use crate::calls::Reading;
use crate::tags;

/// The call and typed-data rules, in [`tags::ALL`] order.
pub(super) fn rules(f: &Facts, r: &Reading) -> Vec<Check> {
    use IntentKind::{ContractCall, TypedData};
    [
        (
            tags::CONTRACT_UNKNOWN,
            "no contract was looked up",
            &[ContractCall][..],
        ),
        (
            tags::CONTRACT_FUNCTION,
            "no function was looked up",
            &[ContractCall][..],
        ),
        (
            tags::CONTRACT_ARG,
            "no argument was decoded",
            &[ContractCall][..],
        ),
        (
            tags::CONTRACT_NESTED,
            "the function carries no nested call",
            &[ContractCall][..],
        ),
        (
            tags::TYPED_DATA_DOMAIN,
            "no domain was looked up",
            &[TypedData][..],
        ),
        (
            tags::TYPED_DATA_FIELD,
            "no field was read",
            &[TypedData][..],
        ),
        (
            tags::ALLOWANCE_UNLIMITED,
            "grants no allowance",
            &[ContractCall, TypedData][..],
        ),
    ]
    .into_iter()
    .map(|(tag, idle, kinds)| {
        if !kinds.contains(&f.intent.kind) {
            return Check::na(
                tag,
                match kinds {
                    [TypedData] => "not typed data",
                    [ContractCall] => "not a contract call",
                    _ => "not a contract call or typed data",
                },
            );
        }
        match (&r.refused, r.passed.get(tag)) {
            (Some((t, why)), _) if *t == tag => Check::fail(tag, why.clone()),
            (_, Some(why)) => Check::pass(tag, why.clone()),
            (Some((t, _)), None) => Check::na(tag, &format!("not reached: `{t}` refused it")),
            (None, None) => Check::na(tag, idle),
        }
    })
    .collect()
}
