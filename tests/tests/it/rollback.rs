//! Finding 3 of issue 16: a rolled-back store must not reuse a presignature. Copies of node-1 and
//! node-2 at a rogue coordinator (`custody_tests::rogue`, the real node protocol) make a
//! presignature; node-1's whole data directory is snapshotted; the pair signs a request from the
//! presignature; then the snapshot is put back (a VM snapshot revert). The rogue replays the
//! ledger entries it holds, as an honest coordinator does on every connection, and then — now
//! colluding with node-2, whose identity key it holds — asks node-1 to sign another request with
//! the same presignature, forging node-2's join. Node-1's store has forgotten the consumption; the
//! ledger has not.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use custody_tests::{rogue::Rogue, sample};
use proto::{
    authz::{LedgerEntry, NodeStatus, Order, Veto},
    payload::SignPayload,
    presig::PresigId,
    wire::{CoordFrame, Envelope, SessionKind, SessionOutput, SessionStart, SyncMark},
};
use signer_node::identity::{NodeIdentity, IDENTITY_RECORD};

use crate::{
    agreement::{spawn_copy, Kill},
    common::{exclusive, rid, scratch, KEY},
    presign::{results, start_for},
};

const N1: &str = "node-1";
const N2: &str = "node-2";

/// Copies node-1 and node-2 into scratch directories pointed at `rogue` (short join deadline,
/// generous protocol deadlines: other tests load the two cores meanwhile).
fn copies(s: &mut crate::common::Shared, rogue: &Rogue) -> Vec<PathBuf> {
    [N1, N2]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let dst = scratch(&format!("rollback-{id}"));
            crate::review::copy_to_rogue(s, i, &dst, (rogue.port, ""))
        })
        .collect()
}

/// Copies every file of `from` into `to` (a snapshot of a stopped node: store, audit log, keys).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
}

/// Loads a node's identity from its (stopped) store, as the node does at start.
fn identity_of(dir: &Path, node_id: &str) -> NodeIdentity {
    let pass = std::fs::read_to_string(dir.join("passphrase")).unwrap();
    let pass = signer_node::secret::Passphrase::new(pass);
    let store = signer_node::store::Store::open(dir, &pass).unwrap();
    let secret = store.get_secret(IDENTITY_RECORD).unwrap().unwrap();
    NodeIdentity::from_secret_bytes(node_id, secret.expose_secret()).unwrap()
}

/// A fresh transfer (a random nonce: no node has it reserved under another request id).
fn transfer() -> SignPayload {
    let nonce = 1_000_000 + u64::from(rand::random::<u32>());
    let tx = sample::eth_transfer(nonce, [0x5a; 20], 3);
    SignPayload::EthTx(hex::decode(tx.trim_start_matches("0x")).unwrap())
}

