//! This node's own ledger entries: numbered from its head, signed with its identity key and
//! written in one transaction with what they record (a signature, a consumed presignature).

use proto::authz::{AuditHead, LedgerEntry, LedgerMove};

use super::{entry_key, pay_key, read_u64, spent};
use crate::{
    identity::NodeIdentity,
    store::{json_bytes, Store, StoreError},
};

/// This node's own entry, before it is numbered and signed.
#[derive(Debug, Clone)]
pub struct OwnEntry<'a> {
    /// The request signed.
    pub request_id: &'a str,
    /// Key that signed.
    pub key_id: &'a str,
    /// What moved.
    pub moves: Vec<LedgerMove>,
    /// Hash of the payload signed.
    pub payload_hash: Option<[u8; 32]>,
    /// The presignature consumed and the part it signed (each consumption gets its own entry).
    pub presig: Option<([u8; 32], u32)>,
    /// This node's audit-log head.
    pub audit: Option<AuditHead>,
}

/// Records this node's own entry in one transaction with `also`, consuming the sealed records
/// `consume` ([`StoreError::Missing`] if one is gone: nothing is written). An online signature
/// gets one entry per request; every presignature consumption gets its own entry (with its id
/// and part, indexed in `presig_spent/`), unless the ledger already holds this node's entry for
/// exactly that consumption (replayed after a rollback). A presignature the ledger records as
/// spent on another message is refused with [`StoreError::Missing`].
pub fn record_own(
    store: &Store,
    identity: &NodeIdentity,
    own: OwnEntry<'_>,
    now: u64,
    also: Vec<(String, Option<Vec<u8>>)>,
    consume: &[String],
) -> Result<Option<LedgerEntry>, StoreError> {
    let me = identity.node_id.as_str();
    let marker = format!("ledger_req/{}/{me}", own.request_id);
    let recorded = match own.presig {
        None => store.state_get::<u64>(&marker)?.is_some(),
        Some((id, part)) => match spent::spent(store, &id)? {
            Some(s)
                if own
                    .payload_hash
                    .is_some_and(|p| s.is_for(own.request_id, &p, part)) =>
            {
                s.origin == me
            }
            Some(s) => {
                return Err(StoreError::Missing(format!(
                    "presignature {} (the ledger records it spent on `{}`)",
                    hex::encode(id),
                    s.request_id
                )))
            }
            None => false,
        },
    };
    if recorded {
        store.commit_consuming(&also, consume)?;
        return Ok(None);
    }
    let head_key = format!("ledger_head/{me}");
    let seq = read_u64(store, &head_key)? + 1;
    let mut entry = LedgerEntry {
        origin: me.to_string(),
        seq,
        request_id: own.request_id.to_string(),
        key_id: own.key_id.to_string(),
        signed_at: now,
        moves: own.moves,
        payload_hash: own.payload_hash,
        presig: own.presig.map(|p| p.0),
        part: own.presig.map(|p| p.1),
        audit: own.audit,
        signature: [0; 64],
    };
    entry.signature = identity.sign(&entry.signed_bytes());
    let mut items = vec![
        (entry_key(me, seq), Some(json_bytes(&entry)?)),
        (head_key, Some(json_bytes(&seq)?)),
        (format!("ledger_seen/{me}"), Some(json_bytes(&seq)?)),
        (marker, Some(json_bytes(&seq)?)),
    ];
    if let Some(p) = &own.payload_hash {
        items.push((pay_key(own.request_id, p), Some(json_bytes(&me)?)));
    }
    if let spent::Index::New(item) = spent::index(store, &entry)? {
        items.push(item);
    }
    items.extend(also);
    store.commit_consuming(&items, consume)?;
    Ok(Some(entry))
}
