//! Contract calls, read with the ABI the officers signed (`[contracts.<name>]`).
//!
//! A node never judges a call it cannot read. It finds the contract by chain and address in
//! its own policy, the function by selector among the ones the policy names, decodes the
//! arguments with alloy's `dyn-abi` and refuses calldata that is not exactly the canonical
//! encoding of what it decoded (trailing bytes, dirty padding, odd offsets). It then checks the
//! policy's argument constraints and works out what the call moves: the amount argument,
//! counted as the asset the policy names, to the recipient argument (or the contract), so that
//! limits, velocity, destinations, time-locks and approvals apply to it as to a transfer.
//! ERC-20 `approve`/`increaseAllowance` and Permit2 `approve` to a token of the policy decode
//! to an allowance, counted as a payment of the allowance to the spender.

mod allowance;
mod constraint;
mod decode;
mod typed;

use std::collections::BTreeMap;

use alloy_json_abi::Function;
use proto::call::CallView;
use proto::intent::{Asset, IntentKind, Payment, WithdrawalIntent};
use serde::Serialize;

use crate::model::PolicyDoc;
use crate::tags;

pub(crate) use allowance::{selectors as allowance_selectors, PERMIT2};
pub(crate) use constraint::{ArgRule, Bound};
pub(crate) use decode::canonical_signature;

/// `[contracts.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ContractRule {
    pub chain: String,
    pub address: String,
    pub functions: BTreeMap<String, FunctionRule>,
}

/// `[contracts.<name>.functions.<label>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FunctionRule {
    /// `name(type name, …)` plus ` payable` for a payable function: the same for a Solidity
    /// signature and the JSON fragment of one function, so either hashes the same.
    pub signature: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, ArgRule>,
    /// The argument that carries an amount and the asset it is counted as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Counted>,
    /// The address argument that receives the amount (else the contract itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Where the calls this one carries are (`multicall`, Safe `execTransaction`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<Inner>,
    #[serde(skip)]
    pub abi: Function,
}

/// `[typed_data.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TypedRule {
    pub chain: String,
    pub verifying_contract: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub primary_type: String,
    /// The asset label of an EIP-2612 `Permit` (an allowance of its token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permit: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, ArgRule>,
}

/// `inner = "<arg>"`: a `bytes[]` argument of calls to this same contract (a `multicall`), or a
/// `bytes` argument of one call to the contract in the address argument `inner_to`, with its
/// native value in `inner_value` and a call type in `inner_operation` that must be 0 (CALL;
/// Safe's DELEGATECALL would run the inner code as the Safe itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Inner {
    pub arg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// `amount = "<arg>"` and `asset = "<asset label>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Counted {
    pub arg: String,
    pub asset: String,
}

/// How far a call was read, and what it moves.
pub(crate) struct Reading {
    /// What was decoded, for people (also when a later rule refuses it).
    pub view: Option<CallView>,
    /// The first refusal, with the tag of the rule that refuses.
    pub refused: Option<(&'static str, String)>,
    /// What each call rule found when it did not refuse.
    pub passed: BTreeMap<&'static str, String>,
    /// The intent as the limits see it: the counted asset and payments of a decoded call.
    pub counted: Option<(Asset, Vec<Payment>)>,
}

impl Reading {
    pub(super) fn none() -> Reading {
        Reading {
            view: None,
            refused: None,
            passed: BTreeMap::new(),
            counted: None,
        }
    }

    pub(super) fn refuse(mut self, tag: &'static str, reason: String) -> Reading {
        self.refused = Some((tag, reason));
        self
    }
}

/// Reads the intent's call, if it is one. `allowlisted` says whether an address is on the
/// allowlist in force for the intent (the account's, or the global one).
pub(crate) fn read(
    intent: &WithdrawalIntent,
    doc: &PolicyDoc,
    allowlisted: &dyn Fn(&str) -> bool,
) -> Reading {
    match intent.kind {
        IntentKind::ContractCall => {}
        IntentKind::TypedData => return typed::read(intent, doc, allowlisted),
        _ => return Reading::none(),
    }
    let mut r = Reading::none();
    let Some(chain) = doc.chain_label(&intent.chain) else {
        return r.refuse(
            tags::CONTRACT_UNKNOWN,
            "the chain is not in the policy".into(),
        );
    };
    let (Some(calldata), Some(to)) = (&intent.calldata, intent.payments.first()) else {
        return r.refuse(
            tags::CONTRACT_UNKNOWN,
            "a contract creation: the policy names no contract it may deploy".into(),
        );
    };
    let Some(data) = calldata
        .strip_prefix("0x")
        .and_then(|h| hex::decode(h).ok())
    else {
        return r.refuse(tags::CONTRACT_UNKNOWN, "calldata is not 0x-hex".into());
    };
    let to = crate::address::normalise(&intent.chain, &to.destination)
        .unwrap_or_else(|_| to.destination.clone());
    let value = intent.payments.first().map_or(0, |p| p.amount);
    if let Some(a) = allowance::read(doc, chain, &to, &data) {
        return allowance::judge(r, a, &data, value, doc);
    }
    let Some((name, contract)) = doc
        .contracts
        .iter()
        .find(|(_, c)| c.chain == chain && c.address == to)
    else {
        return r.refuse(
            tags::CONTRACT_UNKNOWN,
            format!("`{to}` on `{chain}` is not a `[contracts.<name>]` of the policy"),
        );
    };
    r.passed.insert(
        tags::CONTRACT_UNKNOWN,
        format!("`{to}` is `[contracts.{name}]`"),
    );
    let ctx = decode::Ctx {
        doc,
        name,
        contract,
        allowlisted,
    };
    match decode::call(&ctx, &data, value, 0) {
        Ok(call) => {
            r.view = Some(call.view);
            r.passed.extend(call.passed);
            if let Some((tag, why)) = call.refused {
                return r.refuse(tag, why);
            }
            let counted = if call.moves.is_empty() {
                None
            } else {
                let asset = call.moves[0].0.clone();
                let payments = call.moves.into_iter().map(|(_, p)| p).collect();
                Some((asset, payments))
            };
            r.counted = counted;
            r
        }
        Err((tag, why)) => r.refuse(tag, why),
    }
}