fn sign_kind(request: &str, payload: &SignPayload, presig: PresigId) -> SessionKind {
    SessionKind::Sign {
        request_id: request.into(),
        payload: payload.clone(),
        part: 0,
        approvals: vec![],
        presignature: Some(presig),
        account: None,
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until node-1 reports a status satisfying `ok`. A session's failure sends no status:
/// node-1 is sent an invalid veto every second, which it answers with its status.
fn node1_status(rogue: &Rogue, what: &str, ok: impl Fn(&NodeStatus) -> bool) {
    let mut next_poke = Instant::now();
    wait_until(what, || {
        if Instant::now() >= next_poke {
            let veto = Veto {
                request_id: "rollback-status-poke".into(),
                guardian: [0; 32],
                signature: [0; 64],
            };
            let _ = rogue.send(N1, CoordFrame::Order(Order::Veto(veto)));
            next_poke += Duration::from_secs(1);
        }
        rogue.status(N1).is_some_and(|st| ok(&st))
    });
}

/// SIGKILLs node-1's copy (redb survives it) and forgets its last status.
fn stop_node1(rogue: &Rogue, kids: &mut Kill) {
    let _ = kids.0[0].kill();
    let _ = kids.0[0].wait();
    rogue.forget_status(N1);
    // Let the rogue drop the dead link before the node dials again.
    std::thread::sleep(Duration::from_millis(500));
}

/// Starts `kind` for node-1 and node-2 but sends the start to node-1 alone; node-2's join is
/// forged with its identity key (the colluding co-signer) as soon as node-1's join shows what
/// node-1 agreed to. Returns node-1's report and whether node-1 sent any envelope.
fn ask_node1_alone(
    rogue: &Rogue,
    node2: &NodeIdentity,
    kind: SessionKind,
) -> (Result<SessionOutput, String>, bool) {
    let sid: [u8; 32] = rand::random();
    rogue.route(sid, vec![N1.into(), N2.into()]);
    let start = SessionStart {
        epoch: 0,
        session_id: sid,
        key_id: KEY.into(),
        parties: vec![N1.into(), N2.into()],
        kind,
    };
    assert!(rogue.send(N1, CoordFrame::Start(start)));
    let mut forged = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no report from node-1");
        if let Some((node, rsid, r)) = rogue.next_report(Duration::from_millis(100)) {
            if rsid == sid {
                assert_eq!(node, N1);
                let sent = rogue.captured().iter().any(|e| e.session_id == sid);
                return (r.map_err(|f| f.code), sent);
            }
        }
        let join = rogue
            .captured()
            .into_iter()
            .find(|e| e.session_id == sid && e.from == 0 && e.seq == 0 && e.to.is_none());
        if let (false, Some(join)) = (forged, join) {
            let mut env = Envelope {
                from: 1,
                signature: vec![],
                ..join
            };
            env.signature = node2.sign(&env.signed_bytes()).to_vec();
            assert!(rogue.send(N1, CoordFrame::Envelope(env)));
            forged = true;
        }
    }
}

/// "A node's store copied, a presigned partial issued, the old copy put back: the same
/// presignature for another request is refused." Node-1, rolled back to before it consumed
/// presignature P for request A, receives the ledger entries (its own included) that name P,
/// as every honest coordinator replays them; asked to sign request B with P, with node-2's join
/// forged, it refuses `presig.used` before sending anything (no join, no partial) and reports
/// the coordinator `presig.reuse`. Asked again for A itself, it gives the partial it gave
/// before, bit for bit (the same message: nothing leaks). The old code, whose only record of
/// the consumption was the `presig_used/` marker in the rolled-back store, issued a second
/// partial for B from P — with node-2's partial for A, that reveals node-1's nonce share.
#[test]
fn a_rolled_back_store_never_signs_twice_with_one_presignature() {
    let started = Instant::now();
    let mut s = exclusive();
    let setup = started.elapsed();
    let rogue = Rogue::start(&s.cluster.layout.dir.join("pki")).unwrap();
    let dirs = copies(&mut s, &rogue);
    let exe = s.cluster.layout.exe.clone();
    drop(s);
    let node2 = identity_of(&dirs[1], N2);
    let mut kids = Kill(dirs.iter().map(|d| spawn_copy(&exe, d)).collect());
    rogue
        .wait_nodes(&[N1, N2], Duration::from_secs(30))
        .unwrap();

    let presig = start_for(&rogue, KEY, SessionKind::Presign);
    for r in results(&rogue, presig) {
        assert!(matches!(r, Ok(SessionOutput::Presignature(_))), "{r:?}");
    }
    // The snapshot: node-1 stopped (SIGKILL, which redb survives), its directory copied.
    let snapshot = scratch("rollback-snapshot");
    stop_node1(&rogue, &mut kids);
    copy_dir(&dirs[0], &snapshot);
    kids.0[0] = spawn_copy(&exe, &dirs[0]);
    wait_until("node-1 back", || rogue.status(N1).is_some());

    // The pair signs A from P; each records a ledger entry naming P.
    let (a, a_payload) = (rid("rollback-a"), transfer());
    let sid = start_for(&rogue, KEY, sign_kind(&a, &a_payload, presig));
    // In party order: node-1's partial first.
    let first: Vec<[u8; 32]> = results(&rogue, sid)
        .into_iter()
        .map(|r| match r {
            Ok(SessionOutput::Partial { sigma }) => sigma,
            other => panic!("expected a partial: {other:?}"),
        })
        .collect();
    let mut entries: Vec<LedgerEntry> = Vec::new();
    wait_until("both ledger entries for A", || {
        entries = rogue
            .ledger_entries()
            .into_iter()
            .filter(|e| e.request_id == a)
            .collect();
        entries.len() == 2
    });
    for e in &entries {
        assert_eq!((e.presig, e.part), (Some(presig), Some(0)), "{e:?}");
    }

    // The snapshot put back. The rogue replays what it holds and marks the end of the replay
    // with its heads, as an honest coordinator does.
    stop_node1(&rogue, &mut kids);
    copy_dir(&snapshot, &dirs[0]);
    let mut heads = BTreeMap::new();
    for e in rogue.ledger_entries() {
        let h = heads.entry(e.origin.clone()).or_insert(0);
        *h = e.seq.max(*h);
    }
    rogue.set_mark_for(
        N1,
        Some(SyncMark {
            ledger_heads: heads.clone(),
            orders: 0,
        }),
    );
    kids.0[0] = spawn_copy(&exe, &dirs[0]);
    wait_until("node-1 back from the snapshot", || {
        rogue.status(N1).is_some()
    });
    for e in rogue.ledger_entries() {
        assert!(rogue.send(N1, CoordFrame::Ledger(e)));
    }
    node1_status(&rogue, "node-1 to hold the replayed entries", |st| {
        heads
            .iter()
            .all(|(o, h)| st.ledger_heads.get(o).is_some_and(|x| x >= h))
    });

    let b = rid("rollback-b");
    let (out, sent) = ask_node1_alone(&rogue, &node2, sign_kind(&b, &transfer(), presig));
    assert_eq!(out, Err("presig.used".to_string()), "B from a spent P");
    assert!(!sent, "no envelope (join or partial) left node-1 for B");
    node1_status(&rogue, "node-1 to report the coordinator", |st| {
        st.suspects
            .get("coordinator")
            .is_some_and(|r| r.starts_with("presig.reuse"))
    });

    // A itself: the same partial as before (same presignature, same message).
    let (out, _) = ask_node1_alone(&rogue, &node2, sign_kind(&a, &a_payload, presig));
    assert_eq!(out, Ok(SessionOutput::Partial { sigma: first[0] }));
    drop(kids);
    eprintln!(
        "rollback: {:?} waiting for the cluster, {:?} in the test",
        setup,
        started.elapsed() - setup
    );
}
