//! This node's presignatures: sealed one-time records, each bound (by the record name the AEAD
//! authenticates) to this node's store and to its key id.
//!
//! Lifecycle of one presignature on a node:
//! 1. a presign session among t nodes stores it under the session id (sealed record
//!    `presig/<key>/<id>`, public metadata `presig_meta/<key>/<id>`);
//! 2. a signing session naming it decodes the transaction, runs the policy and agrees with the
//!    other parties on the digest, then issues a partial signature. The sealed record is
//!    deleted, `presig_used/<id>` and the issued partial `partial/<request>/<part>` written, and
//!    the ledger entry appended, all in one durable transaction, before the partial is sent;
//! 3. asked again for the same request part with the same presignature (the coordinator
//!    restarted), the node resends the stored partial: it never issues a second one.
//!
//! The used marker is this node's own state, and a store can be rolled back (a VM snapshot
//! reverted, an old store file put back). Every consumption is therefore also recorded in a
//! signed ledger entry carrying the presignature id, kept by the peers and the coordinator;
//! replayed to this node they are indexed in `presig_spent/` ([`crate::ledger::spent`]), which
//! is checked before joining and before issuing ([`check_spent`]): a presignature the ledger
//! records as spent signs nothing else, whatever this node's own markers say.
//!
//! Presignatures are never backed up: a restored backup would bring back used ones.

use std::collections::BTreeMap;

use proto::{
    presig::{PresigCommitment, PresigId, PresigPublic},
    wire::SessionFailure,
};
use serde::{Deserialize, Serialize};

use crate::{
    mpc::{Presig, E},
    secret::to_secret_json,
    session::fail,
    store::{json_bytes, Store, StoreError},
};

/// Prefix of the sealed presignature records.
pub const RECORD_PREFIX: &str = "presig/";
/// Prefix of their public metadata (state table).
pub const META_PREFIX: &str = "presig_meta/";
const USED_PREFIX: &str = "presig_used/";

/// Public facts about a stored presignature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresigMeta {
    /// Its parties, in session order.
    pub parties: Vec<String>,
    /// When it was stored (this node's clock).
    pub created_at: u64,
    /// The key's share epoch it was made from: it is never used in another epoch (a presign
    /// session that ends after an activation stores one of the old epoch).
    #[serde(default)]
    pub epoch: u64,
}

/// A partial signature this node issued for a request part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedPartial {
    /// The presignature used, hex.
    pub presig: String,
    /// σᵢ, hex.
    pub sigma: String,
}

fn record_name(key_id: &str, id: &PresigId) -> String {
    format!("{RECORD_PREFIX}{key_id}/{}", hex::encode(id))
}

fn meta_name(key_id: &str, id: &PresigId) -> String {
    format!("{META_PREFIX}{key_id}/{}", hex::encode(id))
}

fn used_name(id: &PresigId) -> String {
    format!("{USED_PREFIX}{}", hex::encode(id))
}

/// State key of the partial issued for one part of a request.
pub fn partial_key(request_id: &str, part: u32) -> String {
    format!("partial/{request_id}\0/{part}")
}

fn store_err(e: StoreError) -> SessionFailure {
    fail("store.error", e.to_string())
}

/// The public data in wire form.
pub fn public_of(p: &Presig) -> PresigPublic {
    let pt = |x: &cggmp24::generic_ec::Point<E>| x.to_bytes(true).as_bytes().to_vec();
    PresigPublic {
        gamma: pt(&p.1.Gamma),
        commitments: p
            .1
            .commitments
            .iter()
            .map(|c| PresigCommitment {
                delta: pt(&c.tilde_Delta),
                s: pt(&c.tilde_S),
            })
            .collect(),
    }
}

/// Stores a new presignature. Beyond `cap` for its key and parties, the oldest are deleted
/// (deleting one is always safe; only reuse is not).
pub fn put(
    store: &Store,
    (key_id, epoch): (&str, u64),
    id: &PresigId,
    parties: &[String],
    presig: &Presig,
    now: u64,
    cap: usize,
) -> Result<(), SessionFailure> {
    let mut same: Vec<(String, PresigMeta)> = store
        .state_scan::<PresigMeta>(&format!("{META_PREFIX}{key_id}/"))
        .map_err(store_err)?
        .into_iter()
        .filter(|(_, m)| m.parties == parties)
        .collect();
    same.sort_by_key(|(_, m)| m.created_at);
    let excess = (same.len() + 1).saturating_sub(cap.max(1));
    let mut items = Vec::new();
    let mut unseal = Vec::new();
    for (name, _) in same.into_iter().take(excess) {
        let tail = name.trim_start_matches(META_PREFIX).to_string();
        unseal.push(format!("{RECORD_PREFIX}{tail}"));
        items.push((name, None));
    }
    let meta = PresigMeta {
        parties: parties.to_vec(),
        created_at: now,
        epoch,
    };
    items.push((
        meta_name(key_id, id),
        Some(json_bytes(&meta).map_err(store_err)?),
    ));
    let secret = to_secret_json(&presig.0)
        .map_err(|_| fail("session.internal", "serialising a presignature failed"))?;
    store
        .commit(
            &items,
            Some((&record_name(key_id, id), secret.expose_secret())),
            &unseal,
        )
        .map_err(store_err)
}

