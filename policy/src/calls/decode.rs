//! Decoding one call against a `[contracts.<name>]` entry, and judging it.

use std::collections::BTreeMap;

use alloy_dyn_abi::{DynSolValue, JsonAbiExt};
use alloy_json_abi::{Function, StateMutability};
use alloy_primitives::keccak256;
use proto::call::{ArgView, CallView};
use proto::intent::{Asset, Payment};

use super::{ContractRule, FunctionRule};
use crate::model::PolicyDoc;
use crate::tags;

/// The longest rendering of one argument in a view; longer values are cut and say so.
const MAX_SHOWN: usize = 512;

/// The most calls one multicall may carry.
pub(crate) const NESTED_LIMIT: usize = 64;

/// Functions that carry other calls. A policy that names one must say which argument holds
/// them (`inner`), or the call is refused as `contract.nested`: a signer must not approve what
/// it cannot read.
const NESTING: [&str; 11] = [
    "multicall(bytes[])",
    "multicall(uint256,bytes[])",
    "multicall(bytes32,bytes[])",
    "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,address,address,bytes)",
    "execTransactionFromModule(address,uint256,bytes,uint8)",
    "multiSend(bytes)",
    "aggregate((address,bytes)[])",
    "aggregate3((address,bool,bytes)[])",
    "aggregate3Value((address,bool,uint256,bytes)[])",
    "tryAggregate(bool,(address,bytes)[])",
    "execute(bytes,bytes[],uint256)",
];

pub(super) struct Ctx<'a> {
    pub doc: &'a PolicyDoc,
    pub name: &'a str,
    pub contract: &'a ContractRule,
    pub allowlisted: &'a dyn Fn(&str) -> bool,
}

