//! The policy file exactly as written: serde structs that keep the span of every value that a
//! semantic check may need to point at. Unknown fields are errors everywhere.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::{Spanned, Value};

pub(crate) type Label = Spanned<String>;
pub(crate) type Lit = Spanned<Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub version: Spanned<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub request: Option<RawRequest>,
    #[serde(default)]
    pub chains: BTreeMap<Label, RawChain>,
    #[serde(default)]
    pub assets: BTreeMap<Label, RawAsset>,
    #[serde(default)]
    pub keys: BTreeMap<Label, RawKey>,
    #[serde(default)]
    pub approvers: BTreeMap<Label, RawGroup>,
    pub destinations: Option<RawDestinations>,
    #[serde(default)]
    pub account_classes: BTreeMap<Label, RawAccount>,
    #[serde(default)]
    pub accounts: BTreeMap<Label, RawAccount>,
    #[serde(default)]
    pub contracts: BTreeMap<Label, RawContract>,
    #[serde(default)]
    pub typed_data: BTreeMap<Label, RawTypedData>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequest {
    pub max_age: Option<Lit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChain {
    pub id: Label,
    pub max_fee: Lit,
    #[serde(default)]
    pub contract_calls: bool,
    #[serde(default)]
    pub messages: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAsset {
    pub chain: Label,
    pub asset: Label,
    pub per_tx: Lit,
    #[serde(default)]
    pub velocity: Vec<RawWindow>,
    #[serde(default)]
    pub timelock: Vec<RawTimelock>,
    #[serde(default)]
    pub approval: Vec<RawApproval>,
    #[serde(default)]
    pub unlimited_spenders: Vec<Label>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    pub window: Lit,
    pub max: Lit,
    #[serde(default)]
    pub per_destination: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimelock {
    pub at_or_above: Lit,
    pub delay: Lit,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApproval {
    pub at_or_above: Lit,
    pub require: Spanned<BTreeMap<Label, Spanned<i64>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub assets: Vec<Label>,
    #[serde(default)]
    pub frozen: bool,
    pub refresh_every: Option<Lit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub keys: Spanned<Vec<Label>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestinations {
    #[serde(default = "yes")]
    pub require_allowlist: bool,
    pub cooldown: Option<Lit>,
    #[serde(default)]
    pub allow: Vec<RawAllow>,
    #[serde(default)]
    pub deny: Vec<RawDeny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllow {
    pub chain: Label,
    pub address: Label,
    pub label: String,
    pub added: Option<Lit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeny {
    pub chain: Label,
    pub address: Label,
    pub reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccount {
    /// Only meaningful in `[accounts.<name>]`; validation refuses it in a class.
    pub class: Option<Label>,
    #[serde(default)]
    pub limits: BTreeMap<Label, RawLimits>,
    pub allow: Option<Vec<RawAllow>>,
    #[serde(default)]
    pub deny: Vec<RawDeny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub per_tx: Lit,
    #[serde(default)]
    pub velocity: Vec<RawWindow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContract {
    pub chain: Label,
    pub address: Label,
    #[serde(default)]
    pub functions: BTreeMap<Label, RawFunction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFunction {
    /// A Solidity signature: `settle(bytes32 batch, address to, uint256 amount)`.
    pub signature: Option<Label>,
    /// Or the JSON ABI fragment of one function.
    pub abi: Option<Label>,
    pub amount: Option<Label>,
    pub asset: Option<Label>,
    pub recipient: Option<Label>,
    pub inner: Option<Label>,
    pub inner_to: Option<Label>,
    pub inner_value: Option<Label>,
    pub inner_operation: Option<Label>,
    #[serde(default)]
    pub args: BTreeMap<Label, Spanned<RawArg>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawArg {
    pub eq: Option<Lit>,
    pub one_of: Option<Vec<Lit>>,
    pub min: Option<Lit>,
    pub max: Option<Lit>,
    pub allowlisted: Option<Spanned<bool>>,
    pub prefix: Option<Label>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTypedData {
    pub chain: Label,
    pub verifying_contract: Label,
    pub name: Option<String>,
    pub version: Option<String>,
    pub primary_type: Label,
    /// An EIP-2612 `Permit` of this asset's token: an allowance of `value` to `spender`.
    pub permit: Option<Label>,
    #[serde(default)]
    pub fields: BTreeMap<Label, Spanned<RawArg>>,
}
