//! Forgetting what no decision can reach any more, so that a node's store stays bounded by its
//! retention instead of growing with every request it was ever shown.
//!
//! The retention `R` is the longest of: the configured `limits.retention_secs` (at least
//! [`MIN_RETENTION_SECS`]); twice the longest velocity window of the active or pending policy;
//! [`policy::MAX_APPROVAL_LIFETIME_SECS`] plus the longest time-lock delay plus a day; and
//! `request.max_age` plus a day. The horizon is `now - R`. Below it:
//!
//! - ledger entries go, per origin, contiguously from the lowest: `ledger_floor/<origin>` is the
//!   highest sequence forgotten (every lower one is forgotten too). Heads stay, so head
//!   advancement, the catch-up protocol and [`crate::ledger::check`] keep working; an entry
//!   received again at or below the floor is a duplicate. An entry at or below the floor that
//!   arrives anyway is forgotten at the next pass.
//! - a request id whose latest activity (bound, first seen, reserved, or named by a ledger
//!   entry; see [`index`]) is below the horizon is forgotten with everything keyed by it: its
//!   binding, first-seen time, reservation, payloads, conflict mark, transaction binding, own
//!   request marker, stored signatures and partials. Shown again, it is a new request: the
//!   coordinator could submit the same payload under a fresh id anyway, and any approval bound
//!   to the old id has expired ([`policy::MAX_APPROVAL_LIFETIME_SECS`]).
//!
//! Kept for ever: vetoes (a vetoed id is never signed), presignature consumption markers
//! (`presig_used/`, `presig_spent/`: one-time material), used session ids, freezes, accounts,
//! heads and floors. See `docs/limits/bounds.md`.

pub mod index;

use serde::Serialize;

use crate::store::{Store, StoreError};

/// The configured retention is raised to at least this (seconds; 8 days).
pub const MIN_RETENTION_SECS: u64 = 8 * 24 * 3600;

/// Default `limits.retention_secs` (30 days).
pub const DEFAULT_RETENTION_SECS: u64 = 30 * 24 * 3600;

/// Records forgotten per transaction; a pass repeats until nothing is left or it did
/// [`MAX_BATCHES`] transactions (the write lock is free between them).
pub const BATCH: usize = 2_000;

/// Transactions per [`prune_once`] call.
pub const MAX_BATCHES: usize = 64;

/// Seconds between two pruning passes of a running node.
pub const INTERVAL_SECS: u64 = 3600;

const DAY: u64 = 24 * 3600;

/// What one pruning call did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The retention used (seconds).
    pub retention: u64,
    /// `now - retention`: everything older may have been forgotten.
    pub horizon: u64,
    /// Ledger entries forgotten.
    pub ledger_entries: usize,
    /// Request ids forgotten.
    pub requests: usize,
    /// State keys deleted in all.
    pub keys: usize,
    /// Whether the batch limit stopped it (call again).
    pub more: bool,
    /// Why nothing was pruned, if so.
    pub skipped: Option<String>,
}

/// The policy records the node keeps (`policy/active`, `policy/pending`), as far as retention
/// needs them. Their signatures were checked when they were installed.
#[derive(serde::Deserialize)]
struct Installed {
    bundle_json: String,
}

/// The retention for the stored policies (`None`: a stored policy does not parse, so nothing
/// may be forgotten). Without any policy the node signs nothing and only the configured
/// retention applies.
pub fn retention(store: &Store, configured: u64) -> Result<Option<u64>, StoreError> {
    let mut r = configured
        .max(MIN_RETENTION_SECS)
        .max(policy::MAX_APPROVAL_LIFETIME_SECS + DAY);
    for name in ["policy/active", "policy/pending"] {
        let Some(rec) = store.state_get::<Installed>(name)? else {
            continue;
        };
        let Ok(p) = policy::Bundle::from_json(&rec.bundle_json).and_then(|b| b.policy()) else {
            return Ok(None);
        };
        let h = p.horizons();
        r = r
            .max(h.longest_window.saturating_mul(2))
            .max(
                policy::MAX_APPROVAL_LIFETIME_SECS
                    .saturating_add(h.longest_delay)
                    .saturating_add(DAY),
            )
            .max(h.request_max_age.saturating_add(DAY));
    }
    Ok(Some(r))
}

