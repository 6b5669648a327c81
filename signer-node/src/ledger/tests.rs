#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::identity::NodeIdentity;
use proto::intent::{Asset, ChainRef};

const NOW: u64 = 1_800_000_000;

fn mv(amount: u128) -> LedgerMove {
    LedgerMove {
        account: None,
        chain: ChainRef::Ethereum { chain_id: 1 },
        asset: Asset::Native,
        destination: "0xdd".into(),
        amount,
    }
}

struct Peers {
    rogue: NodeIdentity,
    honest: NodeIdentity,
    roster: Roster,
}

fn peers() -> Peers {
    let rogue = NodeIdentity::generate("rogue");
    let honest = NodeIdentity::generate("honest");
    let roster = Roster::from_identities(&[rogue.public(), honest.public()]).unwrap();
    Peers {
        rogue,
        honest,
        roster,
    }
}

fn entry(
    by: &NodeIdentity,
    seq: u64,
    rid: &str,
    at: u64,
    moves: Vec<LedgerMove>,
    payload: u8,
) -> LedgerEntry {
    let mut e = LedgerEntry {
        origin: by.node_id.clone(),
        seq,
        request_id: rid.into(),
        key_id: "k".into(),
        signed_at: at,
        moves,
        payload_hash: Some([payload; 32]),
        presig: None,
        part: None,
        audit: None,
        signature: [0; 64],
    };
    e.signature = by.sign(&e.signed_bytes());
    e
}

fn counted(store: &Store) -> Vec<(u128, u64)> {
    let mut v: Vec<(u128, u64)> = history(store, ("none", None))
        .unwrap()
        .into_iter()
        .map(|h| (h.amount, h.signed_at))
        .collect();
    v.sort();
    v
}

fn reservation(at: u64, amount: u128, payload: u8) -> Reservation {
    Reservation {
        key_id: "k".into(),
        at,
        moves: vec![mv(amount)],
        payload_hash: Some([payload; 32]),
    }
}

/// Finding "one rogue node can switch off velocity": a peer's entry dated 0 with no
/// movements, for a request this node reserved, changes nothing this node counts, and the
/// peer is reported.
#[test]
fn forged_ledger_entries_never_weaken_own_reservations() {
    let (store, _dir) = crate::store::test_store("ledger-own");
    let p = peers();
    reserve(&store, "r1", &reservation(NOW, 50, 1), vec![]).unwrap();
    assert_eq!(counted(&store), vec![(50, NOW)]);
    let forged = entry(&p.rogue, 1, "r1", 0, vec![], 1);
    let (got, findings) = receive(&store, &p.roster, "me", &forged, NOW).unwrap();
    assert_eq!(got, Received::Stored);
    assert_eq!(
        findings,
        vec![Finding::Contradicts {
            origin: "rogue".into(),
            request_id: "r1".into()
        }]
    );
    assert_eq!(counted(&store), vec![(50, NOW)], "own reservation decides");
}

/// Without an own reservation, a liar's variant is counted beside the honest one, at the
/// latest time given: its `signed_at: 0` or empty movements take nothing away.
#[test]
fn forged_ledger_entries_never_weaken_peer_entries() {
    let (store, _dir) = crate::store::test_store("ledger-peer");
    let p = peers();
    let honest = entry(&p.honest, 1, "r2", NOW - 10, vec![mv(70)], 2);
    let forged_time = entry(&p.rogue, 1, "r2", 0, vec![mv(70)], 2);
    let forged_moves = entry(&p.rogue, 2, "r2", NOW - 10, vec![], 2);
    for e in [&forged_time, &forged_moves, &honest] {
        receive(&store, &p.roster, "me", e, NOW).unwrap();
    }
    assert_eq!(counted(&store), vec![(70, NOW - 10)]);
}

/// An entry dated in the receiver's future counts from its arrival, and is reported.
#[test]
fn ledger_entry_from_the_future_counts_from_arrival() {
    let (store, _dir) = crate::store::test_store("ledger-future");
    let p = peers();
    let e = entry(&p.rogue, 1, "r3", u64::MAX, vec![mv(5)], 3);
    let (_, findings) = receive(&store, &p.roster, "me", &e, NOW).unwrap();
    assert!(
        matches!(findings[..], [Finding::FutureTime { .. }]),
        "{findings:?}"
    );
    assert_eq!(counted(&store), vec![(5, NOW)]);
}

