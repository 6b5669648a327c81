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
    key_id: &str,
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

/// Checks, before joining a session, that the presignature can sign for these parties.
pub fn check_usable(
    store: &Store,
    key_id: &str,
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
