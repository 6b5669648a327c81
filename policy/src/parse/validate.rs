//! Semantic checks: every reference resolves, every amount and duration is in range, every
//! address parses for its chain, and every approval tier can be met.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use ed25519_dalek::VerifyingKey;
use proto::intent::{Asset, ChainRef};

mod accounts;
mod contracts;
mod typed;

use super::raw::{
    Label, Lit, RawAllow, RawApproval, RawAsset, RawDeny, RawDestinations, RawPolicy, RawTimelock,
    RawWindow,
};
use crate::address::{chain_name, normalise, parse_chain};
use crate::error::{PolicyError, PolicyWarning};
use crate::literals;
use crate::model::{
    AllowEntry, AllowList, ApprovalTier, ApproverGroup, AssetRule, ChainRule, DenyEntry, DenyList,
    DestinationRules, KeyRule, Limits, PolicyDoc, TimelockTier, Window,
};
use crate::tags;

/// The shortest `refresh_every`: a refresh is cheap, but each one deletes the key's
/// presignatures.
const MIN_REFRESH_EVERY: u64 = 10;

pub(crate) struct Validator<'a> {
    file: &'a str,
    src: &'a str,
    errors: Vec<PolicyError>,
    warnings: Vec<PolicyWarning>,
    chains: BTreeMap<String, ChainRule>,
    groups: BTreeMap<String, ApproverGroup>,
    cooldown: bool,
    require_allowlist: bool,
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
            warnings: Vec::new(),
            chains: BTreeMap::new(),
            groups: BTreeMap::new(),
            cooldown: false,
            require_allowlist: true,
            written: BTreeSet::new(),
        }
    }

    /// The errors, and the warnings (meaningful only when there is no error).
    pub(crate) fn into_parts(self) -> (Vec<PolicyError>, Vec<PolicyWarning>) {
        (self.errors, self.warnings)
    }

    fn err(&mut self, span: Range<usize>, message: String) {
        self.errors
            .push(PolicyError::at(self.file, self.src, Some(span), message));
    }

    /// Records a warning at `span`, or about the whole file when `None`.
    fn warn(&mut self, tag: &'static str, span: Option<Range<usize>>, message: String) {
        let w = PolicyWarning::at(tag, self.file, self.src, span, message);
        self.warnings.push(w);
    }

    /// `warn.tier_split`: a window of `section` whose max reaches the lowest non-zero time-lock
    /// or approval tier lets a withdrawal split below the tier avoid it, up to that max.
    /// Points at the first such window in file order.
    fn tier_split(
        &mut self,
        section: &str,
        raw: &[RawWindow],
        timelock: &[TimelockTier],
        approval: &[ApprovalTier],
    ) {
        let tiers = timelock
            .iter()
            .map(|t| (t.at_or_above, "time-lock"))
            .chain(approval.iter().map(|t| (t.at_or_above, "approval")))
            .filter(|(at, _)| *at > 0);
        let Some(lowest) = tiers.clone().map(|(at, _)| at).min() else {
            return;
        };
        let mut kinds: Vec<&str> = tiers.filter(|(at, _)| *at == lowest).map(|t| t.1).collect();
        kinds.dedup();
        let kinds = kinds.join(" and ");
        for w in raw {
            let max = literals::amount(w.max.get_ref());
            let window = literals::duration(w.window.get_ref());
            let (Ok(max), Ok(window)) = (max, window) else {
                continue;
            };
            if max >= lowest {
                let per = if w.per_destination {
                    " per destination"
                } else {
                    ""
                };
                let msg = format!(
                    "{section}: withdrawals below the lowest {kinds} tier (`{lowest}`) add up to `{max}` in the {} window{per}, so a withdrawal split into such pieces avoids every tier",
                    literals::format_duration(window)
                );
                self.warn(tags::WARN_TIER_SPLIT, Some(w.max.span()), msg);
                return;
            }
        }
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
        if raw.keys.is_empty() {
            let msg =
                "no `[keys.<key id>]` section: every withdrawal will be denied by `scope.key`";
            self.warn(tags::WARN_NO_KEYS, None, msg.into());
        }
        self.chains(raw.chains);
        self.groups(raw.approvers);
        let assets = self.assets(raw.assets);
        let keys = self.keys(raw.keys, &assets);
        let destinations = self.destinations(raw.destinations);
        let account_classes = self.account_classes(raw.account_classes, &assets);
        let accounts = self.accounts(raw.accounts, &assets, &account_classes);
        let contracts = self.contracts(raw.contracts, &assets);
        let typed_data = self.typed_data(raw.typed_data, &assets);
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
            contracts,
            typed_data,
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
            let mut unlimited_spenders = std::collections::BTreeSet::new();
            for s in &a.unlimited_spenders {
                if !matches!(asset, Some(Asset::Erc20 { .. })) {
                    let msg = "`unlimited_spenders` applies to erc20 tokens only".to_string();
                    self.err(s.span(), msg);
                } else if let Some(addr) = self.address(&a.chain, s) {
                    unlimited_spenders.insert(addr);
                }
            }
            let (Some(asset), Some(limits)) = (asset, limits) else {
                continue;
            };
            let name = label.get_ref();
            if limits.velocity.is_empty() {
                let msg = format!("asset `{name}` has no velocity window: only `per_tx` bounds it");
                self.warn(tags::WARN_VELOCITY_MISSING, Some(label.span()), msg);
            }
            let section = format!("asset `{name}`");
            self.tier_split(&section, &a.velocity, &timelock, &approval);
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
                unlimited_spenders,
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
            if k.frozen {
                let msg = format!(
                    "key `{}` is frozen in the file: it signs nothing",
                    key.get_ref()
                );
                self.warn(tags::WARN_KEY_FROZEN, Some(key.span()), msg);
            }
            let mut allowed = BTreeSet::new();
            for a in &k.assets {
                if assets.contains_key(a.get_ref()) {
                    allowed.insert(a.get_ref().clone());
                } else {
                    self.unknown_asset(a, assets);
                }
            }
            let refresh_every = k.refresh_every.as_ref().and_then(|lit| {
                let every = self.duration(lit, "`refresh_every`")?;
                if every < MIN_REFRESH_EVERY {
                    self.err(
                        lit.span(),
                        format!(
                            "`refresh_every` must be at least {}",
                            literals::format_duration(MIN_REFRESH_EVERY)
                        ),
                    );
                    return None;
                }
                Some(every)
            });
            out.insert(
                key.into_inner(),
                KeyRule {
                    assets: allowed,
                    frozen: k.frozen,
                    refresh_every,
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
        self.require_allowlist = raw.require_allowlist;
        let allow = self.allow_list(&raw.allow);
        let deny = self.deny_list(&raw.deny);
        self.destination_warnings(&raw, cooldown, &allow);
        DestinationRules {
            require_allowlist: raw.require_allowlist,
            cooldown,
            allow,
            deny,
        }
    }

    /// `warn.allowlist_not_required`, `warn.cooldown_unused` and `warn.allow_and_deny`.
    fn destination_warnings(
        &mut self,
        raw: &RawDestinations,
        cooldown: Option<u64>,
        allow: &AllowList,
    ) {
        if !raw.require_allowlist {
            let msg = "`destinations.require_allowlist = false`: any destination not on the denylist may receive funds";
            self.warn(tags::WARN_ALLOWLIST_NOT_REQUIRED, None, msg.into());
            if let (Some(cooldown), Some(lit)) = (cooldown, &raw.cooldown) {
                let msg = format!(
                    "the {} cool-down only applies to allowlisted destinations, and the allowlist is not required",
                    literals::format_duration(cooldown)
                );
                self.warn(tags::WARN_COOLDOWN_UNUSED, Some(lit.span()), msg);
            }
        }
        for e in &raw.deny {
            let chain = e.chain.get_ref();
            let Some(rule) = self.chains.get(chain) else {
                continue;
            };
            let Ok(address) = normalise(&rule.id, e.address.get_ref()) else {
                continue;
            };
            if allow.get(chain).is_some_and(|m| m.contains_key(&address)) {
                let msg = format!("`{address}` on `{chain}` is on both lists; it is denied");
                self.warn(tags::WARN_ALLOW_AND_DENY, Some(e.address.span()), msg);
            }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use crate::tags;
    use crate::testutil::*;

    const ETH_1H: &str = "[[assets.eth.velocity]]\nwindow = \"1h\"\nmax = 500\n";
    const BTC_1H: &str = "[[assets.btc.velocity]]\nwindow = \"1h\"\nmax = 500\n";

    fn line_of(text: &str, needle: &str) -> usize {
        let at = text.find(needle).unwrap();
        text[..at].matches('\n').count() + 1
    }

    #[test]
    fn warn_velocity_missing_points_at_the_asset() {
        let w = tagged(BTC_1H, tags::WARN_VELOCITY_MISSING);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].message,
            "asset `eth` has no velocity window: only `per_tx` bounds it"
        );
        assert_eq!(w[0].line, Some(line_of(BASE, "[assets.eth]")));
        assert_eq!(w[0].column, Some(9));
        assert!(tagged(&format!("{ETH_1H}\n{BTC_1H}"), tags::WARN_VELOCITY_MISSING).is_empty());
    }

    #[test]
    fn warn_tier_split_when_a_window_reaches_the_lowest_tier() {
        let timelock =
            |at: u32| format!("[[assets.eth.timelock]]\nat_or_above = {at}\ndelay = \"1h\"\n");
        // A window of 500 and a time-lock from 500: five pieces of 100 avoid it.
        let text = format!("{ETH_1H}\n{}", timelock(500));
        let w = tagged(&text, tags::WARN_TIER_SPLIT);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].message,
            "asset `eth`: withdrawals below the lowest time-lock tier (`500`) add up to `500` in the 1h window, so a withdrawal split into such pieces avoids every tier"
        );
        let full = format!("{BASE}\n{text}\n");
        assert_eq!(w[0].line, Some(line_of(&full, "max = 500")));
        assert_eq!(w[0].column, Some(7), "points at the window's max");
        // Below the window's max nothing adds up to the tier; a tier from 0 holds everything.
        assert!(tagged(
            &format!("{ETH_1H}\n{}", timelock(501)),
            tags::WARN_TIER_SPLIT
        )
        .is_empty());
        assert!(tagged(&format!("{ETH_1H}\n{}", timelock(0)), tags::WARN_TIER_SPLIT).is_empty());
        assert!(
            tagged(&timelock(1), tags::WARN_TIER_SPLIT).is_empty(),
            "no window"
        );
    }

    #[test]
    fn warn_tier_split_names_the_lowest_approval_tier() {
        let text = format!(
            "{ETH_1H}\n[approvers.t]\nkeys = [\"{}\"]\n\n[[assets.eth.timelock]]\nat_or_above = 400\ndelay = \"1h\"\n\n[[assets.eth.approval]]\nat_or_above = 300\nrequire = {{ t = 1 }}\n\n[[assets.eth.approval]]\nat_or_above = 0\nrequire = {{ t = 1 }}\n",
            pubhex(1)
        );
        let w = tagged(&text, tags::WARN_TIER_SPLIT);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].message.contains("lowest approval tier (`300`)"),
            "{}",
            w[0].message
        );
    }

    #[test]
    fn refresh_every_is_a_duration_of_at_least_ten_seconds_and_keeps_older_hashes() {
        let key = "[keys.hot]\nassets = [\"eth\", \"btc\"]";
        let with = |every: &str| BASE.replace(key, &format!("{key}\nrefresh_every = {every}"));
        let p = policy_of(&with("\"30d\""));
        assert_eq!(p.refresh_every("hot"), Some(30 * 86_400));
        assert_eq!(base_policy().refresh_every("hot"), None);
        assert_ne!(p.hash(), base_policy().hash(), "part of the policy hash");
        assert_eq!(
            policy_of(&BASE.replace(key, &format!("{key}\nfrozen = false"))).hash(),
            base_policy().hash(),
            "a policy without it hashes as before"
        );
        let errors = |text: &str| {
            crate::Policy::check(text, "p.toml")
                .err()
                .unwrap()
                .iter()
                .map(|e| (e.line, e.message.clone()))
                .collect::<Vec<_>>()
        };
        let line = line_of(BASE, "[keys.hot]") + 2;
        assert_eq!(
            errors(&with("\"5s\"")),
            vec![(line, "`refresh_every` must be at least 10s".to_string())]
        );
        let e = errors(&with("\"soon\""));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].1.starts_with("`refresh_every`: "), "{e:?}");
    }

    #[test]
    fn warn_key_frozen_no_keys_and_destination_warnings() {
        let frozen = policy_replace(
            "[keys.hot]\nassets = [\"eth\", \"btc\"]",
            "[keys.hot]\nassets = [\"eth\", \"btc\"]\nfrozen = true",
        );
        let w: Vec<_> = frozen
            .warnings()
            .iter()
            .filter(|w| w.tag == tags::WARN_KEY_FROZEN)
            .collect();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].line, Some(line_of(BASE, "[keys.hot]")));
        let none = policy_replace("[keys.hot]\nassets = [\"eth\", \"btc\"]", "");
        let w = none.warnings();
        assert_eq!(
            (w[0].tag, w[0].line),
            (tags::WARN_NO_KEYS, None),
            "file-wide first"
        );
        let open = policy_replace(
            "require_allowlist = true",
            "require_allowlist = false\ncooldown = \"1h\"",
        );
        let got: Vec<_> = open
            .warnings()
            .iter()
            .map(|w| (w.tag, w.line.is_some()))
            .collect();
        assert!(
            got.contains(&(tags::WARN_ALLOWLIST_NOT_REQUIRED, false)),
            "{got:?}"
        );
        assert!(got.contains(&(tags::WARN_COOLDOWN_UNUSED, true)), "{got:?}");
        let deny = format!("[[destinations.deny]]\nchain = \"eth\"\naddress = \"{DEST}\"\n");
        let w = tagged(&deny, tags::WARN_ALLOW_AND_DENY);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            w[0].message,
            format!("`{DEST}` on `eth` is on both lists; it is denied")
        );
        assert_eq!(w[0].column, Some(11), "points at the denied address");
    }
}
