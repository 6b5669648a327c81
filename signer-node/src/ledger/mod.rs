//! The cluster-wide ledger of signed withdrawals, as this node holds it.
//!
//! Every participant of a completed signature records a [`LedgerEntry`]: signed with its identity
//! key and numbered per origin without gaps. The coordinator relays entries to every node, so a
//! node's velocity sums include withdrawals that other subsets signed. A node that knows it is
//! missing an origin's entries (a later sequence number seen, or a peer reporting a higher head
//! in a session's join message) defers velocity-limited requests until it has caught up.
//!
//! A peer's entry never weakens what this node knows itself: its own reservation of a request
//! decides what that request counts; a peer's time is bounded by this node's clock; entries
//! that disagree are all counted and the disagreement is reported, never merged away (see
//! [`history`]). Claims about heads are bounded and expire, so one liar cannot stop velocity-
//! limited signing for ever (see [`gaps`]).
//!
//! State keys: `ledger/<origin>/<seq:020>` entries, `ledger_head/<origin>` highest contiguous
//! sequence, `ledger_seen/<origin>` highest sequence known to exist, `ledger_claim/<origin>/<claimant>`
//! the highest sequence a node claimed for an origin and since when (one record per claimant, so
//! one liar's expired claim never silences another node's), `ledger_at/<origin>/<seq:020>` this node's clock for an entry dated in
//! its future, `ledger_req/<request>/<origin>` (one own entry per request),
//! `ledger_pay/<request>\0/<payload>` the payloads seen signed under a request id, `hist/<request>`
//! this node's own reservations, `conflict/<request>` a request id bound to two payloads,
//! `presig_spent/<id>` what a presignature signed (see [`spent`]).
//!
//! An entry is recorded per request for an online signature, and per *presignature
//! consumption* (one per request part) for partials: the presignature id in the entry anchors
//! the consumption outside this node's own store.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use proto::{
    authz::{LedgerEntry, LedgerMove},
    intent::WithdrawalIntent,
};
use serde::{Deserialize, Serialize};

use crate::{
    identity::Roster,
    store::{json_bytes, Store, StoreError},
};

mod history;
mod own;
pub mod spent;
pub use history::{history, history_since};
pub use own::{record_own, OwnEntry};

/// A peer's entry dated more than this ahead of this node's clock counts from when it arrived.
pub const MAX_FUTURE_SECS: u64 = 300;

/// A head claim or sequence number more than this above the held head is impossible (no node
/// signs that many withdrawals between two syncs): refused and its author reported.
pub const MAX_AHEAD: u64 = 100_000;

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
    /// Hash of the payload this node decoded (absent in reservations made before binding).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "proto::authz::opt_hex32"
    )]
    pub payload_hash: Option<[u8; 32]>,
}

/// One node's claim that an origin has entries this node lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapClaim {
    /// The highest sequence claimed.
    pub seq: u64,
    /// This node's clock when the claimant's claim was first noted (later, higher claims by
    /// the same claimant keep it: a liar cannot restart its clock).
    pub since: u64,
}

/// An expired claim: an origin, the claimant and its claim.
pub type ExpiredClaim = (String, String, GapClaim);

fn claim_prefix(origin: &str) -> String {
    format!("ledger_claim/{origin}/")
}

/// What a received entry revealed about its origin (each is audited and reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Dated ahead of this node's clock: counted from its arrival instead.
    FutureTime {
        /// Who signed it.
        origin: String,
        /// Its sequence number.
        seq: u64,
        /// The claimed time.
        signed_at: u64,
    },
    /// Same request and payload as this node's own reservation, other movements.
    Contradicts {
        /// Who signed it.
        origin: String,
        /// The request.
        request_id: String,
    },
    /// The request id was signed for another payload than one already known.
    PayloadConflict {
        /// Who signed it.
        origin: String,
        /// The request.
        request_id: String,
    },
    /// A sequence number far beyond the held head.
    ImpossibleSeq {
        /// Who signed it.
        origin: String,
        /// Its sequence number.
        seq: u64,
    },
    /// The entry consumed a presignature the ledger already records as consumed for another
    /// request, payload or part: its origin issued two partials from one presignature.
    PresigReuse {
        /// Who signed it.
        origin: String,
        /// The presignature, hex.
        presig: String,
        /// The request it was first recorded for.
        first: String,
    },
}

