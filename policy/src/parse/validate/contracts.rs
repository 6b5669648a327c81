//! `[contracts.<name>]`: the contracts, functions and argument constraints of settlement calls.

use std::collections::BTreeMap;

use alloy_dyn_abi::{DynSolType, Specifier};
use alloy_json_abi::{Function, Param};
use alloy_primitives::U256;
use proto::intent::{Asset, ChainRef};
use toml::Value;

use super::super::raw::{Label, Lit, RawArg, RawContract, RawFunction};
use super::Validator;
use crate::calls::{
    canonical_signature, ArgRule, Bound, ContractRule, Counted, FunctionRule, Inner,
};
use crate::literals;
use crate::model::AssetRule;

/// Where a function sits: its contract's label, chain label and chain.
struct Site<'s> {
    contract: &'s str,
    chain_label: &'s str,
    chain: &'s ChainRef,
}

impl Validator<'_> {
    /// The chain of a `[contracts]` or `[typed_data]` section (`section`): an ethereum chain of
    /// the policy, which must allow contract calls (reported, not fatal).
    pub(super) fn call_chain(&mut self, label: &Label, section: &str) -> Option<ChainRef> {
        let chain = self.chain_ref(label)?;
        let name = label.get_ref();
        if !matches!(chain, ChainRef::Ethereum { .. }) {
            let msg =
                format!("`{section}`: contract calls and typed data exist on ethereum chains only");
            self.err(label.span(), msg);
            return None;
        }
        if self.chains.get(name).is_some_and(|r| !r.contract_calls) {
            let msg = format!("`{section}` is on chain `{name}`, which does not allow contract calls: set `contract_calls = true` in `[chains.{name}]`");
            self.err(label.span(), msg);
        }
        Some(chain)
    }

    pub(super) fn contracts(
        &mut self,
        raw: BTreeMap<Label, RawContract>,
        assets: &BTreeMap<String, AssetRule>,
    ) -> BTreeMap<String, ContractRule> {
        let mut out = BTreeMap::new();
        let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
        let reserved = crate::calls::allowance_selectors();
        for (label, c) in raw {
            let name = label.get_ref().clone();
            let Some(chain) = self.call_chain(&c.chain, &format!("[contracts.{name}]")) else {
                continue;
            };
            let chain_label = c.chain.get_ref().clone();
            let Some(address) = self.address(&c.chain, &c.address) else {
                continue;
            };
            if address == crate::calls::PERMIT2 {
                let msg = "Permit2's `approve` is decoded built in (an allowance); it cannot be a `[contracts.<name>]`".to_string();
                self.err(c.address.span(), msg);
                continue;
            }
            if let Some(other) = seen.insert((chain_label.clone(), address.clone()), name.clone()) {
                let msg = format!(
                    "`{}` on `{chain_label}` is already `[contracts.{other}]`",
                    c.address.get_ref()
                );
                self.err(c.address.span(), msg);
                continue;
            }
            let token = Asset::Erc20 {
                contract: address.clone(),
            };
            let is_token = assets
                .values()
                .any(|a| a.chain == chain_label && a.asset == token);
            if c.functions.is_empty() {
                let msg = format!(
                    "`[contracts.{name}]` allows no function: name at least one in `functions`"
                );
                self.err(label.span(), msg);
                continue;
            }
            let site = Site {
                contract: &name,
                chain_label: &chain_label,
                chain: &chain,
            };
            let mut functions = BTreeMap::new();
            let mut selectors: BTreeMap<[u8; 4], String> = BTreeMap::new();
            for (fl, f) in c.functions {
                let Some(rule) = self.function(&site, &fl, f, assets) else {
                    continue;
                };
                let selector = rule.abi.selector().0;
                if is_token && reserved.contains(&selector) {
                    let msg = format!("`{}` on the token of an asset is an allowance, decoded built in (`allowance.unlimited`): remove it", rule.signature);
                    self.err(fl.span(), msg);
                    continue;
                }
                if let Some(other) = selectors.insert(selector, fl.get_ref().clone()) {
                    let msg = format!(
                        "function `{}` has the same selector as `{other}`",
                        fl.get_ref()
                    );
                    self.err(fl.span(), msg);
                    continue;
                }
                functions.insert(fl.into_inner(), rule);
            }
            let rule = ContractRule {
                chain: chain_label,
                address,
                functions,
            };
            out.insert(name, rule);
        }
        out
    }

    fn function(
        &mut self,
        site: &Site,
        label: &Label,
        f: RawFunction,
        assets: &BTreeMap<String, AssetRule>,
    ) -> Option<FunctionRule> {
        let where_ = format!(
            "`[contracts.{}.functions.{}]`",
            site.contract,
            label.get_ref()
        );
        let abi = match (&f.signature, &f.abi) {
            (Some(s), None) => Function::parse(s.get_ref())
                .map_err(|e| self.err(s.span(), format!("`signature`: {e}")))
                .ok()?,
            (None, Some(j)) => serde_json::from_str::<Function>(j.get_ref())
                .map_err(|e| {
                    self.err(
                        j.span(),
                        format!("`abi`: not the JSON ABI of one function: {e}"),
                    )
                })
                .ok()?,
            _ => {
                self.err(
                    label.span(),
                    format!("{where_}: give exactly one of `signature` and `abi`"),
                );
                return None;
            }
        };
        let mut ok = true;
        for p in &abi.inputs {
            if let Err(e) = p.resolve() {
                self.err(
                    label.span(),
                    format!("{where_}: parameter `{}`: {e}", p.name),
                );
                ok = false;
            }
        }
        let amount = match (&f.amount, &f.asset) {
            (None, None) => None,
            (Some(arg), Some(asset)) => {
                let uint = self.param(&where_, &abi, arg, "`amount`", |t| {
                    matches!(t, DynSolType::Uint(_))
                });
                let known = assets
                    .get(asset.get_ref())
                    .is_some_and(|a| a.chain == site.chain_label);
                if !known {
                    let msg = format!(
                        "`asset`: no asset `{}` on chain `{}`",
                        asset.get_ref(),
                        site.chain_label
                    );
                    self.err(asset.span(), msg);
                }
                ok &= uint && known;
                Some(Counted {
                    arg: arg.get_ref().clone(),
                    asset: asset.get_ref().clone(),
                })
            }
            (Some(a), None) | (None, Some(a)) => {
                let msg = format!("{where_}: `amount` and `asset` go together (the argument and the asset it is counted as)");
                self.err(a.span(), msg);
                ok = false;
                None
            }
        };
        if let Some(r) = &f.recipient {
            ok &= self.param(&where_, &abi, r, "`recipient`", |t| {
                matches!(t, DynSolType::Address)
            });
            if amount.is_none() {
                let msg = format!("{where_}: `recipient` receives the `amount`, which is not set");
                self.err(r.span(), msg);
                ok = false;
            }
        }
        let inner = match &f.inner {
            Some(i) => {
                let one = find(&abi, i.get_ref())
                    .and_then(|p| p.resolve().ok())
                    .is_some_and(|t| t == DynSolType::Bytes);
                ok &= self.param(&where_, &abi, i, "`inner`", |t| {
                    *t == DynSolType::Bytes
                        || matches!(t, DynSolType::Array(e) if **e == DynSolType::Bytes)
                });
                match (&f.inner_to, one) {
                    (Some(to), true) => {
                        ok &= self.param(&where_, &abi, to, "`inner_to`", |t| {
                            *t == DynSolType::Address
                        });
                    }
                    (None, true) => {
                        let msg = format!("{where_}: `inner` is one call (`bytes`): name the address it goes to with `inner_to`");
                        self.err(i.span(), msg);
                        ok = false;
                    }
                    (Some(to), false) => {
                        let msg = format!("{where_}: `inner_to` is for one inner call (`bytes`); a `bytes[]` multicall calls this contract");
                        self.err(to.span(), msg);
                        ok = false;
                    }
                    (None, false) => {}
                }
                for (l, what) in [
                    (&f.inner_value, "`inner_value`"),
                    (&f.inner_operation, "`inner_operation`"),
                ] {
                    if let Some(l) = l {
                        ok &= self
                            .param(&where_, &abi, l, what, |t| matches!(t, DynSolType::Uint(_)));
                    }
                }
                Some(Inner {
                    arg: i.get_ref().clone(),
                    to: f.inner_to.as_ref().map(|l| l.get_ref().clone()),
                    value: f.inner_value.as_ref().map(|l| l.get_ref().clone()),
                    operation: f.inner_operation.as_ref().map(|l| l.get_ref().clone()),
                })
            }
            None => {
                let extra = [
                    (&f.inner_to, "inner_to"),
                    (&f.inner_value, "inner_value"),
                    (&f.inner_operation, "inner_operation"),
                ];
                for (l, key) in extra {
                    if let Some(l) = l {
                        self.err(l.span(), format!("{where_}: `{key}` needs `inner`"));
                        ok = false;
                    }
                }
                None
            }
        };
        let mut args = BTreeMap::new();
        for (name, rule) in &f.args {
            let Some(ty) = find(&abi, name.get_ref()).and_then(|p| p.resolve().ok()) else {
                self.err(
                    name.span(),
                    format!("{where_}: no parameter `{}`", name.get_ref()),
                );
                ok = false;
                continue;
            };
            match self.arg_rule(site.chain, Some(&ty), name, rule.get_ref()) {
                Some(r) if r == ArgRule::default() => {
                    let msg = format!("argument `{}`: no constraint (give `eq`, `one_of`, `min`, `max`, `allowlisted` or `prefix`)", name.get_ref());
                    self.err(rule.span(), msg);
                    ok = false;
                }
                Some(r) => {
                    args.insert(name.get_ref().clone(), r);
                }
                None => ok = false,
            }
        }
        ok.then(|| FunctionRule {
            signature: canonical_signature(&abi),
            args,
            amount,
            recipient: f.recipient.map(|r| r.into_inner()),
            inner,
            abi,
        })
    }

    /// Checks that `name` is a parameter of a type `want` accepts.
    fn param(
        &mut self,
        where_: &str,
        abi: &Function,
        name: &Label,
        what: &str,
        want: impl Fn(&DynSolType) -> bool,
    ) -> bool {
        match find(abi, name.get_ref()).map(|p| (p, p.resolve())) {
            Some((_, Ok(t))) if want(&t) => true,
            Some((p, _)) => {
                let msg = format!(
                    "{where_}: {what} names `{}`, of type `{}`, which it cannot be",
                    name.get_ref(),
                    p.ty
                );
                self.err(name.span(), msg);
                false
            }
            None => {
                self.err(
                    name.span(),
                    format!("{where_}: {what} names no parameter `{}`", name.get_ref()),
                );
                false
            }
        }
    }

    /// The constraints on one argument of type `ty`, or on a typed-data field whose type only
    /// the request declares (`None`: checked against the value when a request comes).
    pub(super) fn arg_rule(
        &mut self,
        chain: &ChainRef,
        ty: Option<&DynSolType>,
        name: &Label,
        raw: &RawArg,
    ) -> Option<ArgRule> {
        let arg = name.get_ref();
        let mut ok = true;
        let value = |v: &mut Self, lit: &Lit, what: &str| -> Option<String> {
            let r = match ty {
                Some(ty) => literal(chain, ty, lit.get_ref()),
                None => any_literal(lit.get_ref()),
            };
            r.map_err(|e| v.err(lit.span(), format!("argument `{arg}`, `{what}`: {e}")))
                .ok()
        };
        let eq = raw.eq.as_ref().and_then(|l| value(self, l, "eq"));
        ok &= raw.eq.is_none() || eq.is_some();
        let mut one_of = Vec::new();
        for l in raw.one_of.iter().flatten() {
            match value(self, l, "one_of") {
                Some(v) => one_of.push(v),
                None => ok = false,
            }
        }
        one_of.sort();
        one_of.dedup();
        let bound = |v: &mut Self, lit: &Option<Lit>, what: &str| -> Option<Bound> {
            let lit = lit.as_ref()?;
            if let Some(ty) = ty.filter(|t| !matches!(t, DynSolType::Uint(_))) {
                v.err(
                    lit.span(),
                    format!("argument `{arg}`: `{what}` applies to unsigned integers, not `{ty}`"),
                );
                return None;
            }
            match literals::amount(lit.get_ref()) {
                Ok(n) => Some(Bound(U256::from(n))),
                Err(e) => {
                    v.err(lit.span(), format!("argument `{arg}`, `{what}`: {e}"));
                    None
                }
            }
        };
        let min = bound(self, &raw.min, "min");
        let max = bound(self, &raw.max, "max");
        ok &= raw.min.is_none() == min.is_none() && raw.max.is_none() == max.is_none();
        let allowlisted = raw.allowlisted.as_ref().is_some_and(|a| *a.get_ref());
        if let Some(a) = &raw.allowlisted {
            if let Some(ty) = ty.filter(|t| *a.get_ref() && **t != DynSolType::Address) {
                self.err(
                    a.span(),
                    format!("argument `{arg}`: `allowlisted` applies to addresses, not `{ty}`"),
                );
                ok = false;
            }
        }
        let prefix = match &raw.prefix {
            None => None,
            Some(p) => {
                match ty.map_or_else(|| any_prefix(p.get_ref()), |ty| prefix(ty, p.get_ref())) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.err(p.span(), format!("argument `{arg}`, `prefix`: {e}"));
                        ok = false;
                        None
                    }
                }
            }
        };
        ok.then_some(ArgRule {
            eq,
            one_of,
            min,
            max,
            allowlisted,
            prefix,
        })
    }
}

