//! Key lifecycle: share refresh and resharing to a new guardian set or threshold
//! (`docs/lifecycle.md`): the redistribution's arithmetic ([`vss`]), its ceremony
//! ([`ceremony`]) and the activation of a new share epoch ([`activate`]).

pub mod ceremony;
pub mod messages;
pub mod vss;

use proto::{
    lifecycle::{stored_digest, Activation},
    wire::SessionFailure,
};

use crate::{
    guard::Guard,
    plan::share_record,
    presig::{META_PREFIX, RECORD_PREFIX},
    session::fail,
    store::Store,
};

/// State prefix of the identities of guardians learned from activated orders.
pub const PEER_PREFIX: &str = "peer/";

/// Guardians this node learned from activated membership orders (each checked against the
/// officers when it was activated), by node id.
pub fn ordered_peers(
    store: &Store,
) -> Result<std::collections::BTreeMap<String, proto::lifecycle::GuardianIdentity>, String> {
    let rows = store
        .state_scan::<proto::lifecycle::GuardianIdentity>(PEER_PREFIX)
        .map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches(PEER_PREFIX).to_string(), v))
        .collect())
}

/// Every peer this node knows: its pinned roster and the guardians it learned from activated
/// orders (an ordered identity never overrides a pinned one). Their ledger entries, joins and
/// envelopes verify against these keys.
pub fn known_peers(
    store: &Store,
    pinned: &crate::identity::Roster,
) -> Result<crate::identity::Roster, String> {
    pinned.with_identities(&ordered_peers(store)?)
}

/// What an activation did on this node.
#[derive(Debug, PartialEq, Eq)]
pub enum Activated {
    /// The epoch became active here now.
    Now,
    /// It was active already (a replay).
    Already,
    /// This node never held the key and is not a new guardian: nothing to do.
    NotConcerned,
}

/// Checks an activation certificate and, in one store transaction, makes its epoch active:
/// the new share (pending) becomes the key's share, the old epoch's share and every
/// presignature of the key are deleted. A node outside the new set keeps no share.
pub fn activate(store: &Store, guard: &Guard, a: &Activation) -> Result<Activated, SessionFailure> {
    let se = |e: crate::store::StoreError| fail("store.error", e.to_string());
    let o = &a.order.order;
    let epoch = a.epoch();
    let me = guard.node_id().to_string();
    let Some(mut meta) = store.key_meta(&o.key_id).map_err(se)? else {
        return Ok(Activated::NotConcerned);
    };
    if meta.epoch >= epoch {
        return Ok(Activated::Already);
    }
    let (officers, quorum) = guard.officers();
    a.order
        .check_authority(&officers, quorum)
        .map_err(|e| fail(e.code(), e.to_string()))?;
    a.order
        .order
        .check_shape()
        .map_err(|e| fail(e.code(), e.to_string()))?;
    let concerned_before = meta.group.contains(&me);
    if concerned_before && meta.complete {
        a.order
            .check_key(meta.epoch, &meta.group)
            .map_err(|e| fail(e.code(), e.to_string()))?;
    } else if meta.epoch != o.epoch && meta.pending.is_none() {
        return Err(fail(
            "reshare.activation_epoch",
            format!(
                "the key is in epoch {} here; the certificate activates {epoch}",
                meta.epoch
            ),
        ));
    }
    let commitments: [u8; 32] = a.commitments.clone().try_into().map_err(|_| {
        fail(
            "reshare.activation_malformed",
            "commitments hash is not 32 bytes",
        )
    })?;
    let order_digest = o.digest();
    for g in &o.new_set {
        let key = match o.identities.get(g) {
            Some(id) => hex::decode(&id.sign_key)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok()),
            None => guard.roster().get(g).map(|k| k.sign),
        };
        let digest = stored_digest(&order_digest, epoch, &commitments, g);
        let ok = match (key, a.confirmations.get(g)) {
            (Some(k), Some(sig)) => messages::signed_by(&k, &digest, sig),
            _ => false,
        };
        if !ok {
            return Err(fail(
                "reshare.activation_unconfirmed",
                format!("new guardian `{g}` has not confirmed that it stored its share"),
            ));
        }
    }
    let in_new = o.new_set.contains(&me);
    if in_new {
        let matches = meta.pending.as_ref().is_some_and(|p| {
            p.epoch == epoch
                && p.commitments == hex::encode(commitments)
                && p.order == hex::encode(order_digest)
        });
        if !matches {
            return Err(fail(
                "reshare.activation_mismatch",
                "this node holds no pending share of the certified ceremony",
            ));
        }
    }
    let old_epoch = meta.epoch;
    let mut unseal = vec![share_record(&o.key_id, old_epoch)];
    let mut items = Vec::new();
    for name in store
        .state_keys(&format!("{META_PREFIX}{}/", o.key_id))
        .map_err(se)?
    {
        let tail = name.trim_start_matches(META_PREFIX).to_string();
        unseal.push(format!("{RECORD_PREFIX}{tail}"));
        items.push((name, None));
    }
    if !in_new {
        unseal.push(share_record(&o.key_id, epoch));
    }
    let dropped = items.len();
    for (node, id) in &o.identities {
        items.push((
            format!("{PEER_PREFIX}{node}"),
            Some(crate::store::json_bytes(id).map_err(se)?),
        ));
    }
    meta.epoch = epoch;
    meta.group = o.new_set.clone();
    meta.threshold = o.new_threshold;
    meta.complete = in_new;
    meta.pending = None;
    meta.since = guard.now();
    store.commit_meta(&meta, &items, &unseal).map_err(se)?;
    guard.audit(
        "reshare.activated",
        serde_json::json!({"key_id": o.key_id, "epoch": epoch, "guardians": o.new_set,
            "threshold": o.new_threshold, "holds_share": in_new, "presignatures_deleted": dropped}),
    )?;
    Ok(Activated::Now)
}

#[cfg(test)]
mod tests;