impl Finding {
    /// Whom to report (a node, or `coordinator`), a stable code and a message.
    pub fn describe(&self) -> (&str, &'static str, String) {
        match self {
            Finding::FutureTime {
                origin,
                seq,
                signed_at,
            } => (
                origin,
                "ledger.future_time",
                format!("entry {origin}/{seq} is dated {signed_at}, ahead of this node's clock"),
            ),
            Finding::Contradicts { origin, request_id } => (
                origin,
                "ledger.contradiction",
                format!("entry for `{request_id}` names other movements than this node decoded"),
            ),
            // Reported against the coordinator: it is the one that shows payloads; the message
            // names the peer in case the peer is the liar.
            Finding::PayloadConflict { origin, request_id } => (
                "coordinator",
                "request.conflict",
                format!(
                    "`{origin}` signed `{request_id}` for another payload than this node knows: the \
                     coordinator showed different transactions under one id, or `{origin}` lies"
                ),
            ),
            Finding::ImpossibleSeq { origin, seq } => (
                origin,
                "ledger.impossible_seq",
                format!("entry {origin}/{seq} is far beyond the held head; refused"),
            ),
            Finding::PresigReuse {
                origin,
                presig,
                first,
            } => (
                origin,
                "presig.reuse",
                format!(
                    "`{origin}` recorded presignature {presig} for a second message (first: `{first}`)"
                ),
            ),
        }
    }
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

fn at_key(origin: &str, seq: u64) -> String {
    format!("ledger_at/{origin}/{seq:020}")
}

/// State-key prefix of every payload seen signed under `request_id`.
pub fn pay_prefix(request_id: &str) -> String {
    format!("ledger_pay/{request_id}\0/")
}

/// State key recording that `payload` was signed (or reserved) under `request_id`.
pub fn pay_key(request_id: &str, payload: &[u8; 32]) -> String {
    format!("{}{}", pay_prefix(request_id), hex::encode(payload))
}

/// State key of the payload hash (hex) this node first evaluated under a request id.
pub fn bound_key(request_id: &str) -> String {
    format!("bound_pay/{request_id}")
}

/// State key marking a request id that was bound to two payloads.
pub fn conflict_key(request_id: &str) -> String {
    format!("conflict/{request_id}")
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

/// The origins this node lacks entries of: `open` gaps defer velocity-limited requests;
/// `expired` claims were not filled within the timeout and no longer do (they are reported:
/// a node that claims entries nobody can produce must not stop signing for ever).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Gaps {
    /// Origins with a claim younger than the timeout that this node has not caught up with.
    pub open: Vec<String>,
    /// Claims that outlived the timeout.
    pub expired: Vec<ExpiredClaim>,
}

/// Origins for which this node knows entries exist that it does not hold (all of them,
/// regardless of age: the status view).
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

/// The claims this node has not caught up with, split by age at `now`: a claim older than
/// `timeout` seconds is expired.
pub fn gaps_at(store: &Store, now: u64, timeout: u64) -> Result<Gaps, StoreError> {
    let heads = heads(store)?;
    let mut out = Gaps::default();
    for (k, claim) in store.state_scan::<GapClaim>("ledger_claim/")? {
        let Some((origin, by)) = k["ledger_claim/".len()..].split_once('/') else {
            continue;
        };
        if claim.seq <= heads.get(origin).copied().unwrap_or(0) {
            continue;
        }
        if now.saturating_sub(claim.since) > timeout {
            out.expired
                .push((origin.to_string(), by.to_string(), claim));
        } else if !out.open.iter().any(|o| o == origin) {
            out.open.push(origin.to_string());
        }
    }
    Ok(out)
}

/// What a head claim did.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nothing this node lacks.
    Known,
    /// This node lacks entries of the origin.
    Behind,
    /// Beyond [`MAX_AHEAD`] of the held head: ignored; its author is to be reported.
    Impossible,
}

