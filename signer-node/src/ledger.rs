//! The cluster-wide ledger of signed withdrawals, as this node holds it.
//!
//! Every participant of a completed signature records a [`LedgerEntry`]: signed with its identity
//! key and numbered per origin without gaps. The coordinator relays entries to every node, so a
//! node's velocity sums include withdrawals that other subsets signed. A node that knows it is
//! missing an origin's entries (a later sequence number seen, or a peer reporting a higher head
//! in a session's join message) defers velocity-limited requests until it has caught up.
//!
//! State keys: `ledger/<origin>/<seq:020>` entries, `ledger_head/<origin>` highest contiguous
//! sequence, `ledger_seen/<origin>` highest sequence known to exist, `ledger_req/<request>/<origin>`
//! (one own entry per request), `hist/<request>` this node's own reservations.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use proto::{
    authz::{LedgerEntry, LedgerMove},
    intent::WithdrawalIntent,
};
use serde::{Deserialize, Serialize};

use crate::{
    identity::{NodeIdentity, Roster},
    store::{json_bytes, Store, StoreError},
};

/// A withdrawal this node agreed to sign: it counts against velocity from that moment, whether
/// or not the signature completes (a node cannot know whether its partial signature was used).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    /// Key.
    pub key_id: String,
    /// When this node agreed, its clock.
    pub at: u64,
    /// What moves.
    pub moves: Vec<LedgerMove>,
}

/// The movements of an intent (payments only; change stays with the key).
pub fn moves_of(intent: &WithdrawalIntent) -> Vec<LedgerMove> {
    intent
        .payments
        .iter()
        .map(|p| LedgerMove {
            account: intent.account.clone(),
            chain: intent.chain.clone(),
            asset: intent.asset.clone(),
            destination: p.destination.clone(),
            amount: p.amount,
        })
        .collect()
}

fn entry_key(origin: &str, seq: u64) -> String {
    format!("ledger/{origin}/{seq:020}")
}

fn read_u64(store: &Store, key: &str) -> Result<u64, StoreError> {
    Ok(store.state_get::<u64>(key)?.unwrap_or(0))
}

/// Highest contiguous sequence per origin.
pub fn heads(store: &Store) -> Result<BTreeMap<String, u64>, StoreError> {
    Ok(store
        .state_scan::<u64>("ledger_head/")?
        .into_iter()
        .map(|(k, v)| (k["ledger_head/".len()..].to_string(), v))
        .collect())
}

/// Origins for which this node knows entries exist that it does not hold.
pub fn gaps(store: &Store) -> Result<Vec<String>, StoreError> {
    let heads = heads(store)?;
    Ok(store
        .state_scan::<u64>("ledger_seen/")?
        .into_iter()
        .filter_map(|(k, seen)| {
            let origin = k["ledger_seen/".len()..].to_string();
            (seen > heads.get(&origin).copied().unwrap_or(0)).then_some(origin)
        })
        .collect())
}

/// Records that `origin` has entries up to `seq` (from a peer's head or a later entry).
/// Returns `true` if this reveals entries this node does not hold.
pub fn note_seen(store: &Store, origin: &str, seq: u64) -> Result<bool, StoreError> {
    let key = format!("ledger_seen/{origin}");
    if seq > read_u64(store, &key)? {
        store.state_write(&[(key, Some(json_bytes(&seq)?))])?;
    }
    Ok(seq > read_u64(store, &format!("ledger_head/{origin}"))?)
}