fn is_used(store: &Store, id: &PresigId) -> Result<bool, SessionFailure> {
    Ok(store
        .state_get::<u64>(&used_name(id))
        .map_err(store_err)?
        .is_some())
}

/// `presig.used`: the presignature signed something already (or a concurrent session won it).
pub fn used_failure(id: &PresigId) -> SessionFailure {
    fail(
        "presig.used",
        format!("presignature {} was already used", hex::encode(id)),
    )
}

/// What one request part would sign with a presignature.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The request.
    pub request_id: &'a str,
    /// Hash of its payload, as this node decoded it.
    pub payload_hash: &'a [u8; 32],
    /// The part.
    pub part: u32,
}

/// Why [`check_spent`] refused.
#[derive(Debug)]
pub struct Spent {
    /// `presig.used`, naming what the ledger recorded.
    pub failure: SessionFailure,
    /// The ledger recorded the consumption but this store has no used marker for it: the store
    /// was rolled back (or lost state), and whoever asks is asking for a nonce reuse.
    pub rollback: bool,
    /// Whose entry recorded the consumption.
    pub origin: String,
}

/// Refuses a presignature that the ledger records as spent on another request, payload or part
/// (a repeat of exactly the recorded part passes: its partial is the same value).
pub fn check_spent(store: &Store, id: &PresigId, b: Binding<'_>) -> Result<(), Box<Spent>> {
    let internal = |f: SessionFailure| {
        Box::new(Spent {
            failure: f,
            rollback: false,
            origin: String::new(),
        })
    };
    let held = crate::ledger::spent::spent(store, id).map_err(|e| internal(store_err(e)))?;
    let Some(held) = held.filter(|s| !s.is_for(b.request_id, b.payload_hash, b.part)) else {
        return Ok(());
    };
    let rollback = !is_used(store, id).map_err(internal)?;
    Err(Box::new(Spent {
        failure: fail(
            "presig.used",
            format!(
                "presignature {} was already used: the ledger (entry of `{}`) records it on part {} of `{}`",
                hex::encode(id),
                held.origin,
                held.part,
                held.request_id
            ),
        ),
        rollback,
        origin: held.origin,
    }))
}

/// Checks, before joining a session, that the presignature can sign for these parties.
pub fn check_usable(
    store: &Store,
    (key_id, epoch): (&str, u64),
    id: &PresigId,
    parties: &[String],
) -> Result<(), SessionFailure> {
    if is_used(store, id)? {
        return Err(used_failure(id));
    }
    let meta = store
        .state_get::<PresigMeta>(&meta_name(key_id, id))
        .map_err(store_err)?
        .ok_or_else(|| {
            fail(
                "presig.unknown",
                format!(
                    "no presignature {} of key `{key_id}` on this node",
                    hex::encode(id)
                ),
            )
        })?;
    if meta.epoch != epoch {
        return Err(fail(
            "presig.mismatch",
            format!(
                "presignature {} was made in share epoch {}, not the key's {epoch}",
                hex::encode(id),
                meta.epoch
            ),
        ));
    }
    if meta.parties != parties {
        return Err(fail(
            "presig.mismatch",
            format!(
                "presignature {} belongs to parties {:?}",
                hex::encode(id),
                meta.parties
            ),
        ));
    }
    Ok(())
}

/// [`check_spent`]; a refusal that shows this store was rolled back is reported
/// against the coordinator (`presig.reuse`): an honest one never asks for a spent presignature.
pub(crate) fn refuse_spent(
    store: &Store,
    guard: &crate::guard::Guard,
    id: &PresigId,
    b: Binding<'_>,
) -> Result<(), SessionFailure> {
    check_spent(store, id, b).map_err(|s| {
        if s.rollback {
            guard.report(
                "coordinator",
                "presig.reuse",
                &format!(
                    "asked to sign part {} of `{}` with presignature {}, which the ledger (entry of \
                     `{}`) records as spent on another message while this store has no record of \
                     it: the store was rolled back",
                    b.part,
                    b.request_id,
                    hex::encode(id),
                    s.origin
                ),
            );
        }
        s.failure
    })
}