/// The earliest time the active policy's windows can reach at `now` (decisions read history
/// from here; see [`crate::ledger::history_since`] — one second of slack on the boundary).
pub fn window_start(policy: &policy::Policy, now: u64) -> u64 {
    now.saturating_sub(policy.horizons().longest_window)
        .saturating_sub(1)
}

/// State key of the highest ledger sequence of `origin` forgotten by pruning.
pub fn floor_key(origin: &str) -> String {
    format!("ledger_floor/{origin}")
}

/// The highest sequence of `origin` forgotten (0: none). An entry at or below it was held and
/// forgotten: receiving it again is a duplicate.
pub fn floor(store: &Store, origin: &str) -> Result<u64, StoreError> {
    Ok(store.state_get::<u64>(&floor_key(origin))?.unwrap_or(0))
}

/// One pruning call at `now` (this node's clock) with the configured retention: forgets up to
/// [`MAX_BATCHES`] × [`BATCH`] records below the horizon and reports what it did. Safe to run
/// beside decisions and ledger writes: it never touches an entry above a head, nor a request
/// with activity above the horizon.
pub fn prune_once(
    store: &Store,
    configured_retention: u64,
    now: u64,
) -> Result<PruneReport, StoreError> {
    let Some(retention) = retention(store, configured_retention)? else {
        return Ok(PruneReport {
            skipped: Some("a stored policy does not parse; nothing is forgotten".into()),
            ..Default::default()
        });
    };
    let horizon = now.saturating_sub(retention);
    let mut report = PruneReport {
        retention,
        horizon,
        ..Default::default()
    };
    for batch in 0.. {
        if batch >= MAX_BATCHES {
            report.more = true;
            break;
        }
        let (entries, keys) = prune_ledger(store, horizon)?;
        let (requests, more_keys) = prune_requests(store, horizon)?;
        report.ledger_entries += entries;
        report.requests += requests;
        report.keys += keys + more_keys;
        if keys + more_keys == 0 {
            break;
        }
    }
    Ok(report)
}

/// Forgets up to [`BATCH`] ledger entries below the horizon: per origin contiguously above its
/// floor and never above its head, then any entry at or below a floor. Returns the entries and
/// keys deleted.
fn prune_ledger(store: &Store, horizon: u64) -> Result<(usize, usize), StoreError> {
    let mut forget = Vec::new();
    let mut floors = Vec::new();
    for (origin, head) in crate::ledger::heads(store)? {
        let floor0 = floor(store, &origin)?;
        let mut f = floor0;
        while f < head && forget.len() < BATCH {
            let seq = f + 1;
            let key = format!("ledger/{origin}/{seq:020}");
            let at_key = format!("ledger_at/{origin}/{seq:020}");
            let times =
                store.state_get_many::<serde_json::Value>(&[key.clone(), at_key.clone()])?;
            let Some(entry) = &times[0] else { break };
            let at = times[1]
                .as_ref()
                .and_then(serde_json::Value::as_u64)
                .or_else(|| entry.get("signed_at").and_then(serde_json::Value::as_u64))
                .unwrap_or(u64::MAX);
            if at >= horizon {
                break;
            }
            forget.extend([key, at_key]);
            f = seq;
        }
        if f > floor0 {
            floors.push((origin, f));
        }
    }
    let entries = forget.len() / 2;
    // Entries at or below a floor (received again after it moved): found by time.
    for (k, _) in store.state_raw_from(index::LEDGER_T, index::LEDGER_T, BATCH)? {
        let Some((at, tail)) = index::split_time(&k[index::LEDGER_T.len()..]) else {
            continue;
        };
        if at >= horizon || forget.len() >= BATCH {
            break;
        }
        let Some((origin, seq)) = tail.rsplit_once('/') else {
            continue;
        };
        let f = floors
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, f)| *f)
            .map_or_else(|| floor(store, origin), Ok)?;
        if seq.parse::<u64>().is_ok_and(|s| s <= f) {
            let key = format!("ledger/{tail}");
            if !forget.contains(&key) {
                forget.extend([key, format!("ledger_at/{tail}")]);
                // An index key whose entry is gone is dropped with it.
                forget.push(k);
            }
        }
    }
    let mut items: Vec<(String, Option<Vec<u8>>)> =
        forget.iter().map(|k| (k.clone(), None)).collect();
    for (origin, f) in &floors {
        items.push((floor_key(origin), Some(crate::store::json_bytes(f)?)));
    }
    if !items.is_empty() {
        store.state_write(&items)?;
    }
    Ok((entries, forget.len()))
}

