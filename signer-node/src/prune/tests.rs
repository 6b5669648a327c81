#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proto::{
    authz::{LedgerEntry, LedgerMove},
    intent::{Asset, ChainRef},
};

use super::*;
use crate::{
    identity::{NodeIdentity, Roster},
    ledger::{self, OwnEntry, Reservation},
    store::json_bytes,
};

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 24 * 3600;
/// The test policy's velocity window: 20 days, so the retention is 40 days.
const WINDOW: u64 = 20 * DAY;

fn mv(amount: u128) -> LedgerMove {
    LedgerMove {
        account: None,
        chain: ChainRef::Ethereum { chain_id: 1 },
        asset: Asset::Native,
        destination: "0xdd".into(),
        amount,
    }
}

fn entry(by: &NodeIdentity, seq: u64, rid: &str, at: u64, amount: u128) -> LedgerEntry {
    let mut e = LedgerEntry {
        origin: by.node_id.clone(),
        seq,
        request_id: rid.into(),
        key_id: "k".into(),
        signed_at: at,
        moves: vec![mv(amount)],
        payload_hash: Some([seq as u8; 32]),
        presig: None,
        part: None,
        audit: None,
        signature: [0; 64],
    };
    e.signature = by.sign(&e.signed_bytes());
    e
}

/// Installs (unsigned: retention does not verify) a policy with a 20-day window.
fn install_policy(store: &Store) {
    let toml = "version = 1\n[chains.eth]\nid = \"ethereum:1\"\nmax_fee = 1000\n\
        [assets.eth]\nchain = \"eth\"\nasset = \"native\"\nper_tx = 1000\n\
        [[assets.eth.velocity]]\nwindow = \"480h\"\nmax = 100000\n\
        [keys.k]\nassets = [\"eth\"]\n[destinations]\nrequire_allowlist = false\n";
    let bundle = policy::Bundle::new(toml.into()).to_json();
    let rec =
        serde_json::json!({"bundle_json": bundle, "version": 1, "hash": "", "active_from": 0});
    store
        .state_write(&[("policy/active".into(), Some(json_bytes(&rec).unwrap()))])
        .unwrap();
}

/// What judging a request writes: binding, its date, first sight and a reservation.
fn judged(store: &Store, rid: &str, at: u64, amount: u128) {
    store.bind_request(rid, &[1; 32]).unwrap();
    let r = Reservation {
        key_id: "k".into(),
        at,
        moves: vec![mv(amount)],
        payload_hash: Some([9; 32]),
    };
    store
        .state_write(&[
            (ledger::bound_key(rid), Some(json_bytes(&"09").unwrap())),
            (
                format!("{}{rid}", index::BOUND_AT),
                Some(json_bytes(&at).unwrap()),
            ),
            (format!("seen/{rid}"), Some(json_bytes(&at).unwrap())),
        ])
        .unwrap();
    ledger::reserve(store, rid, &r, vec![]).unwrap();
}

fn amounts(h: Vec<policy::HistoryEntry>) -> Vec<(u128, u64)> {
    let mut v: Vec<(u128, u64)> = h.into_iter().map(|h| (h.amount, h.signed_at)).collect();
    v.sort();
    v
}

fn has(store: &Store, key: &str) -> bool {
    store.state_get::<serde_json::Value>(key).unwrap().is_some()
}