/// A part signs at most once on this node: with the presignature it was first issued from, or
/// (never issued) fully or with a usable presignature of these parties that the ledger does not
/// record as spent on another message.
pub(crate) fn check_part(
    (store, guard): (&Store, &crate::guard::Guard),
    key: (&str, u64),
    b: Binding<'_>,
    presig: Option<PresigId>,
    parties: &[String],
) -> Result<(), SessionFailure> {
    let (request_id, part) = (b.request_id, b.part);
    let prev = issued(store, request_id, part)?;
    match (prev, presig) {
        (Some(prev), Some(id)) if prev.presig == hex::encode(id) => Ok(()),
        (Some(prev), _) => Err(fail(
            "request.already_signed",
            format!(
                "part {part} of request `{request_id}` was issued from presignature {}",
                prev.presig
            ),
        )),
        (None, Some(id)) => {
            refuse_spent(store, guard, &id, b)?;
            check_usable(store, key, &id, parties)
        }
        (None, None) => Ok(()),
    }
}

/// Opens a stored presignature (it stays stored until [`consume_items`] commit).
pub fn open(
    store: &Store,
    key_id: &str,
    id: &PresigId,
) -> Result<cggmp24::signing::Presignature<E>, SessionFailure> {
    let name = record_name(key_id, id);
    let Some(bytes) = store.get_secret(&name).map_err(store_err)? else {
        // It was there before the join: gone now means a concurrent session consumed it.
        return Err(match is_used(store, id)? {
            true => used_failure(id),
            false => fail(
                "presig.unknown",
                format!("presignature record `{name}` is missing"),
            ),
        });
    };
    serde_json::from_slice(bytes.expose_secret()).map_err(|_| {
        fail(
            "store.corrupt",
            format!("stored record `{name}` does not parse"),
        )
    })
}

/// State writes (`None` deletes), as [`Store::commit`] takes them.
pub type StateItems = Vec<(String, Option<Vec<u8>>)>;

/// What consuming a presignature writes, in the same transaction as the ledger entry: the
/// used marker, the issued partial, the metadata removed; and the sealed record to delete.
pub fn consume_items(
    key_id: &str,
    id: &PresigId,
    request_id: &str,
    part: u32,
    issued: &IssuedPartial,
    now: u64,
) -> Result<(StateItems, Vec<String>), SessionFailure> {
    let items = vec![
        (used_name(id), Some(json_bytes(&now).map_err(store_err)?)),
        (
            partial_key(request_id, part),
            Some(json_bytes(issued).map_err(store_err)?),
        ),
        (meta_name(key_id, id), None),
    ];
    Ok((items, vec![record_name(key_id, id)]))
}

/// The partial this node issued for a request part, if any.
pub fn issued(
    store: &Store,
    request_id: &str,
    part: u32,
) -> Result<Option<IssuedPartial>, SessionFailure> {
    store
        .state_get::<IssuedPartial>(&partial_key(request_id, part))
        .map_err(store_err)
}

/// Unused presignatures per key (for the node's status).
pub fn counts(store: &Store) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for name in store.state_keys(META_PREFIX)? {
        let rest = &name[META_PREFIX.len()..];
        if let Some((key, _)) = rest.rsplit_once('/') {
            *out.entry(key.to_string()).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// σᵢ as 32 big-endian bytes.
pub fn sigma_bytes(p: &cggmp24::signing::PartialSignature<E>) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&p.sigma.to_be_bytes());
    out
}