/// Records this node's own entry for a signed request, once per request.
#[allow(clippy::too_many_arguments)]
pub fn record_own(
    store: &Store,
    identity: &NodeIdentity,
    request_id: &str,
    key_id: &str,
    moves: Vec<LedgerMove>,
    now: u64,
    also: Vec<(String, Option<Vec<u8>>)>,
    consume: &[String],
) -> Result<Option<LedgerEntry>, StoreError> {
    let me = identity.node_id.as_str();
    let marker = format!("ledger_req/{request_id}/{me}");
    if store.state_get::<u64>(&marker)?.is_some() {
        store.commit_consuming(&also, consume)?;
        return Ok(None);
    }
    let head_key = format!("ledger_head/{me}");
    let seq = read_u64(store, &head_key)? + 1;
    let mut entry = LedgerEntry {
        origin: me.to_string(),
        seq,
        request_id: request_id.to_string(),
        key_id: key_id.to_string(),
        signed_at: now,
        moves,
        signature: [0; 64],
    };
    entry.signature = identity.sign(&entry.signed_bytes());
    let mut items = vec![
        (entry_key(me, seq), Some(json_bytes(&entry)?)),
        (head_key, Some(json_bytes(&seq)?)),
        (format!("ledger_seen/{me}"), Some(json_bytes(&seq)?)),
        (marker, Some(json_bytes(&seq)?)),
    ];
    items.extend(also);
    store.commit_consuming(&items, consume)?;
    Ok(Some(entry))
}

/// What [`check`] found.
#[derive(Debug, serde::Serialize)]
pub struct LedgerCheck {
    /// Entries held per origin (contiguous from 1).
    pub heads: BTreeMap<String, u64>,
    /// Requests this node signed (one ledger entry each).
    pub own_requests: usize,
    /// Signed parts stored.
    pub signed_parts: usize,
}

/// Checks the ledger's invariants: every origin's entries 1..=head are present, signed by that
/// origin and numbered as stored; each own request marker points at an own entry for that
/// request; each stored signature belongs to a request with an own entry (they are written in
/// one transaction). `Err` names the first violation.
pub fn check(store: &Store, roster: &Roster, me: &str) -> Result<LedgerCheck, String> {
    let se = |e: StoreError| e.to_string();
    let heads = heads(store).map_err(se)?;
    for (origin, head) in &heads {
        let peer = roster
            .get(origin)
            .ok_or_else(|| format!("ledger origin `{origin}` is not in the roster"))?;
        let key = VerifyingKey::from_bytes(peer.sign.as_bytes()).map_err(|e| e.to_string())?;
        for seq in 1..=*head {
            let e: LedgerEntry = store
                .state_get(&entry_key(origin, seq))
                .map_err(se)?
                .ok_or_else(|| format!("ledger {origin}/{seq} missing below head {head}"))?;
            let sig = Signature::from_bytes(&e.signature);
            if e.origin != *origin
                || e.seq != seq
                || key.verify_strict(&e.signed_bytes(), &sig).is_err()
            {
                return Err(format!("ledger {origin}/{seq} does not verify"));
            }
        }
    }
    let markers = store.state_scan::<u64>("ledger_req/").map_err(se)?;
    let mut own = std::collections::BTreeSet::new();
    for (k, seq) in &markers {
        let Some(rid) = k["ledger_req/".len()..].strip_suffix(&format!("/{me}")) else {
            continue;
        };
        let e: Option<LedgerEntry> = store.state_get(&entry_key(me, *seq)).map_err(se)?;
        if e.map(|e| e.request_id) != Some(rid.to_string()) {
            return Err(format!(
                "request marker `{rid}` points at a wrong ledger entry"
            ));
        }
        own.insert(rid.to_string());
    }
    let signed = store
        .state_scan::<proto::sig::VerifiedSignature>("signed/")
        .map_err(se)?;
    for (k, _) in &signed {
        let rid = k["signed/".len()..].split('\0').next().unwrap_or_default();
        if !own.contains(rid) {
            return Err(format!(
                "signature of `{rid}` stored without its ledger entry"
            ));
        }
    }
    Ok(LedgerCheck {
        heads,
        own_requests: own.len(),
        signed_parts: signed.len(),
    })
}

/// What happened to a received entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// New; stored.
    Stored,
    /// Already held.
    Duplicate,
}

