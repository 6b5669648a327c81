//! EIP-712 typed data, judged with `[typed_data.<name>]`: the domain must be one the policy
//! names (`typed_data.domain`), the primary type and every constrained field must match
//! (`typed_data.field`), and an EIP-2612 `Permit` or any Permit2 signature is an allowance
//! (`allowance.unlimited`).

use alloy_dyn_abi::{DynSolValue, TypedData};
use alloy_primitives::U256;
use proto::call::{ArgView, CallView};
use proto::intent::WithdrawalIntent;

use super::{allowance, decode, Reading};
use crate::model::PolicyDoc;
use crate::tags;

/// Reads typed data against the policy's entries.
pub(super) fn read(
    intent: &WithdrawalIntent,
    doc: &PolicyDoc,
    allowlisted: &dyn Fn(&str) -> bool,
) -> Reading {
    let mut r = Reading::none();
    let Some(json) = &intent.typed_data else {
        return r.refuse(
            tags::TYPED_DATA_DOMAIN,
            "the intent carries no typed data".into(),
        );
    };
    let data: TypedData = match serde_json::from_str(json) {
        Ok(d) => d,
        Err(e) => {
            return r.refuse(
                tags::TYPED_DATA_FIELD,
                format!("typed data does not parse: {e}"),
            )
        }
    };
    let d = &data.domain;
    let shown = format!(
        "domain (name {:?}, version {:?}, chainId {}, verifyingContract {})",
        d.name.as_deref().unwrap_or("-"),
        d.version.as_deref().unwrap_or("-"),
        d.chain_id.map_or("-".to_string(), |c| c.to_string()),
        d.verifying_contract
            .map_or("-".to_string(), |a| format!("0x{}", hex::encode(a)))
    );
    let (Some(_), Some(contract)) = (d.chain_id, d.verifying_contract) else {
        return r.refuse(
            tags::TYPED_DATA_DOMAIN,
            format!(
                "the {shown} names no chainId or no verifyingContract: the policy cannot bind it"
            ),
        );
    };
    let contract = format!("0x{}", hex::encode(contract));
    let chain = doc.chain_label(&intent.chain);
    let entries: Vec<(&String, &super::TypedRule)> = doc
        .typed_data
        .iter()
        .filter(|(_, t)| {
            Some(t.chain.as_str()) == chain
                && t.verifying_contract == contract
                && t.name
                    .as_deref()
                    .is_none_or(|n| d.name.as_deref() == Some(n))
                && t.version
                    .as_deref()
                    .is_none_or(|v| d.version.as_deref() == Some(v))
        })
        .collect();
    // One domain may have an entry per primary type (Permit2 signs several).
    let found = entries
        .iter()
        .find(|(_, t)| t.primary_type == data.primary_type)
        .or(entries.first());
    let Some(&(label, rule)) = found else {
        return r.refuse(
            tags::TYPED_DATA_DOMAIN,
            format!("no `[typed_data.<name>]` of the policy names the {shown}"),
        );
    };
    r.passed.insert(
        tags::TYPED_DATA_DOMAIN,
        format!("the {shown} is `[typed_data.{label}]`"),
    );
    let value = match data.coerce() {
        Ok(v) => v,
        Err(e) => {
            return r.refuse(
                tags::TYPED_DATA_FIELD,
                format!("the message does not fit its types: {e}"),
            )
        }
    };
    let DynSolValue::CustomStruct {
        name,
        prop_names,
        tuple,
    } = &value
    else {
        return r.refuse(
            tags::TYPED_DATA_FIELD,
            "the primary type is not a struct".into(),
        );
    };
    let types: Vec<String> = tuple
        .iter()
        .map(|v| {
            v.as_type()
                .map_or("?".into(), |t| proto::typed::type_name(&t))
        })
        .collect();
    let params: Vec<String> = prop_names
        .iter()
        .zip(&types)
        .map(|(n, t)| format!("{t} {n}"))
        .collect();
    r.view = Some(CallView {
        contract: label.clone(),
        address: contract.clone(),
        function: format!("{name}({})", params.join(", ")),
        args: prop_names
            .iter()
            .zip(types)
            .zip(tuple)
            .map(|((n, ty), v)| ArgView {
                name: n.clone(),
                ty,
                value: decode::render(v, 512),
            })
            .collect(),
        inner: vec![],
        allowance: None,
    });
    if *name != rule.primary_type {
        let signed: Vec<String> = entries
            .iter()
            .map(|(l, t)| format!("`[typed_data.{l}]` signs `{}`", t.primary_type))
            .collect();
        return r.refuse(
            tags::TYPED_DATA_FIELD,
            format!("the primary type is `{name}`; {}", signed.join(", ")),
        );
    }
    let field = |f: &str| member(&value, f);
    for (f, c) in &rule.fields {
        let Some(v) = field(f) else {
            return r.refuse(
                tags::TYPED_DATA_FIELD,
                format!("`{name}` has no field `{f}`"),
            );
        };
        if let Err(why) = c.check(v, allowlisted) {
            return r.refuse(
                tags::TYPED_DATA_FIELD,
                format!("field `{f}` of `{name}`: {why}"),
            );
        }
    }
    r.passed.insert(
        tags::TYPED_DATA_FIELD,
        format!(
            "`{name}`; its {} field constraint(s) hold",
            rule.fields.len()
        ),
    );
    if contract == allowance::PERMIT2 {
        return permit2(r, doc, &rule.chain, name, &field);
    }
    let Some(_asset) = &rule.permit else {
        return r;
    };
    // EIP-2612: Permit(address owner, address spender, uint256 value, uint256 nonce, uint256 deadline).
    match (field("spender"), field("value")) {
        (Some(DynSolValue::Address(spender)), Some(DynSolValue::Uint(n, _))) => {
            let spender = format!("0x{}", hex::encode(spender));
            allowance::grant(r, doc, &rule.chain, &contract, &spender, *n, U256::MAX)
        }
        _ => r.refuse(
            tags::TYPED_DATA_FIELD,
            format!("`[typed_data.{label}]` reads an EIP-2612 permit, which needs `address spender` and `uint256 value`"),
        ),
    }
}

