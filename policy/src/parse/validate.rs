//! Semantic checks: every reference resolves, every amount and duration is in range, every
//! address parses for its chain, and every approval tier can be met.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use ed25519_dalek::VerifyingKey;
use proto::intent::{Asset, ChainRef};

mod accounts;

use super::raw::{
    Label, Lit, RawAllow, RawApproval, RawAsset, RawDeny, RawDestinations, RawPolicy, RawTimelock,
    RawWindow,
};
use crate::address::{chain_name, normalise, parse_chain};
use crate::error::PolicyError;
use crate::literals;
use crate::model::{
    AllowEntry, AllowList, ApprovalTier, ApproverGroup, AssetRule, ChainRule, DenyEntry, DenyList,
    DestinationRules, KeyRule, Limits, PolicyDoc, TimelockTier, Window,
};

pub(crate) struct Validator<'a> {
    file: &'a str,
    src: &'a str,
    errors: Vec<PolicyError>,
    chains: BTreeMap<String, ChainRule>,
    groups: BTreeMap<String, ApproverGroup>,
    cooldown: bool,
    /// Every label written, valid or not, so that a broken section is reported once and not
    /// again at each reference to it.
    written: BTreeSet<String>,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(file: &'a str, src: &'a str) -> Self {
        Validator {
            file,
            src,
            errors: Vec::new(),
            chains: BTreeMap::new(),
            groups: BTreeMap::new(),
            cooldown: false,
            written: BTreeSet::new(),
        }
    }

    pub(crate) fn into_errors(self) -> Vec<PolicyError> {
        self.errors
    }

    fn err(&mut self, span: Range<usize>, message: String) {
        self.errors
            .push(PolicyError::at(self.file, self.src, Some(span), message));
    }

    /// Validates the whole file. Returns `None` only when an error was recorded.
    pub(crate) fn policy(&mut self, raw: RawPolicy) -> Option<PolicyDoc> {
        let version = u64::try_from(*raw.version.get_ref())
            .ok()
            .filter(|v| *v >= 1);
        if version.is_none() {
            let found = raw.version.get_ref();
            self.err(
                raw.version.span(),
                format!("expected `version` to be a positive integer, found `{found}`"),
            );
        }
        let request_max_age = raw
            .request
            .and_then(|r| r.max_age)
            .and_then(|lit| self.duration(&lit, "`request.max_age`"));
        self.chains(raw.chains);
        self.groups(raw.approvers);
        let assets = self.assets(raw.assets);
        let keys = self.keys(raw.keys, &assets);
        let destinations = self.destinations(raw.destinations);
        let account_classes = self.account_classes(raw.account_classes, &assets);
        let accounts = self.accounts(raw.accounts, &assets, &account_classes);
        Some(PolicyDoc {
            version: version?,
            name: raw.name,
            description: raw.description,
            request_max_age,
            chains: std::mem::take(&mut self.chains),
            assets,
            keys,
            approvers: std::mem::take(&mut self.groups),
            destinations,
            account_classes,
            accounts,
        })
    }

    fn amount(&mut self, lit: &Lit, what: &str, nonzero: bool) -> Option<u128> {
        match literals::amount(lit.get_ref()) {
            Ok(0) if nonzero => {
                self.err(lit.span(), format!("{what} must be greater than 0: a limit of 0 would refuse everything; remove the asset or key instead"));
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                self.err(lit.span(), format!("{what}: {e}"));
                None
            }
        }
    }

    fn duration(&mut self, lit: &Lit, what: &str) -> Option<u64> {
        match literals::duration(lit.get_ref()) {
            Ok(0) => {
                self.err(lit.span(), format!("{what} must be longer than 0 seconds"));
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                self.err(lit.span(), format!("{what}: {e}"));
                None
            }
        }
    }

    fn chains(&mut self, raw: BTreeMap<Label, super::raw::RawChain>) {
        let mut seen: BTreeMap<ChainRef, String> = BTreeMap::new();
        self.written
            .extend(raw.keys().map(|l| format!("chain:{}", l.get_ref())));
        for (label, c) in raw {
            let id = match parse_chain(c.id.get_ref()) {
                Ok(id) => id,
                Err(e) => {
                    self.err(c.id.span(), e);
                    continue;
                }
            };
            if let Some(other) = seen.get(&id) {
                let msg = format!(
                    "chain `{}` is already defined as `[chains.{other}]`",
                    c.id.get_ref()
                );
                self.err(c.id.span(), msg);
                continue;
            }
            seen.insert(id.clone(), label.get_ref().clone());
            let max_fee = self.amount(&c.max_fee, "`max_fee`", true).unwrap_or(0);
            let rule = ChainRule {
                id,
                max_fee,
                contract_calls: c.contract_calls,
                messages: c.messages,
            };
            self.chains.insert(label.into_inner(), rule);
        }
    }

    fn groups(&mut self, raw: BTreeMap<Label, super::raw::RawGroup>) {
        let mut owner: BTreeMap<[u8; 32], String> = BTreeMap::new();
        for (name, g) in raw {
            if g.keys.get_ref().is_empty() {
                self.err(
                    g.keys.span(),
                    format!("approver group `{}` has no keys", name.get_ref()),
                );
            }
            let mut keys = BTreeSet::new();
            for k in g.keys.into_inner() {
                let Some(key) = self.approver_key(&k) else {
                    continue;
                };
                if let Some(other) = owner.get(&key) {
                    let msg = if other == name.get_ref() {
                        format!(
                            "approver key `{}` is listed twice in group `{other}`",
                            k.get_ref()
                        )
                    } else {
                        format!("approver key `{}` is already in group `{other}`; a key may belong to one group only", k.get_ref())
                    };
                    self.err(k.span(), msg);
                    continue;
                }
                owner.insert(key, name.get_ref().clone());
                keys.insert(key);
            }
            self.groups
                .insert(name.into_inner(), ApproverGroup { keys });
        }
    }

    fn approver_key(&mut self, k: &Label) -> Option<[u8; 32]> {
        let mut bytes = [0u8; 32];
        let parsed = hex::decode_to_slice(k.get_ref(), &mut bytes)
            .ok()
            .and_then(|()| VerifyingKey::from_bytes(&bytes).ok());
        match parsed {
            Some(vk) if !vk.is_weak() => Some(bytes),
            _ => {
                let msg = format!(
                    "malformed approver key `{}`: expected an ed25519 public key as 64 hex digits",
                    k.get_ref()
                );
                self.err(k.span(), msg);
                None
            }
        }
    }

    fn chain_ref(&mut self, label: &Label) -> Option<ChainRef> {
        if let Some(c) = self.chains.get(label.get_ref()) {
            return Some(c.id.clone());
        }
        if self.written.contains(&format!("chain:{}", label.get_ref())) {
            return None;
        }
        let known = self
            .chains
            .keys()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = format!(
            "unknown chain `{}`: expected one of the `[chains.<label>]` sections ({known})",
            label.get_ref()
        );
        self.err(label.span(), msg);
        None
    }

    fn assets(&mut self, raw: BTreeMap<Label, RawAsset>) -> BTreeMap<String, AssetRule> {
        let mut out = BTreeMap::new();
        let mut seen: BTreeMap<(String, Asset), String> = BTreeMap::new();
        self.written
            .extend(raw.keys().map(|l| format!("asset:{}", l.get_ref())));
        for (label, a) in raw {
            let chain = self.chain_ref(&a.chain);
            let asset = chain.as_ref().and_then(|c| self.asset_id(c, &a.asset));
            let limits = self.limits(&a.per_tx, &a.velocity);
            let timelock = self.timelocks(&a.timelock);
            let approval = a
                .approval
                .iter()
                .filter_map(|t| self.approval_tier(t))
                .collect::<Vec<_>>();
            let (Some(asset), Some(limits)) = (asset, limits) else {
                continue;
            };
            let key = (a.chain.get_ref().clone(), asset.clone());
            if let Some(other) = seen.get(&key) {
                let msg = format!(
                    "asset `{}` on `{}` is already defined as `[assets.{other}]`",
                    a.asset.get_ref(),
                    a.chain.get_ref()
                );
                self.err(a.asset.span(), msg);
                continue;
            }
            seen.insert(key, label.get_ref().clone());
            let mut approval = approval;
            approval.sort();
            let rule = AssetRule {
                chain: a.chain.into_inner(),
                asset,
                limits,
                timelock,
                approval,
            };
            out.insert(label.into_inner(), rule);
        }
        out
    }

    fn asset_id(&mut self, chain: &ChainRef, id: &Label) -> Option<Asset> {
        let text = id.get_ref();
        if text == "native" {
            return Some(Asset::Native);
        }
        let result = match (text.strip_prefix("erc20:"), chain) {
            (Some(contract), ChainRef::Ethereum { .. }) => {
                normalise(chain, contract).map(|contract| Asset::Erc20 { contract })
            }
            (Some(_), _) => Err(format!(
                "erc20 tokens only exist on ethereum chains, not on `{}`",
                chain_name(chain)
            )),
            (None, _) => Err(format!(
                "expected an asset id `native` or `erc20:0x<contract>`, found `{text}`"
            )),
        };
        result.map_err(|e| self.err(id.span(), e)).ok()
    }

    fn limits(&mut self, per_tx: &Lit, velocity: &[RawWindow]) -> Option<Limits> {
        let per_tx = self.amount(per_tx, "`per_tx`", true);
        let mut windows: Vec<Window> = Vec::new();
        for w in velocity {
            let window = self.duration(&w.window, "velocity `window`");
            let max = self.amount(&w.max, "velocity `max`", true);
            let (Some(window), Some(max)) = (window, max) else {
                continue;
            };
            if windows
                .iter()
                .any(|o| o.window == window && o.per_destination == w.per_destination)
            {
                self.err(
                    w.window.span(),
                    format!(
                        "velocity window `{}` is defined twice",
                        literals::format_duration(window)
                    ),
                );
                continue;
            }
            windows.push(Window {
                window,
                per_destination: w.per_destination,
                max,
            });
        }
        windows.sort();
        Some(Limits {
            per_tx: per_tx?,
            velocity: windows,
        })
    }

    fn timelocks(&mut self, raw: &[RawTimelock]) -> Vec<TimelockTier> {
        let mut out: Vec<TimelockTier> = raw
            .iter()
            .filter_map(|t| {
                let at_or_above = self.amount(&t.at_or_above, "time-lock `at_or_above`", false);
                let delay = self.duration(&t.delay, "time-lock `delay`");
                Some(TimelockTier {
                    at_or_above: at_or_above?,
                    delay: delay?,
                })
            })
            .collect();
        out.sort();
        out
    }

    fn approval_tier(&mut self, t: &RawApproval) -> Option<ApprovalTier> {
        let at_or_above = self.amount(&t.at_or_above, "approval `at_or_above`", false);
        if t.require.get_ref().is_empty() {
            self.err(
                t.require.span(),
                "approval `require` names no group: expected e.g. `{ treasury = 2 }`".into(),
            );
        }
        let mut require = BTreeMap::new();
        for (group, count) in t.require.get_ref() {
            let size = match self.groups.get(group.get_ref()) {
                Some(g) => g.keys.len(),
                None => {
                    let known = self
                        .groups
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let msg = format!("approver group `{}` does not exist: expected one of the `[approvers.<group>]` sections ({known})", group.get_ref());
                    self.err(group.span(), msg);
                    continue;
                }
            };
            let n = *count.get_ref();
            match u32::try_from(n) {
                Ok(n) if n >= 1 && usize::try_from(n).is_ok_and(|n| n <= size) => {
                    require.insert(group.get_ref().clone(), n);
                }
                Ok(n) if n >= 1 => {
                    let msg = format!(
                        "tier needs {n} approvals from group `{}`, which has only {size} keys",
                        group.get_ref()
                    );
                    self.err(count.span(), msg);
                }
                _ => self.err(
                    count.span(),
                    format!("an approval count must be at least 1, found `{n}`"),
                ),
            }
        }
        Some(ApprovalTier {
            at_or_above: at_or_above?,
            require,
        })
    }

    fn keys(
        &mut self,
        raw: BTreeMap<Label, super::raw::RawKey>,
        assets: &BTreeMap<String, AssetRule>,
    ) -> BTreeMap<String, KeyRule> {
        let mut out = BTreeMap::new();
        for (key, k) in raw {
            let mut allowed = BTreeSet::new();
            for a in &k.assets {
                if assets.contains_key(a.get_ref()) {
                    allowed.insert(a.get_ref().clone());
                } else {
                    self.unknown_asset(a, assets);
                }
            }
            out.insert(
                key.into_inner(),
                KeyRule {
                    assets: allowed,
                    frozen: k.frozen,
                },
            );
        }
        out
    }

    fn unknown_asset(&mut self, a: &Label, assets: &BTreeMap<String, AssetRule>) {
        if self.written.contains(&format!("asset:{}", a.get_ref())) {
            return;
        }
        let known = assets
            .keys()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let msg = format!(
            "unknown asset `{}`: expected one of the `[assets.<label>]` sections ({known})",
            a.get_ref()
        );
        self.err(a.span(), msg);
    }

    fn destinations(&mut self, raw: Option<RawDestinations>) -> DestinationRules {
        let Some(raw) = raw else {
            return DestinationRules {
                require_allowlist: true,
                cooldown: None,
                allow: AllowList::new(),
                deny: DenyList::new(),
            };
        };
        let cooldown = raw
            .cooldown
            .as_ref()
            .and_then(|c| self.duration(c, "`destinations.cooldown`"));
        self.cooldown = raw.cooldown.is_some();
        let allow = self.allow_list(&raw.allow);
        let deny = self.deny_list(&raw.deny);
        DestinationRules {
            require_allowlist: raw.require_allowlist,
            cooldown,
            allow,
            deny,
        }
    }

    fn address(&mut self, chain: &Label, address: &Label) -> Option<String> {
        let chain = self.chain_ref(chain)?;
        normalise(&chain, address.get_ref())
            .map_err(|e| self.err(address.span(), e))
            .ok()
    }

    fn allow_list(&mut self, raw: &[RawAllow]) -> AllowList {
        let mut out = AllowList::new();
        for e in raw {
            let Some(address) = self.address(&e.chain, &e.address) else {
                continue;
            };
            let added = e
                .added
                .as_ref()
                .and_then(|a| match literals::timestamp(a.get_ref()) {
                    Ok(t) => Some(t),
                    Err(msg) => {
                        self.err(a.span(), format!("`added`: {msg}"));
                        None
                    }
                });
            if self.cooldown && e.added.is_none() {
                let msg = format!(
                    "allowlist entry `{}` has no `added` time, which `destinations.cooldown` needs",
                    e.address.get_ref()
                );
                self.err(e.address.span(), msg);
            }
            let entries = out.entry(e.chain.get_ref().clone()).or_default();
            if entries.contains_key(&address) {
                self.err(
                    e.address.span(),
                    format!(
                        "address `{}` is on the allowlist twice",
                        e.address.get_ref()
                    ),
                );
                continue;
            }
            entries.insert(
                address,
                AllowEntry {
                    label: e.label.clone(),
                    added,
                },
            );
        }
        out
    }

    fn deny_list(&mut self, raw: &[RawDeny]) -> DenyList {
        let mut out = DenyList::new();
        for e in raw {
            let Some(address) = self.address(&e.chain, &e.address) else {
                continue;
            };
            let entries = out.entry(e.chain.get_ref().clone()).or_default();
            if entries.contains_key(&address) {
                self.err(
                    e.address.span(),
                    format!("address `{}` is on the denylist twice", e.address.get_ref()),
                );
                continue;
            }
            entries.insert(
                address,
                DenyEntry {
                    reason: e.reason.clone(),
                },
            );
        }
        out
    }
}
