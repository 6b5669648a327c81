//! The presignatures the ledger says were consumed: `presig_spent/<id hex>` names the request,
//! payload and part a presignature signed, whoever's entry told this node (its own, a peer's,
//! or its own replayed by the coordinator after a rollback).
//!
//! The index is written in the same transaction as the entry that carries the presignature id,
//! and is checked before a partial is issued: a node whose store lost a consumption (snapshot
//! revert, old store file put back) relearns it from the entries that peers and the coordinator
//! keep, and refuses to sign another message with that presignature.

use proto::authz::LedgerEntry;
use serde::{Deserialize, Serialize};

use crate::store::{json_bytes, Store, StoreError};

/// What a presignature was consumed for, as a ledger entry recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    /// The request signed.
    pub request_id: String,
    /// Hash of the payload signed (absent only if the entry had none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "proto::authz::opt_hex32"
    )]
    pub payload_hash: Option<[u8; 32]>,
    /// The request part.
    pub part: u32,
    /// The node whose entry recorded it.
    pub origin: String,
}

impl Spent {
    /// Whether this consumption signed exactly `request_id`'s `payload_hash`, part `part`.
    pub fn is_for(&self, request_id: &str, payload_hash: &[u8; 32], part: u32) -> bool {
        self.request_id == request_id
            && self.payload_hash.as_ref() == Some(payload_hash)
            && self.part == part
    }
}

/// State key of a presignature's consumption.
pub fn spent_key(id: &[u8; 32]) -> String {
    format!("presig_spent/{}", hex::encode(id))
}

/// The consumption the ledger recorded for presignature `id`, if any.
pub fn spent(store: &Store, id: &[u8; 32]) -> Result<Option<Spent>, StoreError> {
    store.state_get(&spent_key(id))
}

/// What an entry's presignature means for the index.
pub enum Index {
    /// The entry names no presignature.
    None,
    /// The index already holds this consumption (any origin).
    Known,
    /// New: write this item with the entry.
    New((String, Option<Vec<u8>>)),
    /// The presignature is recorded as consumed for another request, payload or part: the
    /// entry's origin signed two messages with one presignature. The first record is kept.
    Conflict(Spent),
}