/// Pruning forgets ledger entries and requests below the horizon (`now` - 40 days here: twice
/// the policy's window) and nothing a window reaches: the windowed history is the same before
/// and after, heads stay, floors move, and `ledger::check` still passes.
#[test]
fn prune_forgets_only_what_no_window_reaches() {
    let (store, _dir) = crate::store::test_store("prune-window");
    install_policy(&store);
    let me = NodeIdentity::generate("n1");
    let peer = NodeIdentity::generate("peer");
    let roster = Roster::from_identities(&[me.public(), peer.public()]).unwrap();
    // The peer's entries: 1-4 long gone, 5 inside the retention but outside the window, 6
    // inside the window, 7 dated long ago but above 5 and 6 (kept: floors are contiguous).
    let times = [
        NOW - 90 * DAY,
        NOW - 60 * DAY,
        NOW - 50 * DAY,
        NOW - 41 * DAY,
        NOW - 39 * DAY,
        NOW - WINDOW + 10,
        NOW - 70 * DAY,
    ];
    for (i, at) in times.iter().enumerate() {
        let seq = i as u64 + 1;
        let e = entry(&peer, seq, &format!("p{seq}"), *at, 10 * seq as u128);
        ledger::receive(&store, &roster, "n1", &e, *at).unwrap();
    }
    // Own requests: one old (reserved and signed), one in the window.
    judged(&store, "old", NOW - 45 * DAY, 1000);
    let sig = proto::sig::VerifiedSignature {
        r: [1; 32],
        s: [2; 32],
        recovery_id: 0,
    };
    let own = OwnEntry {
        request_id: "old",
        key_id: "k",
        moves: vec![mv(1000)],
        payload_hash: Some([9; 32]),
        presig: None,
        audit: None,
    };
    let also = vec![(
        crate::guard::signed_key("old", 0),
        Some(json_bytes(&sig).unwrap()),
    )];
    ledger::record_own(&store, &me, own, NOW - 45 * DAY, also, &[]).unwrap();
    judged(&store, "new", NOW - DAY, 2000);
    ledger::check(&store, &roster, "n1").unwrap();

    let window = NOW - WINDOW - 1;
    let before = amounts(ledger::history_since(&store, ("none", None), window).unwrap());
    assert_eq!(before, vec![(60, NOW - WINDOW + 10), (2000, NOW - DAY)]);

    let report = prune_once(&store, DEFAULT_RETENTION_SECS, NOW).unwrap();
    assert_eq!(report.retention, 2 * WINDOW, "{report:?}");
    assert_eq!(report.ledger_entries, 5, "peer 1-4 and own 1: {report:?}");
    // p7's entry stays (above younger ones) but its request records, all older, go.
    assert_eq!(report.requests, 6, "old, p1-p4, p7: {report:?}");
    assert!(!report.more);

    let after = amounts(ledger::history_since(&store, ("none", None), window).unwrap());
    assert_eq!(after, before, "nothing inside the window is forgotten");
    // Inside the retention, outside the window: kept too.
    let all = amounts(ledger::history(&store, ("none", None)).unwrap());
    assert_eq!(
        all,
        vec![
            (50, NOW - 39 * DAY),
            (60, NOW - WINDOW + 10),
            (70, NOW - 70 * DAY),
            (2000, NOW - DAY)
        ]
    );
    assert_eq!(floor(&store, "peer").unwrap(), 4);
    assert_eq!(floor(&store, "n1").unwrap(), 1);
    let heads = ledger::heads(&store).unwrap();
    assert_eq!((heads["peer"], heads["n1"]), (7, 1), "heads stay");
    for seq in 1..=4 {
        assert!(!has(&store, &format!("ledger/peer/{seq:020}")));
    }
    for seq in 5..=7 {
        assert!(has(&store, &format!("ledger/peer/{seq:020}")));
    }
    // The old request is forgotten with everything keyed by it; the new one is whole.
    for k in [
        "hist/old",
        "seen/old",
        "bound_pay/old",
        "bound_at/old",
        "req_last/old",
    ] {
        assert!(!has(&store, k), "{k} forgotten");
    }
    assert!(store.state_keys("signed/old\0/").unwrap().is_empty());
    assert!(store.state_keys("ledger_req/old/").unwrap().is_empty());
    assert!(store.state_keys("ledger_pay/old\0/").unwrap().is_empty());
    assert!(!store.request_bound("old").unwrap());
    for k in ["hist/new", "seen/new", "bound_pay/new", "req_last/new"] {
        assert!(has(&store, k), "{k} kept");
    }
    assert!(store.request_bound("new").unwrap());
    ledger::check(&store, &roster, "n1").unwrap();

    // A forgotten entry received again is forgotten again, and a new one advances the head.
    let again = entry(&peer, 2, "p2", times[1], 20);
    ledger::receive(&store, &roster, "n1", &again, NOW).unwrap();
    let next = entry(&peer, 8, "p8", NOW, 80);
    ledger::receive(&store, &roster, "n1", &next, NOW).unwrap();
    assert_eq!(ledger::heads(&store).unwrap()["peer"], 8);
    prune_once(&store, DEFAULT_RETENTION_SECS, NOW).unwrap();
    assert!(!has(&store, &format!("ledger/peer/{:020}", 2)));
    ledger::check(&store, &roster, "n1").unwrap();

    // Forty days on, the window has moved: 5 and 6 go too, 7 and 8 follow when their turn comes.
    let later = NOW + 2 * WINDOW;
    let r = prune_once(&store, DEFAULT_RETENTION_SECS, later).unwrap();
    assert!(r.ledger_entries >= 3, "{r:?}");
    assert!(ledger::history(&store, ("none", None))
        .unwrap()
        .iter()
        .all(|h| h.signed_at >= later - 2 * WINDOW));
    ledger::check(&store, &roster, "n1").unwrap();
}

