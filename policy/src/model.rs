//! The validated policy model and its canonical hash.
//!
//! A [`Policy`] only exists once a file has parsed and passed every semantic check. Its
//! canonical form is deterministic JSON of this model (ordered maps, normalised addresses,
//! amounts as decimal strings, durations in seconds), so whitespace, comments, key order and
//! address case in the TOML change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use proto::intent::{u128_string, Asset, ChainRef};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::{PolicyError, PolicyWarning};

/// Domain-separation prefix of the policy hash.
pub const POLICY_DOMAIN: &[u8] = b"custody-policy/policy/v1\0";

/// SHA-256 over the canonical policy form; displayed and serialised as lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyHash(pub [u8; 32]);

impl fmt::Display for PolicyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for PolicyHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| format!("expected a policy hash of 64 hex digits, found `{s}`"))?;
        Ok(PolicyHash(out))
    }
}

impl Serialize for PolicyHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A validated policy. Build one with [`Policy::from_toml`] or [`Policy::check`].
///
/// Two policies are equal when they mean the same (same canonical form): the warnings, which
/// name the file they were read from, do not count.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) doc: PolicyDoc,
    hash: PolicyHash,
    warnings: Vec<PolicyWarning>,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.doc == other.doc
    }
}

impl Eq for Policy {}

impl Policy {
    /// Parses and validates a policy file; the error names `file_name`, line and column.
    pub fn from_toml(text: &str, file_name: &str) -> Result<Policy, PolicyError> {
        Self::check(text, file_name).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Like [`Policy::from_toml`], but reports every semantic error it finds (sorted by
    /// position). A syntax error stops parsing, so it is always reported alone.
    pub fn check(text: &str, file_name: &str) -> Result<Policy, Vec<PolicyError>> {
        crate::parse::parse(text, file_name).map(|(doc, warnings)| Policy::new(doc, warnings))
    }

    pub(crate) fn new(doc: PolicyDoc, warnings: Vec<PolicyWarning>) -> Policy {
        let mut hasher = Sha256::new();
        hasher.update(POLICY_DOMAIN);
        hasher.update(canonical(&doc));
        Policy {
            doc,
            hash: PolicyHash(hasher.finalize().into()),
            warnings,
        }
    }

    /// SHA-256 of the domain prefix and the canonical form.
    pub fn hash(&self) -> PolicyHash {
        self.hash
    }

    /// The canonical form that [`Policy::hash`] covers (without the domain prefix).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical(&self.doc)
    }

    /// The policy version; a node only installs a version higher than the one it runs.
    pub fn version(&self) -> u64 {
        self.doc.version
    }

    /// The optional `name` from the file.
    pub fn name(&self) -> Option<&str> {
        self.doc.name.as_deref()
    }

    /// How far back this policy looks: a node may forget what lies beyond these (see the
    /// node's pruning), never what lies within.
    pub fn horizons(&self) -> Horizons {
        let d = &self.doc;
        let limits = d
            .assets
            .values()
            .map(|a| &a.limits)
            .chain(d.accounts.values().flat_map(|a| a.limits.values()))
            .chain(d.account_classes.values().flat_map(|a| a.limits.values()));
        Horizons {
            longest_window: limits
                .flat_map(|l| l.velocity.iter().map(|w| w.window))
                .max()
                .unwrap_or(0),
            longest_delay: d
                .assets
                .values()
                .flat_map(|a| a.timelock.iter().map(|t| t.delay))
                .max()
                .unwrap_or(0),
            request_max_age: d.request_max_age.unwrap_or(0),
        }
    }

    /// The key's `refresh_every` in seconds: its shares are refreshed on that schedule, and a
    /// node accepts a refresh no officer signed only when this policy sets it.
    pub fn refresh_every(&self, key_id: &str) -> Option<u64> {
        self.doc.keys.get(key_id).and_then(|k| k.refresh_every)
    }

    /// Advice for a policy that is valid but probably not what its authors meant, file-wide
    /// warnings first, then by position in the file.
    pub fn warnings(&self) -> &[PolicyWarning] {
        &self.warnings
    }
}

/// How far back a policy looks, in seconds (0 where the policy has no such rule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Horizons {
    /// The longest velocity window (`limit.velocity`).
    pub longest_window: u64,
    /// The longest time-lock delay (`timelock.tier`), counted from a request's first sight.
    pub longest_delay: u64,
    /// `request.max_age`, counted from a request's first sight.
    pub request_max_age: u64,
}

fn canonical(doc: &PolicyDoc) -> Vec<u8> {
    // A struct of strings, integers, booleans and ordered maps always serialises.
    serde_json::to_vec(doc).unwrap_or_default()
}

fn chain_ser<S: Serializer>(c: &ChainRef, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::address::chain_name(c))
}

fn asset_ser<S: Serializer>(a: &Asset, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&a.id())
}

fn keys_ser<S: Serializer>(keys: &BTreeSet<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(keys.iter().map(hex::encode))
}

