//! ERC-20 allowances: `approve` and `increaseAllowance` on a token of the policy, and
//! `approve` on Permit2, decode to an allowance (token, spender, amount), as do EIP-2612 and
//! Permit2 signatures (`typed.rs`). The allowance counts
//! as a payment of its amount to the spender; an unlimited one is refused
//! (`allowance.unlimited`) unless the token's `unlimited_spenders` names the spender, and then
//! counts as 0 (the officers trust that spender's code with the whole balance).

use std::collections::BTreeMap;

use alloy_json_abi::Function;
use alloy_primitives::U256;
use proto::call::AllowanceView;
use proto::intent::{Asset, Payment};

use super::decode::{self, Ctx};
use super::{ContractRule, FunctionRule, Reading};
use crate::model::PolicyDoc;
use crate::tags;

/// Uniswap's Permit2, at the same address on every EVM chain.
pub(crate) const PERMIT2: &str = "0x000000000022d473030f116ddee9f6b43ac78ba3";

const ERC20: [&str; 2] = [
    "approve(address spender, uint256 amount)",
    "increaseAllowance(address spender, uint256 addedValue)",
];
const PERMIT2_APPROVE: &str =
    "approve(address token, address spender, uint160 amount, uint48 expiration)";

/// An allowance call, found by address and selector, not yet decoded.
pub(super) struct Found {
    contract: ContractRule,
    name: String,
    /// The token of an ERC-20 call (Permit2 names it in an argument).
    token: Option<String>,
}

/// The signatures of the functions [`read`] recognises, for the policy check that a
/// `[contracts]` entry does not shadow one.
pub(crate) fn selectors() -> Vec<[u8; 4]> {
    ERC20
        .iter()
        .chain([PERMIT2_APPROVE].iter())
        .filter_map(|s| Function::parse(s).ok())
        .map(|f| f.selector().0)
        .collect()
}

fn rule(sig: &str) -> Option<(String, FunctionRule)> {
    let abi = Function::parse(sig).ok()?;
    Some((
        abi.name.clone(),
        FunctionRule {
            signature: decode::canonical_signature(&abi),
            args: BTreeMap::new(),
            amount: None,
            recipient: None,
            inner: None,
            abi,
        },
    ))
}

/// An allowance call to `to` on chain label `chain`, if `data`'s selector is one.
pub(super) fn read(doc: &PolicyDoc, chain: &str, to: &str, data: &[u8]) -> Option<Found> {
    let selector = data.get(..4)?;
    let (sigs, name, token): (&[&str], String, Option<String>) = if to == PERMIT2 {
        (&[PERMIT2_APPROVE], "permit2".into(), None)
    } else {
        let label = doc.assets.iter().find_map(|(label, a)| match &a.asset {
            Asset::Erc20 { contract } if a.chain == chain && contract == to => Some(label),
            _ => None,
        })?;
        (&ERC20, format!("erc20:{label}"), Some(to.to_string()))
    };
    let functions: BTreeMap<String, FunctionRule> = sigs.iter().filter_map(|s| rule(s)).collect();
    if !functions
        .values()
        .any(|f| f.abi.selector()[..] == *selector)
    {
        return None;
    }
    Some(Found {
        contract: ContractRule {
            chain: chain.to_string(),
            address: to.to_string(),
            functions,
        },
        name,
        token,
    })
}

/// Decodes and judges an allowance call.
pub(super) fn judge(
    mut r: Reading,
    found: Found,
    data: &[u8],
    value: u128,
    doc: &PolicyDoc,
) -> Reading {
    let no_list = |_: &str| false;
    let ctx = Ctx {
        doc,
        name: &found.name,
        contract: &found.contract,
        allowlisted: &no_list,
    };
    let what = match found.name.strip_prefix("erc20:") {
        Some(label) => format!(
            "`{}` is the token of `[assets.{label}]`",
            found.contract.address
        ),
        None => format!("`{PERMIT2}` is Permit2"),
    };
    r.passed.insert(tags::CONTRACT_UNKNOWN, what);
    let mut d = match decode::call(&ctx, data, value, 0) {
        Ok(d) => d,
        Err((tag, why)) => return r.refuse(tag, why),
    };
    r.passed.append(&mut d.passed);
    if let Some((tag, why)) = d.refused.take() {
        r.view = Some(d.view);
        return r.refuse(tag, why);
    }
    let values: Vec<String> = d.view.args.iter().map(|a| a.value.clone()).collect();
    // ERC-20: (spender, amount); Permit2: (token, spender, amount, expiration).
    let (token, spender, amount, max) = match (&found.token, values.as_slice()) {
        (Some(token), [spender, amount]) => (token.clone(), spender, amount, U256::MAX),
        (None, [token, spender, amount, _]) => (
            token.clone(),
            spender,
            amount,
            (U256::from(1u8) << 160) - U256::from(1u8),
        ),
        _ => return r.refuse(tags::CONTRACT_ARG, "bug: allowance arguments".into()),
    };
    let Ok(n) = amount.parse::<U256>() else {
        return r.refuse(tags::CONTRACT_ARG, "bug: allowance amount".into());
    };
    r.view = Some(d.view);
    grant(r, doc, &found.contract.chain, &token, spender, n, max)
}

/// An allowance of `n` (the type's maximum is `max`) of `token` to `spender`, on chain label
/// `chain`: shown in the reading's view, judged by `allowance.unlimited`, counted as a payment.
pub(super) fn grant(
    mut r: Reading,
    doc: &PolicyDoc,
    chain: &str,
    token: &str,
    spender: &str,
    n: U256,
    max: U256,
) -> Reading {
    // 2^128 and more cannot be counted against any limit: as good as unlimited.
    let unlimited = n == max || u128::try_from(n).is_err();
    if let Some(view) = r.view.as_mut() {
        view.allowance = Some(AllowanceView {
            token: token.to_string(),
            spender: spender.to_string(),
            amount: n.to_string(),
            unlimited,
        });
    }
    let asset = Asset::Erc20 {
        contract: token.to_string(),
    };
    if n.is_zero() {
        // A revocation moves nothing and may go to any spender: no payment to count.
        r.passed.insert(
            tags::ALLOWANCE_UNLIMITED,
            format!("an allowance of 0 to `{spender}`: a revocation"),
        );
        r.counted = Some((asset, vec![]));
        return r;
    }
    let allowed = doc
        .assets
        .iter()
        .find(|(_, a)| a.chain == chain && a.asset == asset);
    let counted = if unlimited {
        match allowed {
            Some((label, a)) if a.unlimited_spenders.contains(spender) => {
                r.passed.insert(
                    tags::ALLOWANCE_UNLIMITED,
                    format!("an unlimited allowance to `{spender}`, which `[assets.{label}] unlimited_spenders` names; it counts as 0"),
                );
                0
            }
            _ => {
                return r.refuse(
                    tags::ALLOWANCE_UNLIMITED,
                    format!("an unlimited allowance of `{token}` to `{spender}`, and no `unlimited_spenders` of the token names it"),
                )
            }
        }
    } else {
        r.passed.insert(
            tags::ALLOWANCE_UNLIMITED,
            format!("an allowance of `{n}` to `{spender}`, counted as a payment to it"),
        );
        u128::try_from(n).unwrap_or(u128::MAX)
    };
    r.counted = Some((
        asset,
        vec![Payment {
            destination: spender.to_string(),
            amount: counted,
        }],
    ));
    r
}