/// A Permit2 signature (`PermitSingle`, `PermitBatch`, `PermitTransferFrom`,
/// `PermitBatchTransferFrom` and their witness forms): `details` (`PermitDetails`) or
/// `permitted` (`TokenPermissions`) name a token and an amount that `spender` may take, an
/// allowance like Permit2's `approve`. A signature Permit2 would honour for several tokens is
/// refused (one token per signature), and so is one whose type names no token and amount:
/// every Permit2 signature is read as an allowance, or not signed.
fn permit2<'a>(
    r: Reading,
    doc: &PolicyDoc,
    chain: &str,
    name: &str,
    field: &dyn Fn(&str) -> Option<&'a DynSolValue>,
) -> Reading {
    let unread = |why: String| {
        (
            tags::TYPED_DATA_FIELD,
            format!("a Permit2 `{name}` {why}: every Permit2 signature must read as an allowance"),
        )
    };
    let grant_of = match field("details").or_else(|| field("permitted")) {
        Some(DynSolValue::Array(items)) | Some(DynSolValue::FixedArray(items)) => {
            match items.as_slice() {
                [one] => Some(one),
                _ => {
                    let (tag, why) = unread(format!(
                        "covers {} tokens; sign one `PermitSingle` or `PermitTransferFrom` per token",
                        items.len()
                    ));
                    return r.refuse(tag, why);
                }
            }
        }
        other => other,
    };
    let Some(grant_of @ DynSolValue::CustomStruct { .. }) = grant_of else {
        let (tag, why) = unread("names no `details` or `permitted` token and amount".into());
        return r.refuse(tag, why);
    };
    let get = |f: &str| member(grant_of, f);
    match (get("token"), get("amount"), field("spender")) {
        (
            Some(DynSolValue::Address(token)),
            Some(DynSolValue::Uint(n, bits)),
            Some(DynSolValue::Address(spender)),
        ) => {
            let max = if *bits >= 256 {
                U256::MAX
            } else {
                (U256::from(1u8) << *bits) - U256::from(1u8)
            };
            let token = format!("0x{}", hex::encode(token));
            let spender = format!("0x{}", hex::encode(spender));
            allowance::grant(r, doc, chain, &token, &spender, *n, max)
        }
        _ => {
            let (tag, why) =
                unread("has no `address token`, `uint amount` and `address spender`".into());
            r.refuse(tag, why)
        }
    }
}

/// The field `name` of a struct value.
fn member<'v>(v: &'v DynSolValue, name: &str) -> Option<&'v DynSolValue> {
    let DynSolValue::CustomStruct {
        prop_names, tuple, ..
    } = v
    else {
        return None;
    };
    let i = prop_names.iter().position(|n| n == name)?;
    tuple.get(i)
}