fn find<'f>(abi: &'f Function, name: &str) -> Option<&'f Param> {
    abi.inputs
        .iter()
        .find(|p| !p.name.is_empty() && p.name == name)
}

/// A constraint value of a field whose type the policy does not know: 0x-hex in lowercase,
/// integers (or strings of digits) in decimal, booleans as `true`/`false`, other text as is.
fn any_literal(v: &Value) -> Result<String, String> {
    match v {
        Value::Integer(_) => literals::amount(v).map(|n| n.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        Value::String(s) if s.starts_with("0x") => hex_bytes(s),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'_') => {
            literals::amount(v).map(|n| n.to_string())
        }
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "expected a string, integer or boolean, found {}",
            literals::describe(other)
        )),
    }
}

fn any_prefix(p: &str) -> Result<String, String> {
    if p.starts_with("0x") {
        hex_bytes(p)
    } else {
        Ok(p.to_string())
    }
}

/// A constraint value in the canonical text of its argument's type.
fn literal(chain: &ChainRef, ty: &DynSolType, v: &Value) -> Result<String, String> {
    match (ty, v) {
        (DynSolType::Address, Value::String(s)) => crate::address::normalise(chain, s),
        (DynSolType::Uint(_), _) => literals::amount(v).map(|n| n.to_string()),
        (DynSolType::Bool, Value::Boolean(b)) => Ok(b.to_string()),
        (DynSolType::String, Value::String(s)) => Ok(s.clone()),
        (DynSolType::FixedBytes(n), Value::String(s)) => {
            let h = hex_bytes(s)?;
            if h.len() != 2 + 2 * n {
                return Err(format!("expected {n} bytes of 0x-hex, found `{s}`"));
            }
            Ok(h)
        }
        (DynSolType::Bytes, Value::String(s)) => hex_bytes(s),
        (DynSolType::Address | DynSolType::Bool | DynSolType::String | DynSolType::FixedBytes(_) | DynSolType::Bytes, other) => {
            Err(format!("expected a `{ty}` value, found {}", literals::describe(other)))
        }
        _ => Err(format!("constraints apply to elementary types (address, uint, bool, bytes, string), not `{ty}`")),
    }
}

fn hex_bytes(s: &str) -> Result<String, String> {
    let h = s
        .strip_prefix("0x")
        .ok_or_else(|| format!("expected 0x-hex, found `{s}`"))?;
    if h.len() % 2 != 0 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("expected whole bytes of 0x-hex, found `{s}`"));
    }
    Ok(format!("0x{}", h.to_ascii_lowercase()))
}

fn prefix(ty: &DynSolType, p: &str) -> Result<String, String> {
    match ty {
        DynSolType::Bytes | DynSolType::FixedBytes(_) => hex_bytes(p),
        DynSolType::String => Ok(p.to_string()),
        _ => Err(format!("`prefix` applies to bytes and strings, not `{ty}`")),
    }
}
