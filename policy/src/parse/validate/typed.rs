//! `[typed_data.<name>]`: the EIP-712 domains the key may sign for, and their constraints.

use std::collections::BTreeMap;

use proto::intent::Asset;

use super::super::raw::{Label, RawTypedData};
use super::Validator;
use crate::calls::TypedRule;
use crate::model::AssetRule;

impl Validator<'_> {
    pub(super) fn typed_data(
        &mut self,
        raw: BTreeMap<Label, RawTypedData>,
        assets: &BTreeMap<String, AssetRule>,
    ) -> BTreeMap<String, TypedRule> {
        let mut out = BTreeMap::new();
        for (label, t) in raw {
            let name = label.get_ref().clone();
            let Some(chain) = self.call_chain(&t.chain, &format!("[typed_data.{name}]")) else {
                continue;
            };
            let chain_label = t.chain.get_ref().clone();
            let Some(verifying_contract) = self.address(&t.chain, &t.verifying_contract) else {
                continue;
            };
            let primary_type = t.primary_type.get_ref().clone();
            let identifier = primary_type
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && primary_type
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !identifier {
                let msg = format!("`primary_type`: `{primary_type}` is not a type name");
                self.err(t.primary_type.span(), msg);
                continue;
            }
            let mut ok = true;
            let token = Asset::Erc20 {
                contract: verifying_contract.clone(),
            };
            if let Some(p) = &t.permit {
                let is_token = assets
                    .get(p.get_ref())
                    .is_some_and(|a| a.chain == chain_label && a.asset == token);
                if !is_token {
                    let msg = format!("`permit`: `{}` is not an erc20 asset on `{chain_label}` whose token is the verifying contract", p.get_ref());
                    self.err(p.span(), msg);
                    ok = false;
                }
                if primary_type != "Permit" {
                    let msg = format!("`permit` reads an EIP-2612 `Permit`, not `{primary_type}`");
                    self.err(t.primary_type.span(), msg);
                    ok = false;
                }
            }
            // An EIP-2612 permit of a token the policy names is an allowance: never signed
            // without being counted as one.
            let token_of = assets
                .iter()
                .find(|(_, a)| a.chain == chain_label && a.asset == token);
            if let (None, "Permit", Some((asset, _))) = (&t.permit, primary_type.as_str(), token_of)
            {
                let msg = format!("a `Permit` of the token of `[assets.{asset}]` is an allowance: give `permit = \"{asset}\"` so that it is counted as one");
                self.err(t.primary_type.span(), msg);
                ok = false;
            }
            let mut fields = BTreeMap::new();
            for (field, rule) in &t.fields {
                match self.arg_rule(&chain, None, field, rule.get_ref()) {
                    Some(r) if r == crate::calls::ArgRule::default() => {
                        let msg = format!("field `{}`: no constraint (give `eq`, `one_of`, `min`, `max`, `allowlisted` or `prefix`)", field.get_ref());
                        self.err(rule.span(), msg);
                        ok = false;
                    }
                    Some(r) => {
                        fields.insert(field.get_ref().clone(), r);
                    }
                    None => ok = false,
                }
            }
            if ok {
                let rule = TypedRule {
                    chain: chain_label,
                    verifying_contract,
                    name: t.name,
                    version: t.version,
                    primary_type,
                    permit: t.permit.map(|p| p.into_inner()),
                    fields,
                };
                out.insert(name, rule);
            }
        }
        out
    }
}