/// Parses a stored σᵢ.
pub fn parse_sigma(issued: &IssuedPartial) -> Result<[u8; 32], SessionFailure> {
    hex::decode(&issued.sigma)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| fail("store.corrupt", "a stored partial signature is malformed"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::Arc;

    use super::*;
    use crate::{
        guard::{Authorities, Guard},
        identity::{NodeIdentity, Roster},
        ledger::{self, OwnEntry},
        policy_book::{Pinned, PolicyBook},
    };

    const NOW: u64 = 1_800_000_000;
    const P: PresigId = [9; 32];

    fn guard(
        store: &Arc<Store>,
        me: &Arc<NodeIdentity>,
        roster: &Roster,
        dir: &std::path::Path,
    ) -> Guard {
        let pinned = Pinned {
            officers: vec![],
            threshold: 1,
            activation_delay: 0,
        };
        let book = PolicyBook::load(store, pinned).unwrap();
        let log = runtime::audit::AuditLog::open(&dir.join("audit.jsonl")).unwrap();
        let audit = runtime::audit::SharedAudit::new(log);
        let auth = Authorities::default();
        let scope = crate::config::Scope::default();
        Guard::new(
            store.clone(),
            me.clone(),
            roster.clone(),
            scope,
            auth,
            0,
            book,
            audit,
        )
    }

    fn binding<'a>(request_id: &'a str, payload_hash: &'a [u8; 32]) -> Binding<'a> {
        Binding {
            request_id,
            payload_hash,
            part: 0,
        }
    }

    /// Finding 3 (a rolled-back store reuses presignatures), on two stores of one node: `now`
    /// consumed presignature P for request r1 (used marker, partial and ledger entry in one
    /// transaction); `old` is the store as it was before (P unused, as after a snapshot
    /// revert). Without the ledger, `old` would let P sign r2 (the old behaviour); once its own
    /// entry is replayed to it, P is refused `presig.used` for r2 and the coordinator reported
    /// `presig.reuse`, while r1's own part still passes (its partial is the same value). `now`
    /// refuses r2 too, without a rollback report.
    #[test]
    fn a_rolled_back_store_refuses_a_presignature_the_ledger_records_spent() {
        let (now_store, now_dir) = crate::store::test_store("presig-now");
        let (old_store, old_dir) = crate::store::test_store("presig-old");
        let (now_store, old_store) = (Arc::new(now_store), Arc::new(old_store));
        let me = Arc::new(NodeIdentity::generate("n1"));
        let peer = NodeIdentity::generate("peer");
        let roster = Roster::from_identities(&[me.public(), peer.public()]).unwrap();
        let parties = vec!["n1".to_string(), "peer".to_string()];
        let meta = PresigMeta {
            parties: parties.clone(),
            created_at: NOW,
            epoch: 0,
        };
        for s in [&now_store, &old_store] {
            let item = (meta_name("k", &P), Some(json_bytes(&meta).unwrap()));
            s.state_write(&[item]).unwrap();
        }
        let issued = IssuedPartial {
            presig: hex::encode(P),
            sigma: "11".repeat(32),
        };
        let (items, _) = consume_items("k", &P, "r1", 0, &issued, NOW).unwrap();
        let own = OwnEntry {
            request_id: "r1",
            key_id: "k",
            moves: vec![],
            payload_hash: Some([1; 32]),
            presig: Some((P, 0)),
            audit: None,
        };
        let entry = ledger::record_own(&now_store, &me, own, NOW, items, &[])
            .unwrap()
            .unwrap();
        assert_eq!((entry.presig, entry.part), (Some(P), Some(0)));

        let old_guard = guard(&old_store, &me, &roster, &old_dir);
        let (r1, r2) = (binding("r1", &[1; 32]), binding("r2", &[2; 32]));
        let check = |store: &Store, g: &Guard, b: Binding<'_>| {
            check_part((store, g), ("k", 0), b, Some(P), &parties).map_err(|f| f.code)
        };
        assert_eq!(
            check(&old_store, &old_guard, r2),
            Ok(()),
            "the old behaviour"
        );
        assert_eq!(
            check_part((&old_store, &old_guard), ("k", 1), r2, Some(P), &parties)
                .map_err(|f| f.code),
            Err("presig.mismatch".to_string()),
            "a presignature of share epoch 0 is never used in epoch 1"
        );
        ledger::receive(&old_store, &roster, "n1", &entry, NOW).unwrap();
        assert_eq!(
            check(&old_store, &old_guard, r2),
            Err("presig.used".to_string())
        );
        let reported = old_store
            .state_get::<String>("suspect/coordinator")
            .unwrap()
            .unwrap_or_default();
        assert!(reported.starts_with("presig.reuse"), "{reported}");
        assert_eq!(check(&old_store, &old_guard, r1), Ok(()), "the same part");

        let now_guard = guard(&now_store, &me, &roster, &now_dir);
        assert_eq!(
            check(&now_store, &now_guard, r2),
            Err("presig.used".to_string())
        );
        assert_eq!(check(&now_store, &now_guard, r1), Ok(()), "resent");
        let none = now_store
            .state_get::<String>("suspect/coordinator")
            .unwrap();
        assert_eq!(none, None, "no rollback on the store that remembers");
    }
}