/// Verifies and stores another node's entry, then advances the origin's contiguous head.
pub fn receive(store: &Store, roster: &Roster, entry: &LedgerEntry) -> Result<Received, String> {
    let peer = roster.get(&entry.origin).ok_or_else(|| {
        format!(
            "ledger entry from `{}`, who is not in the roster",
            entry.origin
        )
    })?;
    let key = VerifyingKey::from_bytes(peer.sign.as_bytes()).map_err(|e| e.to_string())?;
    key.verify_strict(
        &entry.signed_bytes(),
        &Signature::from_bytes(&entry.signature),
    )
    .map_err(|_| {
        format!(
            "ledger entry {}/{} has an invalid signature",
            entry.origin, entry.seq
        )
    })?;
    if entry.seq == 0 {
        return Err("ledger entry with sequence 0".into());
    }
    let se = |e: StoreError| e.to_string();
    let k = entry_key(&entry.origin, entry.seq);
    if let Some(held) = store.state_get::<LedgerEntry>(&k).map_err(se)? {
        if held != *entry {
            return Err(format!(
                "node `{}` signed two different ledger entries with sequence {}",
                entry.origin, entry.seq
            ));
        }
        return Ok(Received::Duplicate);
    }
    store
        .state_write(&[(k, Some(json_bytes(entry).map_err(se)?))])
        .map_err(se)?;
    note_seen(store, &entry.origin, entry.seq).map_err(se)?;
    let head_key = format!("ledger_head/{}", entry.origin);
    let mut head = read_u64(store, &head_key).map_err(se)?;
    while store
        .state_get::<LedgerEntry>(&entry_key(&entry.origin, head + 1))
        .map_err(se)?
        .is_some()
    {
        head += 1;
    }
    store
        .state_write(&[(head_key, Some(json_bytes(&head).map_err(se)?))])
        .map_err(se)?;
    Ok(Received::Stored)
}

/// Reserves a request's movements (idempotent per request).
pub fn reserve(store: &Store, request_id: &str, r: &Reservation) -> Result<(), StoreError> {
    store.state_insert_new(&format!("hist/{request_id}"), r)?;
    Ok(())
}

/// Every past withdrawal this node knows of (its reservations and every ledger entry), one per
/// request, except `exclude` (the request being evaluated).
pub fn history(store: &Store, exclude: &str) -> Result<Vec<policy::HistoryEntry>, StoreError> {
    let mut by_request: BTreeMap<String, Reservation> = BTreeMap::new();
    let mut add = |rid: String, r: Reservation| {
        if rid == exclude {
            return;
        }
        by_request
            .entry(rid)
            .and_modify(|e| e.at = e.at.min(r.at))
            .or_insert(r);
    };
    for (k, r) in store.state_scan::<Reservation>("hist/")? {
        add(k["hist/".len()..].to_string(), r);
    }
    for (_, e) in store.state_scan::<LedgerEntry>("ledger/")? {
        add(
            e.request_id,
            Reservation {
                key_id: e.key_id,
                at: e.signed_at,
                moves: e.moves,
            },
        );
    }
    Ok(by_request
        .into_values()
        .flat_map(|r| {
            let (key_id, at) = (r.key_id, r.at);
            r.moves.into_iter().map(move |m| policy::HistoryEntry {
                key_id: key_id.clone(),
                account: m.account,
                chain: m.chain,
                asset: m.asset,
                destination: m.destination,
                amount: m.amount,
                signed_at: at,
            })
        })
        .collect())
}

/// Entries above `heads` (for a peer catching up).
pub fn entries_after(
    store: &Store,
    heads: &BTreeMap<String, u64>,
) -> Result<Vec<LedgerEntry>, StoreError> {
    Ok(store
        .state_scan::<LedgerEntry>("ledger/")?
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.seq > heads.get(&e.origin).copied().unwrap_or(0))
        .collect())
}