/// Compares an entry's presignature with the index.
pub fn index(store: &Store, entry: &LedgerEntry) -> Result<Index, StoreError> {
    let (Some(id), Some(part)) = (entry.presig, entry.part) else {
        return Ok(Index::None);
    };
    let this = Spent {
        request_id: entry.request_id.clone(),
        payload_hash: entry.payload_hash,
        part,
        origin: entry.origin.clone(),
    };
    Ok(match spent(store, &id)? {
        None => Index::New((spent_key(&id), Some(json_bytes(&this)?))),
        Some(held)
            if held.request_id == this.request_id
                && held.payload_hash == this.payload_hash
                && held.part == this.part =>
        {
            Index::Known
        }
        Some(held) => Index::Conflict(held),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::{
        identity::{NodeIdentity, Roster},
        ledger::{receive, record_own, Finding, OwnEntry, Received},
    };

    const NOW: u64 = 1_800_000_000;

    fn own<'a>(rid: &'a str, payload: u8, presig: Option<([u8; 32], u32)>) -> OwnEntry<'a> {
        OwnEntry {
            request_id: rid,
            key_id: "k",
            moves: vec![],
            payload_hash: Some([payload; 32]),
            presig,
            audit: None,
        }
    }

    fn peer_entry(by: &NodeIdentity, seq: u64, rid: &str, presig: Option<[u8; 32]>) -> LedgerEntry {
        let mut e = LedgerEntry {
            origin: by.node_id.clone(),
            seq,
            request_id: rid.into(),
            key_id: "k".into(),
            signed_at: NOW,
            moves: vec![],
            payload_hash: Some([1; 32]),
            presig,
            part: presig.map(|_| 0),
            audit: None,
            signature: [0; 64],
        };
        e.signature = by.sign(&e.signed_bytes());
        e
    }

    fn setup() -> (NodeIdentity, NodeIdentity, Roster) {
        let me = NodeIdentity::generate("n1");
        let peer = NodeIdentity::generate("peer");
        let roster = Roster::from_identities(&[me.public(), peer.public()]).unwrap();
        (me, peer, roster)
    }

    /// A v3 entry (presignature id and part) verifies, and any change to its new fields breaks
    /// its signature; a v2 entry still verifies as before. Receiving a v3 entry indexes the
    /// consumption; a v2 entry indexes nothing.
    #[test]
    fn v3_entries_verify_bind_their_presignature_and_are_indexed() {
        let (store, _dir) = crate::store::test_store("spent-v3");
        let (_, peer, roster) = setup();
        let v2 = peer_entry(&peer, 1, "r0", None);
        assert!(v2.signed_bytes().starts_with(b"custody/ledger/v2\0"));
        let got = receive(&store, &roster, "n1", &v2, NOW).unwrap();
        assert_eq!(got, (Received::Stored, vec![]));
        let v3 = peer_entry(&peer, 2, "r1", Some([7; 32]));
        assert!(v3.signed_bytes().starts_with(b"custody/ledger/v3\0"));
        let mut forged = v3.clone();
        forged.part = Some(1);
        assert!(receive(&store, &roster, "n1", &forged, NOW).is_err());
        let mut forged = v3.clone();
        forged.presig = Some([8; 32]);
        assert!(receive(&store, &roster, "n1", &forged, NOW).is_err());
        assert_eq!(
            receive(&store, &roster, "n1", &v3, NOW).unwrap().0,
            Received::Stored
        );
        let held = spent(&store, &[7; 32]).unwrap().unwrap();
        assert_eq!(
            held,
            Spent {
                request_id: "r1".into(),
                payload_hash: Some([1; 32]),
                part: 0,
                origin: "peer".into()
            }
        );
        assert!(held.is_for("r1", &[1; 32], 0) && !held.is_for("r1", &[1; 32], 1));
        assert_eq!(store.state_keys("presig_spent/").unwrap().len(), 1);
    }

    /// Every presignature consumption gets its own entry (two parts of one request: two
    /// entries, both indexed), where an online signature gets one entry per request; a
    /// presignature the ledger records on another request is refused and nothing is written.
    #[test]
    fn each_consumption_is_an_entry_and_a_spent_presignature_is_refused() {
        let (store, _dir) = crate::store::test_store("spent-own");
        let (me, _, _) = setup();
        let e1 = record_own(
            &store,
            &me,
            own("r1", 1, Some(([1; 32], 0))),
            NOW,
            vec![],
            &[],
        );
        let e2 = record_own(
            &store,
            &me,
            own("r1", 1, Some(([2; 32], 1))),
            NOW,
            vec![],
            &[],
        );
        let (e1, e2) = (e1.unwrap().unwrap(), e2.unwrap().unwrap());
        assert_eq!((e1.seq, e2.seq), (1, 2));
        assert_eq!((e1.presig, e1.part), (Some([1; 32]), Some(0)));
        assert_eq!((e2.presig, e2.part), (Some([2; 32]), Some(1)));
        assert!(spent(&store, &[1; 32])
            .unwrap()
            .unwrap()
            .is_for("r1", &[1; 32], 0));
        assert!(spent(&store, &[2; 32])
            .unwrap()
            .unwrap()
            .is_for("r1", &[1; 32], 1));
        // Online: once per request.
        let online = record_own(&store, &me, own("r1", 1, None), NOW, vec![], &[]).unwrap();
        assert!(online.is_none());
        // The same consumption again (a retry after a lost partial): no second entry.
        let again = record_own(
            &store,
            &me,
            own("r1", 1, Some(([1; 32], 0))),
            NOW,
            vec![],
            &[],
        );
        assert!(again.unwrap().is_none());
        let marker = ("m".to_string(), Some(b"1".to_vec()));
        let other = record_own(
            &store,
            &me,
            own("r2", 2, Some(([1; 32], 0))),
            NOW,
            vec![marker],
            &[],
        );
        assert!(matches!(other, Err(StoreError::Missing(_))), "{other:?}");
        assert!(
            store.state_get::<u64>("m").unwrap().is_none(),
            "nothing written"
        );
        assert_eq!(crate::ledger::heads(&store).unwrap()["n1"], 2);
    }

    /// This node's own entries replayed to a store that lacks them (a rollback) are accepted:
    /// the own head, request marker and presignature index come back, and the next own entry
    /// continues after them instead of reusing a sequence number.
    #[test]
    fn own_entries_replayed_restore_the_head_and_the_index() {
        let (now_store, _d1) = crate::store::test_store("spent-now");
        let (old_store, _d2) = crate::store::test_store("spent-old");
        let (me, _, roster) = setup();
        let e1 = record_own(
            &now_store,
            &me,
            own("r1", 1, Some(([5; 32], 0))),
            NOW,
            vec![],
            &[],
        );
        let e2 = record_own(&now_store, &me, own("r2", 2, None), NOW, vec![], &[]);
        for e in [e1.unwrap().unwrap(), e2.unwrap().unwrap()] {
            let got = receive(&old_store, &roster, "n1", &e, NOW).unwrap();
            assert_eq!(got, (Received::Stored, vec![]));
        }
        assert_eq!(crate::ledger::heads(&old_store).unwrap()["n1"], 2);
        assert_eq!(
            old_store.state_get::<u64>("ledger_req/r2/n1").unwrap(),
            Some(2)
        );
        assert!(spent(&old_store, &[5; 32])
            .unwrap()
            .unwrap()
            .is_for("r1", &[1; 32], 0));
        let next = record_own(&old_store, &me, own("r3", 3, None), NOW, vec![], &[]);
        assert_eq!(next.unwrap().unwrap().seq, 3);
        // r2 is recorded: its online signature gets no second entry.
        let r2 = record_own(&old_store, &me, own("r2", 2, None), NOW, vec![], &[]);
        assert!(r2.unwrap().is_none());
    }

    /// A peer's entry that spends an already-recorded presignature on another request is stored
    /// (it counts) but reported as `presig.reuse`; the first record stays.
    #[test]
    fn a_peer_spending_one_presignature_twice_is_reported() {
        let (store, _dir) = crate::store::test_store("spent-reuse");
        let (_, peer, roster) = setup();
        receive(
            &store,
            &roster,
            "n1",
            &peer_entry(&peer, 1, "r1", Some([3; 32])),
            NOW,
        )
        .unwrap();
        let (got, findings) = receive(
            &store,
            &roster,
            "n1",
            &peer_entry(&peer, 2, "r2", Some([3; 32])),
            NOW,
        )
        .unwrap();
        assert_eq!(got, Received::Stored);
        assert!(
            matches!(&findings[..], [Finding::PresigReuse { origin, first, .. }]
                if origin == "peer" && first == "r1"),
            "{findings:?}"
        );
        assert_eq!(findings[0].describe().1, "presig.reuse");
        assert_eq!(spent(&store, &[3; 32]).unwrap().unwrap().request_id, "r1");
    }
}