/// A call that decoded: what it is, and the first rule that refuses it, if any.
pub(super) struct Decoded {
    pub view: CallView,
    pub passed: BTreeMap<&'static str, String>,
    pub refused: Option<(&'static str, String)>,
    /// What it moves: asset, destination and amount.
    pub moves: Vec<(Asset, Payment)>,
}

type Refusal = (&'static str, String);

/// `name(type name, …)`, with ` payable` for a payable function.
pub(crate) fn canonical_signature(f: &Function) -> String {
    let params: Vec<String> = f
        .inputs
        .iter()
        .map(|p| match p.name.is_empty() {
            true => p.selector_type().into_owned(),
            false => format!("{} {}", p.selector_type(), p.name),
        })
        .collect();
    let payable = match f.state_mutability {
        StateMutability::Payable => " payable",
        _ => "",
    };
    format!("{}({}){payable}", f.name, params.join(", "))
}

/// Decodes `data` as one of the contract's functions and judges it. `value` is the native
/// value the call carries; `depth` is 1 for a call inside a `multicall`.
pub(super) fn call(ctx: &Ctx, data: &[u8], value: u128, depth: u8) -> Result<Decoded, Refusal> {
    let Some((selector, args)) = data.split_first_chunk::<4>() else {
        return Err((
            tags::CONTRACT_FUNCTION,
            format!("calldata of {} bytes has no 4-byte selector", data.len()),
        ));
    };
    let Some((label, f)) = ctx
        .contract
        .functions
        .iter()
        .find(|(_, f)| f.abi.selector().0 == *selector)
    else {
        let known: Vec<&str> = ctx.contract.functions.keys().map(String::as_str).collect();
        return Err((
            tags::CONTRACT_FUNCTION,
            format!(
                "selector `0x{}` is not a function `[contracts.{}]` allows (it allows: {})",
                hex::encode(selector),
                ctx.name,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let values = f.abi.abi_decode_input(args).map_err(|e| {
        (
            tags::CONTRACT_ARG,
            format!("calldata does not decode as `{}`: {e}", f.signature),
        )
    })?;
    let canonical = f.abi.abi_encode_input(&values).map_err(|e| {
        (
            tags::CONTRACT_ARG,
            format!(
                "decoded arguments of `{}` do not re-encode: {e}",
                f.signature
            ),
        )
    })?;
    if canonical != data {
        let what = match data.strip_prefix(canonical.as_slice()) {
            Some(rest) => format!("{} trailing bytes", rest.len()),
            None => "dirty padding or non-canonical offsets".to_string(),
        };
        return Err((
            tags::CONTRACT_ARG,
            format!(
                "calldata is not the canonical encoding of `{}` ({} bytes, canonical {}): {what}",
                f.signature,
                data.len(),
                canonical.len()
            ),
        ));
    }
    let view = CallView {
        contract: ctx.name.to_string(),
        address: ctx.contract.address.clone(),
        function: f.signature.clone(),
        args: f
            .abi
            .inputs
            .iter()
            .zip(&values)
            .enumerate()
            .map(|(i, (p, v))| ArgView {
                name: arg_name(&p.name, i),
                ty: p.selector_type().into_owned(),
                value: render(v, MAX_SHOWN),
            })
            .collect(),
        inner: vec![],
        allowance: None,
    };
    let mut d = Decoded {
        view,
        passed: BTreeMap::new(),
        refused: None,
        moves: vec![],
    };
    d.passed.insert(
        tags::CONTRACT_FUNCTION,
        format!("`{}` of `[contracts.{}]`", f.signature, ctx.name),
    );
    if let Err(r) = judge(ctx, label, f, &values, value, &mut d) {
        d.refused = Some(r);
        return Ok(d);
    }
    if let Err(r) = nested(ctx, f, &values, value, depth, &mut d) {
        d.refused = Some(r);
    }
    Ok(d)
}

fn arg_name(name: &str, i: usize) -> String {
    if name.is_empty() {
        format!("arg{i}")
    } else {
        name.to_string()
    }
}

fn arg<'v>(f: &FunctionRule, values: &'v [DynSolValue], name: &str) -> Option<&'v DynSolValue> {
    let i = f.abi.inputs.iter().position(|p| p.name == name)?;
    values.get(i)
}

/// `contract.arg`: value, constraints, and what the call moves.
fn judge(
    ctx: &Ctx,
    label: &str,
    f: &FunctionRule,
    values: &[DynSolValue],
    value: u128,
    d: &mut Decoded,
) -> Result<(), Refusal> {
    let refuse = |why: String| (tags::CONTRACT_ARG, why);
    let payable = f.abi.state_mutability == StateMutability::Payable;
    if value > 0 && !payable {
        return Err(refuse(format!(
            "the call sends `{value}` native units to `{label}`, which is not payable"
        )));
    }
    for (name, rule) in &f.args {
        let v = arg(f, values, name)
            .ok_or_else(|| refuse(format!("bug: argument `{name}` is not in the function")))?;
        rule.check(v, ctx.allowlisted)
            .map_err(|why| refuse(format!("argument `{name}` of `{label}`: {why}")))?;
    }
    if let Some(c) = &f.amount {
        if value > 0 {
            return Err(refuse(format!(
                "the call sends `{value}` native units and counts `{}` as `{}`: one call moves one asset",
                c.arg, c.asset
            )));
        }
        let amount = match arg(f, values, &c.arg) {
            Some(DynSolValue::Uint(v, _)) => u128::try_from(*v).map_err(|_| {
                refuse(format!(
                    "amount argument `{}` = `{v}` does not fit the engine's 128-bit amounts",
                    c.arg
                ))
            })?,
            _ => {
                return Err(refuse(format!(
                    "bug: amount argument `{}` is not a uint",
                    c.arg
                )))
            }
        };
        let asset = ctx
            .doc
            .assets
            .get(&c.asset)
            .map(|a| a.asset.clone())
            .ok_or_else(|| refuse(format!("bug: asset `{}` is not in the policy", c.asset)))?;
        let destination = match &f.recipient {
            Some(r) => match arg(f, values, r) {
                Some(DynSolValue::Address(a)) => format!("0x{}", hex::encode(a)),
                _ => return Err(refuse(format!("bug: recipient `{r}` is not an address"))),
            },
            None => ctx.contract.address.clone(),
        };
        d.moves.push((
            asset,
            Payment {
                destination,
                amount,
            },
        ));
    } else if value > 0 {
        d.moves.push((
            Asset::Native,
            Payment {
                destination: ctx.contract.address.clone(),
                amount: value,
            },
        ));
    }
    let n = f.args.len();
    d.passed.insert(
        tags::CONTRACT_ARG,
        match n {
            0 => format!(
                "`{label}` decoded canonically; the policy constrains none of its arguments"
            ),
            _ => format!("`{label}` decoded canonically; its {n} argument constraint(s) hold"),
        },
    );
    Ok(())
}

/// `contract.nested`: a `multicall`'s inner calls, each decoded and judged; a nesting
/// function the policy does not open is refused.
fn nested(
    ctx: &Ctx,
    f: &FunctionRule,
    values: &[DynSolValue],
    value: u128,
    depth: u8,
    d: &mut Decoded,
) -> Result<(), Refusal> {
    let refuse = |why: String| (tags::CONTRACT_NESTED, why);
    let Some(inner) = &f.inner else {
        let sig = f.abi.signature();
        if NESTING
            .iter()
            .any(|n| keccak256(n)[..4] == f.abi.selector()[..])
        {
            return Err(refuse(format!(
                "`{sig}` carries other calls and the policy does not open them (`inner`)"
            )));
        }
        return Ok(());
    };
    if depth > 0 {
        return Err(refuse("a nested call may not nest calls again".into()));
    }
    let calls = match arg(f, values, &inner.arg) {
        Some(DynSolValue::Array(calls)) => calls,
        Some(DynSolValue::Bytes(data)) => return forwarded(ctx, f, values, inner, data, d),
        _ => {
            return Err(refuse(format!(
                "bug: `{}` is not bytes or bytes[]",
                inner.arg
            )))
        }
    };
    if value > 0 {
        return Err(refuse(format!(
            "a multicall that carries `{value}` native units: each inner call could spend them"
        )));
    }
    if calls.len() > NESTED_LIMIT {
        return Err(refuse(format!(
            "a multicall of {} calls, over {NESTED_LIMIT}",
            calls.len()
        )));
    }
    if calls.is_empty() {
        return Err(refuse("a multicall with no inner call".into()));
    }
    for (i, c) in calls.iter().enumerate() {
        let DynSolValue::Bytes(data) = c else {
            return Err(refuse(format!("bug: inner call #{i} is not bytes")));
        };
        let inner = call(ctx, data, 0, depth + 1)
            .map_err(|(tag, why)| refuse(format!("inner call #{i} refused by `{tag}`: {why}")))?;
        d.view.inner.push(inner.view);
        if let Some((tag, why)) = inner.refused {
            return Err(refuse(format!("inner call #{i} refused by `{tag}`: {why}")));
        }
        d.moves.extend(inner.moves);
    }
    if d.moves.windows(2).any(|w| w[0].0 != w[1].0) {
        return Err(refuse(
            "the inner calls move more than one asset: one request moves one asset".into(),
        ));
    }
    d.passed.insert(
        tags::CONTRACT_NESTED,
        format!("{} inner call(s), each decoded and allowed", calls.len()),
    );
    Ok(())
}

/// One call forwarded to another contract of the policy (Safe `execTransaction(to, value,
/// data, operation, …)`): a plain CALL only, decoded and judged with that contract's entry.
fn forwarded(
    ctx: &Ctx,
    f: &FunctionRule,
    values: &[DynSolValue],
    inner: &super::Inner,
    data: &[u8],
    d: &mut Decoded,
) -> Result<(), Refusal> {
    let refuse = |why: String| (tags::CONTRACT_NESTED, why);
    if let Some(op) = &inner.operation {
        match arg(f, values, op) {
            Some(DynSolValue::Uint(n, _)) if n.is_zero() => {}
            _ => {
                return Err(refuse(format!(
                "`{op}` is not 0 (CALL): a delegatecall would run the inner code as this contract"
            )))
            }
        }
    }
    let to = match inner.to.as_ref().and_then(|t| arg(f, values, t)) {
        Some(DynSolValue::Address(a)) => format!("0x{}", hex::encode(a)),
        _ => return Err(refuse("bug: `inner_to` is not an address".into())),
    };
    let value = match inner.value.as_ref().map(|v| arg(f, values, v)) {
        None => 0,
        Some(Some(DynSolValue::Uint(n, _))) => u128::try_from(*n).map_err(|_| {
            refuse(format!(
                "the inner call's value `{n}` does not fit 128 bits"
            ))
        })?,
        Some(_) => return Err(refuse("bug: `inner_value` is not a uint".into())),
    };
    let Some((name, contract)) = ctx
        .doc
        .contracts
        .iter()
        .find(|(_, c)| c.chain == ctx.contract.chain && c.address == to)
    else {
        return Err(refuse(format!(
            "the inner call goes to `{to}`, which is not a `[contracts.<name>]` of the policy"
        )));
    };
    let ictx = Ctx {
        doc: ctx.doc,
        name,
        contract,
        allowlisted: ctx.allowlisted,
    };
    let call = call(&ictx, data, value, 1)
        .map_err(|(tag, why)| refuse(format!("the inner call refused by `{tag}`: {why}")))?;
    d.view.inner.push(call.view);
    if let Some((tag, why)) = call.refused {
        return Err(refuse(format!("the inner call refused by `{tag}`: {why}")));
    }
    d.moves.extend(call.moves);
    d.passed.insert(
        tags::CONTRACT_NESTED,
        format!("one inner call to `[contracts.{name}]`, decoded and allowed"),
    );
    Ok(())
}

/// A value as people read it: addresses and bytes as lowercase 0x-hex, integers in decimal,
/// strings quoted; cut at `max` characters.
pub(super) fn render(v: &DynSolValue, max: usize) -> String {
    let full = match v {
        DynSolValue::String(s) => format!("{s:?}"),
        DynSolValue::Function(f) => format!("0x{}", hex::encode(f)),
        DynSolValue::Array(xs) | DynSolValue::FixedArray(xs) => {
            let parts: Vec<String> = xs.iter().map(|x| render(x, max)).collect();
            format!("[{}]", parts.join(", "))
        }
        DynSolValue::Tuple(xs) | DynSolValue::CustomStruct { tuple: xs, .. } => {
            let parts: Vec<String> = xs.iter().map(|x| render(x, max)).collect();
            format!("({})", parts.join(", "))
        }
        // Addresses, booleans, integers and bytes: the text constraints compare.
        other => super::constraint::plain(other).unwrap_or_default(),
    };
    if full.len() <= max {
        return full;
    }
    let mut cut = max;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} characters)", &full[..cut], full.len())
}