/// Forgets up to [`BATCH`] request ids whose latest activity is below the horizon. Returns the
/// requests and keys deleted.
fn prune_requests(store: &Store, horizon: u64) -> Result<(usize, usize), StoreError> {
    let candidates = store.state_raw_from(index::REQ_T, index::REQ_T, BATCH)?;
    let mut groups = Vec::new();
    let mut keys = 0;
    for (k, _) in candidates {
        let Some((at, rid)) = index::split_time(&k[index::REQ_T.len()..]) else {
            // Not an index key this code writes: dropped.
            groups.push((String::new(), 0, vec![k]));
            continue;
        };
        if at >= horizon {
            break;
        }
        let mut of_rid = request_keys(store, rid)?;
        of_rid.push(k.clone());
        keys += of_rid.len() + 1;
        groups.push((rid.to_string(), at, of_rid));
    }
    if groups.is_empty() {
        return Ok((0, 0));
    }
    let forgotten = store.forget(&groups)?;
    // A request active again meanwhile is kept, and its keys are not counted.
    Ok((forgotten, if forgotten == 0 { 0 } else { keys }))
}

/// Every state key of one request id (those present; its `req_t/` key excluded).
fn request_keys(store: &Store, rid: &str) -> Result<Vec<String>, StoreError> {
    let singles: Vec<String> = [
        "bound_pay/",
        index::BOUND_AT,
        "seen/",
        "hist/",
        "conflict/",
        index::REQ_LAST,
    ]
    .iter()
    .map(|p| format!("{p}{rid}"))
    .collect();
    let present = store.state_get_many::<serde_json::Value>(&singles)?;
    let mut keys: Vec<String> = singles
        .into_iter()
        .zip(present)
        .filter_map(|(k, v)| v.map(|_| k))
        .collect();
    for prefix in [
        format!("ledger_pay/{rid}\0/"),
        format!("signed/{rid}\0/"),
        format!("partial/{rid}\0/"),
        format!("ledger_req/{rid}/"),
        format!("{TXBIND_OF}{rid}\0/"),
    ] {
        keys.extend(store.state_keys(&prefix)?);
    }
    // The transaction bindings this request made (only those still naming it).
    let bindings = store.state_scan::<String>(&format!("{TXBIND_OF}{rid}\0/"))?;
    for (_, txkey) in bindings {
        if store.state_get::<String>(&txkey)?.as_deref() == Some(rid) {
            keys.push(txkey);
        }
    }
    Ok(keys)
}

/// Seconds after start before the first pass (a node that starts and stops at once, as in
/// tests, never prunes).
pub const FIRST_PASS_SECS: u64 = 60;

/// Prunes a running node's store every [`INTERVAL_SECS`] by its guard's clock, each time
/// until nothing below the horizon is left (a few seconds' pause between calls).
pub async fn run(core: std::sync::Arc<crate::session::NodeCore>, configured_retention: u64) {
    let first = tokio::time::Instant::now() + std::time::Duration::from_secs(FIRST_PASS_SECS);
    let mut tick = tokio::time::interval_at(first, std::time::Duration::from_secs(INTERVAL_SECS));
    loop {
        tick.tick().await;
        let me = core.clone();
        let pass = tokio::task::spawn_blocking(move || loop {
            let report = prune_once(&me.store, configured_retention, me.guard.now())?;
            if report.keys > 0 || report.skipped.is_some() {
                tracing::info!(?report, "pruned what no window reaches any more");
            }
            if !report.more || me.is_stopping() {
                return Ok::<_, StoreError>(());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        match pass.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "pruning failed; retrying next interval"),
            Err(e) => tracing::error!(error = %e, "pruning task failed"),
        }
    }
}

/// `txbind_of/<request>\0/<n>`: the `txbind/` keys a request's reservation wrote (so that
/// pruning the request finds them).
pub const TXBIND_OF: &str = "txbind_of/";

/// State key recording that `rid` bound transaction key `txkey`.
pub fn txbind_of_key(rid: &str, txkey: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(txkey.as_bytes());
    format!("{TXBIND_OF}{rid}\0/{}", hex::encode(&h[..8]))
}

#[cfg(test)]
mod tests;