/// Finding "one approval, many payouts": one request id signed for two payloads counts
/// twice and is a conflict this node learns of.
#[test]
fn one_request_id_two_payloads_counts_twice_and_conflicts() {
    let (store, _dir) = crate::store::test_store("ledger-payload");
    let p = peers();
    reserve(&store, "r4", &reservation(NOW, 40, 4), vec![]).unwrap();
    let other = entry(&p.honest, 1, "r4", NOW, vec![mv(40)], 5);
    let (_, findings) = receive(&store, &p.roster, "me", &other, NOW).unwrap();
    assert_eq!(
        findings,
        vec![Finding::PayloadConflict {
            origin: "honest".into(),
            request_id: "r4".into()
        }]
    );
    assert_eq!(counted(&store), vec![(40, NOW), (40, NOW)]);
    assert!(store
        .state_get::<String>(&conflict_key("r4"))
        .unwrap()
        .is_some());
    // Evaluating r4 itself excludes only its own payload.
    let h = history(&store, ("r4", Some(&[4; 32]))).unwrap();
    assert_eq!(h.len(), 1);
}

/// A huge sequence number or head claim is refused, and a gap nobody fills stops
/// deferring after the timeout instead of for ever.
#[test]
fn impossible_heads_are_refused_and_gaps_expire() {
    let (store, _dir) = crate::store::test_store("ledger-gaps");
    let p = peers();
    let huge = entry(&p.rogue, u64::MAX, "r5", NOW, vec![], 6);
    let (got, findings) = receive(&store, &p.roster, "me", &huge, NOW).unwrap();
    assert_eq!(got, Received::Refused);
    assert!(matches!(findings[..], [Finding::ImpossibleSeq { .. }]));
    assert_eq!(
        note_seen(&store, "honest", u64::MAX, "rogue", NOW).unwrap(),
        Claim::Impossible
    );
    assert!(gaps(&store).unwrap().is_empty());
    // A plausible but false claim opens a gap that expires.
    assert_eq!(
        note_seen(&store, "honest", 3, "rogue", NOW).unwrap(),
        Claim::Behind
    );
    let open = gaps_at(&store, NOW + 10, 60).unwrap();
    assert_eq!(open.open, vec!["honest".to_string()]);
    let later = gaps_at(&store, NOW + 61, 60).unwrap();
    assert!(later.open.is_empty());
    assert_eq!(later.expired[0].1, "rogue");
    // The liar cannot restart its clock with a higher claim...
    note_seen(&store, "honest", 4, "rogue", NOW + 62).unwrap();
    assert!(gaps_at(&store, NOW + 62, 60).unwrap().open.is_empty());
    // ...and its expired claim does not silence another node's fresh one.
    note_seen(&store, "honest", 2, "other", NOW + 62).unwrap();
    assert_eq!(
        gaps_at(&store, NOW + 62, 60).unwrap().open,
        vec!["honest".to_string()]
    );
    // Filling the gap closes every claim it satisfies.
    for seq in 1..=4 {
        let e = entry(&p.honest, seq, &format!("f{seq}"), NOW, vec![], 7);
        receive(&store, &p.roster, "me", &e, NOW).unwrap();
    }
    assert!(gaps(&store).unwrap().is_empty());
    assert!(store.state_keys("ledger_claim/honest/").unwrap().is_empty());
}

/// Entries recorded before payload binding (v1) still verify.
#[test]
fn v1_entries_still_verify() {
    let (store, _dir) = crate::store::test_store("ledger-v1");
    let p = peers();
    let mut e = entry(&p.honest, 1, "old", NOW, vec![mv(1)], 0);
    e.payload_hash = None;
    e.signature = p.honest.sign(&e.signed_bytes());
    assert_eq!(
        receive(&store, &p.roster, "me", &e, NOW).unwrap().0,
        Received::Stored
    );
    assert!(e.signed_bytes().starts_with(b"custody/ledger/v1\0"));
}

/// A head left below held entries (a crash between an older version's two writes) is repaired
/// when the coordinator resends one of them; otherwise the node would wait for ever for
/// entries it holds. Entry and head are now written in one transaction.
#[test]
fn a_head_left_below_held_entries_is_repaired_by_a_duplicate() {
    let (store, _dir) = crate::store::test_store("ledger-head-repair");
    let p = peers();
    for seq in 1..=3 {
        let e = entry(&p.honest, seq, &format!("h{seq}"), NOW, vec![], 8);
        receive(&store, &p.roster, "me", &e, NOW).unwrap();
    }
    assert_eq!(heads(&store).unwrap()["honest"], 3);
    // The state an interrupted old write left: entries 2 and 3 held, head still 1.
    store
        .state_write(&[(
            "ledger_head/honest".to_string(),
            Some(serde_json::to_vec(&1u64).unwrap()),
        )])
        .unwrap();
    let again = entry(&p.honest, 2, "h2", NOW, vec![], 8);
    let (got, _) = receive(&store, &p.roster, "me", &again, NOW).unwrap();
    assert_eq!(got, Received::Duplicate);
    assert_eq!(heads(&store).unwrap()["honest"], 3);
}