/// The configured retention is a floor: a short window does not shorten it below 8 days, nor
/// below what approvals and time-locks need; a stored policy that does not parse stops pruning.
#[test]
fn retention_is_the_longest_need() {
    let (store, _dir) = crate::store::test_store("prune-retention");
    assert_eq!(
        retention(&store, 0).unwrap(),
        Some(policy::MAX_APPROVAL_LIFETIME_SECS + DAY).map(|r| r.max(MIN_RETENTION_SECS))
    );
    assert_eq!(
        retention(&store, DEFAULT_RETENTION_SECS).unwrap(),
        Some(DEFAULT_RETENTION_SECS)
    );
    install_policy(&store);
    assert_eq!(retention(&store, 0).unwrap(), Some(2 * WINDOW));
    let broken = serde_json::json!({"bundle_json": "{"});
    store
        .state_write(&[("policy/pending".into(), Some(json_bytes(&broken).unwrap()))])
        .unwrap();
    assert_eq!(retention(&store, 0).unwrap(), None);
    let r = prune_once(&store, 0, NOW).unwrap();
    assert!(r.skipped.is_some() && r.keys == 0);
}

/// A decision reads only its window: with 100,000 entries older than the window, the windowed
/// history returns the in-window entries alone and costs a small fraction of the full one.
#[test]
fn history_reads_only_the_window() {
    let (store, _dir) = crate::store::test_store("prune-bench");
    let old: usize = 100_000;
    let mut items = Vec::with_capacity(old + 10);
    let unsigned = |seq: u64, at: u64| LedgerEntry {
        origin: "peer".into(),
        seq,
        request_id: format!("r{seq}"),
        key_id: "k".into(),
        signed_at: at,
        moves: vec![mv(1)],
        payload_hash: Some([0; 32]),
        presig: None,
        part: None,
        audit: None,
        signature: [0; 64],
    };
    for seq in 1..=old as u64 + 10 {
        let at = match seq > old as u64 {
            true => NOW - 10,
            false => NOW - 30 * DAY - seq,
        };
        let e = unsigned(seq, at);
        items.push((
            format!("ledger/peer/{seq:020}"),
            Some(json_bytes(&e).unwrap()),
        ));
    }
    store.state_write(&items).unwrap();
    let t0 = std::time::Instant::now();
    let windowed = ledger::history_since(&store, ("none", None), NOW - DAY).unwrap();
    let t_window = t0.elapsed();
    let t1 = std::time::Instant::now();
    let full = ledger::history(&store, ("none", None)).unwrap();
    let t_full = t1.elapsed();
    eprintln!("history over {old} old entries: windowed {t_window:?}, full {t_full:?}");
    assert_eq!(windowed.len(), 10);
    assert_eq!(full.len(), old + 10);
    assert!(
        t_window * 20 < t_full,
        "windowed {t_window:?} should be far below full {t_full:?}"
    );
}

/// The store keeps the time index in step with every write and delete of an entry, whatever
/// code path writes it, and with an arrival time written later.
#[test]
fn time_index_follows_writes() {
    let (store, _dir) = crate::store::test_store("prune-index");
    let peer = NodeIdentity::generate("peer");
    let e = entry(&peer, 1, "r", NOW, 1);
    let key = format!("ledger/peer/{:020}", 1);
    store
        .state_write(&[(key.clone(), Some(json_bytes(&e).unwrap()))])
        .unwrap();
    let idx = || store.state_keys(index::LEDGER_T).unwrap();
    assert_eq!(idx(), vec![format!("ledger_t/{NOW:020}/peer/{:020}", 1)]);
    assert_eq!(store.state_get::<u64>("req_last/r").unwrap(), Some(NOW));
    let at_key = format!("ledger_at/peer/{:020}", 1);
    store
        .state_write(&[(at_key, Some(json_bytes(&(NOW - 5)).unwrap()))])
        .unwrap();
    assert_eq!(
        idx(),
        vec![format!("ledger_t/{:020}/peer/{:020}", NOW - 5, 1)]
    );
    assert_eq!(
        store.state_get::<u64>("req_last/r").unwrap(),
        Some(NOW),
        "activity only moves forward"
    );
    assert_eq!(store.state_keys(index::REQ_T).unwrap().len(), 1);
    store.state_write(&[(key, None)]).unwrap();
    assert!(idx().is_empty());
}

/// A request that became active again after pruning collected its keys is kept: its reservation
/// (made in between) is never forgotten.
#[test]
fn request_active_again_is_kept() {
    let (store, _dir) = crate::store::test_store("prune-race");
    judged(&store, "r", NOW - 45 * DAY, 5);
    let keys = vec![format!("hist/r"), format!("seen/r"), format!("req_last/r")];
    // Collected at its old activity; then it is evaluated again now.
    let stale = NOW - 45 * DAY;
    store
        .state_write(&[(
            format!("{}r", index::BOUND_AT),
            Some(json_bytes(&NOW).unwrap()),
        )])
        .unwrap();
    assert_eq!(
        store.forget(&[("r".into(), stale, keys.clone())]).unwrap(),
        0
    );
    assert!(has(&store, "hist/r") && store.request_bound("r").unwrap());
    assert_eq!(store.forget(&[("r".into(), NOW, keys)]).unwrap(), 1);
    assert!(!has(&store, "hist/r") && !store.request_bound("r").unwrap());
}