/// Records, on `by`'s word, that `origin` has entries up to `seq` (a peer's head or a later
/// entry). Claims beyond [`MAX_AHEAD`] are ignored.
pub fn note_seen(
    store: &Store,
    origin: &str,
    seq: u64,
    by: &str,
    now: u64,
) -> Result<Claim, StoreError> {
    let head = read_u64(store, &format!("ledger_head/{origin}"))?;
    if seq > head.saturating_add(MAX_AHEAD) {
        return Ok(Claim::Impossible);
    }
    if seq <= head {
        return Ok(Claim::Known);
    }
    let key = format!("ledger_seen/{origin}");
    let claim_key = format!("{}{by}", claim_prefix(origin));
    let mut items = Vec::new();
    if seq > read_u64(store, &key)? {
        items.push((key, Some(json_bytes(&seq)?)));
    }
    let claim = match store.state_get::<GapClaim>(&claim_key)? {
        Some(c) if c.seq >= seq => None,
        Some(c) => Some(GapClaim {
            seq,
            since: c.since,
        }),
        None => Some(GapClaim { seq, since: now }),
    };
    if let Some(c) = claim {
        items.push((claim_key, Some(json_bytes(&c)?)));
    }
    if !items.is_empty() {
        store.state_write(&items)?;
    }
    Ok(Claim::Behind)
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
        // Entries at or below the floor were forgotten by pruning (see `crate::prune`).
        let floor = crate::prune::floor(store, origin).map_err(se)?;
        if floor > *head {
            return Err(format!(
                "ledger {origin} forgotten up to {floor}, above head {head}"
            ));
        }
        for seq in floor + 1..=*head {
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
    let own_floor = crate::prune::floor(store, me).map_err(se)?;
    for (k, seq) in &markers {
        let Some(rid) = k["ledger_req/".len()..].strip_suffix(&format!("/{me}")) else {
            continue;
        };
        if *seq <= own_floor {
            // Its entry was forgotten; the marker goes with its request.
            own.insert(rid.to_string());
            continue;
        }
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
    /// Signed by its origin but impossible (see [`Finding::ImpossibleSeq`]); not stored.
    Refused,
}

/// Verifies and stores an entry (another node's, or this node's own — `me` — replayed by the
/// coordinator after a rollback), then advances the origin's contiguous head. Returns what the
/// entry revealed about its origin besides. An own entry also restores the request marker, so
/// [`record_own`] continues after it and never reuses a sequence number; an entry's
/// presignature is indexed in `presig_spent/` either way.
pub fn receive(
    store: &Store,
    roster: &Roster,
    me: &str,
    entry: &LedgerEntry,
    now: u64,
) -> Result<(Received, Vec<Finding>), String> {
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
    if !proto::api::valid_request_id(&entry.request_id) {
        return Err(format!(
            "ledger entry {}/{} names an invalid request id",
            entry.origin, entry.seq
        ));
    }
    let se = |e: StoreError| e.to_string();
    // Pruned already: no window reaches it any more.
    if entry.seq <= crate::prune::floor(store, &entry.origin).map_err(se)? {
        return Ok((Received::Duplicate, vec![]));
    }
    let k = entry_key(&entry.origin, entry.seq);
    if let Some(held) = store.state_get::<LedgerEntry>(&k).map_err(se)? {
        if held != *entry {
            return Err(format!(
                "node `{}` signed two different ledger entries with sequence {}",
                entry.origin, entry.seq
            ));
        }
        // A crash between an older version's two writes (entry, then head) could leave the
        // head below entries it holds: repair it here, or the node would wait for ever for
        // entries it has (the coordinator resends them as duplicates).
        repair_head(store, &entry.origin).map_err(se)?;
        return Ok((Received::Duplicate, vec![]));
    }
    let origin = entry.origin.clone();
    let head_key = format!("ledger_head/{origin}");
    let mut head = read_u64(store, &head_key).map_err(se)?;
    if entry.seq > head.saturating_add(MAX_AHEAD) {
        let seq = entry.seq;
        return Ok((
            Received::Refused,
            vec![Finding::ImpossibleSeq { origin, seq }],
        ));
    }
    let mut findings = Vec::new();
    let mut items = vec![(k, Some(json_bytes(entry).map_err(se)?))];
    if entry.signed_at > now.saturating_add(MAX_FUTURE_SECS) {
        items.push((
            at_key(&origin, entry.seq),
            Some(json_bytes(&now).map_err(se)?),
        ));
        findings.push(Finding::FutureTime {
            origin: origin.clone(),
            seq: entry.seq,
            signed_at: entry.signed_at,
        });
    }
    let request_id = entry.request_id.clone();
    let own = store
        .state_get::<Reservation>(&format!("hist/{request_id}"))
        .map_err(se)?;
    // An entry without a payload hash (v1) is compared too: it cannot name another payload.
    if let Some(own) =
        own.filter(|o| entry.payload_hash.is_none() || o.payload_hash == entry.payload_hash)
    {
        if canonical(own.moves) != canonical(entry.moves.clone()) {
            findings.push(Finding::Contradicts {
                origin: origin.clone(),
                request_id: request_id.clone(),
            });
        }
    }
    if let Some(p) = &entry.payload_hash {
        let pk = pay_key(&request_id, p);
        let bound = store
            .state_get::<String>(&bound_key(&request_id))
            .map_err(se)?;
        let others = bound.is_some_and(|b| b != hex::encode(p))
            || store
                .state_keys(&pay_prefix(&request_id))
                .map_err(se)?
                .into_iter()
                .any(|other| other != pk);
        if others {
            items.push((
                conflict_key(&request_id),
                Some(json_bytes(&origin).map_err(se)?),
            ));
            findings.push(Finding::PayloadConflict {
                origin: origin.clone(),
                request_id,
            });
        }
        if store.state_get::<String>(&pk).map_err(se)?.is_none() {
            items.push((pk, Some(json_bytes(&origin).map_err(se)?)));
        }
    }
    match spent::index(store, entry).map_err(se)? {
        spent::Index::New(item) => items.push(item),
        spent::Index::Conflict(first) => findings.push(Finding::PresigReuse {
            origin: origin.clone(),
            presig: entry.presig.map(hex::encode).unwrap_or_default(),
            first: first.request_id,
        }),
        spent::Index::None | spent::Index::Known => {}
    }
    if origin == me {
        let marker = format!("ledger_req/{}/{me}", entry.request_id);
        if read_u64(store, &marker).map_err(se)? < entry.seq {
            items.push((marker, Some(json_bytes(&entry.seq).map_err(se)?)));
        }
    }
    note_seen(store, &origin, entry.seq, &origin, now).map_err(se)?;
    // The entry and the head it advances are written in one transaction: a crash between
    // them would leave a head below entries the node holds.
    while head + 1 == entry.seq
        || store
            .state_get::<LedgerEntry>(&entry_key(&origin, head + 1))
            .map_err(se)?
            .is_some()
    {
        head += 1;
    }
    items.push((head_key, Some(json_bytes(&head).map_err(se)?)));
    for (k, claim) in store
        .state_scan::<GapClaim>(&claim_prefix(&origin))
        .map_err(se)?
    {
        if claim.seq <= head {
            let reported = format!("gap_reported/{}", &k["ledger_claim/".len()..]);
            items.extend([(k, None), (reported, None)]);
        }
    }
    store.state_write(&items).map_err(se)?;
    Ok((Received::Stored, findings))
}

/// Advances `origin`'s contiguous head over entries already held above it; writes it only if
/// it moved.
fn repair_head(store: &Store, origin: &str) -> Result<(), StoreError> {
    let head_key = format!("ledger_head/{origin}");
    let held = read_u64(store, &head_key)?;
    let mut head = held;
    while store
        .state_get::<LedgerEntry>(&entry_key(origin, head + 1))?
        .is_some()
    {
        head += 1;
    }
    if head > held {
        tracing::warn!(
            origin,
            from = held,
            to = head,
            "ledger head repaired over held entries"
        );
        store.state_write(&[(head_key, Some(json_bytes(&head)?))])?;
    }
    Ok(())
}

/// Movements in a canonical order, so that two lists of the same movements compare equal.
fn canonical(mut moves: Vec<LedgerMove>) -> Vec<LedgerMove> {
    moves.sort();
    moves
}

/// Reserves a request's movements (idempotent per request), in one transaction with `also`.
pub fn reserve(
    store: &Store,
    request_id: &str,
    r: &Reservation,
    also: Vec<(String, Option<Vec<u8>>)>,
) -> Result<(), StoreError> {
    let key = format!("hist/{request_id}");
    if store.state_get::<Reservation>(&key)?.is_some() {
        return Ok(());
    }
    let mut items = vec![(key, Some(json_bytes(r)?))];
    if let Some(p) = &r.payload_hash {
        items.push((pay_key(request_id, p), Some(json_bytes(&"self")?)));
    }
    items.extend(also);
    store.state_write(&items)
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

#[cfg(test)]
mod tests;