/// The whole validated file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PolicyDoc {
    pub version: u64,
    pub name: Option<String>,
    pub description: Option<String>,
    pub request_max_age: Option<u64>,
    pub chains: BTreeMap<String, ChainRule>,
    pub assets: BTreeMap<String, AssetRule>,
    pub keys: BTreeMap<String, KeyRule>,
    pub approvers: BTreeMap<String, ApproverGroup>,
    pub destinations: DestinationRules,
    /// Omitted when empty, so that a policy without classes keeps the hash it always had.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub account_classes: BTreeMap<String, AccountRule>,
    /// Each account already merged with its class.
    pub accounts: BTreeMap<String, AccountRule>,
    /// Omitted when empty, so that a policy without contracts keeps the hash it always had.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub contracts: BTreeMap<String, crate::calls::ContractRule>,
    /// Omitted when empty, like `contracts`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub typed_data: BTreeMap<String, crate::calls::TypedRule>,
}

/// `[chains.<label>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ChainRule {
    #[serde(serialize_with = "chain_ser")]
    pub id: ChainRef,
    #[serde(with = "u128_string")]
    pub max_fee: u128,
    pub contract_calls: bool,
    pub messages: bool,
}

/// `[assets.<label>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AssetRule {
    pub chain: String,
    #[serde(serialize_with = "asset_ser")]
    pub asset: Asset,
    pub limits: Limits,
    pub timelock: Vec<TimelockTier>,
    pub approval: Vec<ApprovalTier>,
    /// Spenders an unlimited allowance of this token may go to (`allowance.unlimited`).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub unlimited_spenders: BTreeSet<String>,
}

/// Per-transaction and velocity limits for one asset (global or per account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Limits {
    #[serde(with = "u128_string")]
    pub per_tx: u128,
    pub velocity: Vec<Window>,
}

/// One rolling window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct Window {
    pub window: u64,
    pub per_destination: bool,
    #[serde(with = "u128_string")]
    pub max: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct TimelockTier {
    #[serde(with = "u128_string")]
    pub at_or_above: u128,
    pub delay: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct ApprovalTier {
    #[serde(with = "u128_string")]
    pub at_or_above: u128,
    pub require: BTreeMap<String, u32>,
}

/// `[keys.<key id>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct KeyRule {
    pub assets: BTreeSet<String>,
    pub frozen: bool,
    /// Seconds between scheduled share refreshes (`docs/lifecycle.md`); absent from the
    /// canonical encoding when unset, so older policies keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_every: Option<u64>,
}

/// `[approvers.<group>]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ApproverGroup {
    #[serde(serialize_with = "keys_ser")]
    pub keys: BTreeSet<[u8; 32]>,
}

/// `[destinations]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DestinationRules {
    pub require_allowlist: bool,
    pub cooldown: Option<u64>,
    pub allow: AllowList,
    pub deny: DenyList,
}

/// Chain label → normalised address → entry.
pub(crate) type AllowList = BTreeMap<String, BTreeMap<String, AllowEntry>>;
/// Chain label → normalised address → entry.
pub(crate) type DenyList = BTreeMap<String, BTreeMap<String, DenyEntry>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AllowEntry {
    pub label: String,
    pub added: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DenyEntry {
    pub reason: Option<String>,
}

/// The class that applies to an account without an `[accounts.<name>]` section.
pub(crate) const DEFAULT_CLASS: &str = "default";

/// `[accounts.<name>]` (or `[account_classes.<class>]`): overrides for intents whose `account`
/// matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AccountRule {
    /// The class the rule was merged with; always `None` for a class itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Asset label → limits that replace the asset's own limits.
    pub limits: BTreeMap<String, Limits>,
    /// Replaces the global allowlist when present.
    pub allow: Option<AllowList>,
    /// Added to the global denylist.
    pub deny: DenyList,
}

impl PolicyDoc {
    /// The label of the chain an intent names.
    pub fn chain_label(&self, chain: &ChainRef) -> Option<&str> {
        self.chains
            .iter()
            .find(|(_, c)| &c.id == chain)
            .map(|(label, _)| label.as_str())
    }

    /// The label of an asset on a chain label.
    pub fn asset_label(&self, chain_label: &str, asset: &Asset) -> Option<&str> {
        self.assets
            .iter()
            .find(|(_, a)| a.chain == chain_label && &a.asset == asset)
            .map(|(label, _)| label.as_str())
    }

    /// The allowlist in force for an account: its own when it has one, else the global one.
    pub fn allow_list_for<'a>(&'a self, account: Option<&'a AccountRule>) -> &'a AllowList {
        match account.and_then(|a| a.allow.as_ref()) {
            Some(list) => list,
            None => &self.destinations.allow,
        }
    }

    /// The group an approver key belongs to (a key belongs to at most one group).
    pub fn group_of(&self, key: &[u8; 32]) -> Option<&str> {
        self.approvers
            .iter()
            .find(|(_, g)| g.keys.contains(key))
            .map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hash_round_trips_through_hex() {
        let h = PolicyHash([0xab; 32]);
        assert_eq!(h.to_string().parse::<PolicyHash>().unwrap(), h);
        assert!("xyz".parse::<PolicyHash>().is_err());
    }
}
