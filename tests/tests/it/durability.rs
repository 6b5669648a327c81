//! Nothing lost, nothing replayed (issue 16): orders reach a node that was offline, in order and
//! all of them; a restored node signs nothing until it has caught up and never reuses one of its
//! own ledger sequence numbers; a peer flooding a session cannot grow a node's memory.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use custody_tests::governance::{Governance, GATE_CHAIN, GUARDIAN, OFFICERS};
use ed25519_dalek::Signer;
use proto::{
    api::RequestStatus,
    authz::{NodeStatus, VerdictKind},
    wire::{CoordFrame, SessionFailure, SessionKind, SessionOutput, SessionStart, SyncMark},
};
use serde_json::json;

use crate::{
    common::{exclusive, ok, rid, scratch},
    governance::{freeze_body, key, post, transfer, unfreeze_body, wait_for},
    review::{freeze, identity_of, sign, status_where, wait_until, Lab, Outcome},
    rows::vm_kib,
};

const N1: &str = "node-1";
const N2: &str = "node-2";
const PAIR: [&str; 2] = [N1, N2];
const GATE_KEY: &str = "gate-key";
const FRZ_KEY: &str = "frz-key";

/// Node `id`'s status as the coordinator shows it.
fn node_status(s: &crate::common::Shared, id: &str) -> Option<NodeStatus> {
    let (st, v) = s.cluster.api.get("/v1/nodes").ok()?;
    (st == 200)
        .then(|| serde_json::from_value(v["nodes"][id]["status"].clone()).ok())
        .flatten()
}

/// The orders issued while a node was offline (40 vetoes, then a freeze: the freeze comes last)
/// all reach it when it reconnects, in order; the freeze holds on it.
#[test]
fn freeze_issued_while_a_node_was_offline_holds_after_40_vetoes() {
    let mut s = exclusive();
    let g = Governance::at(&s.cluster.layout.dir);
    let guardian = g.key(GUARDIAN).unwrap();
    s.cluster.kill_node(2).unwrap();
    for _ in 0..40 {
        // Over the gate's approval threshold: it waits for approvals, and is vetoed meanwhile.
        let id = post(&s, &transfer(GATE_KEY, GATE_CHAIN, 2000));
        let sig = guardian.sign(&proto::authz::veto_digest(&id));
        let (st, v) = s
            .cluster
            .api
            .post(
                &format!("/v1/sign-requests/{id}/cancel"),
                &json!({"guardian": hex::encode(guardian.verifying_key().as_bytes()),
                        "signature": hex::encode(sig.to_bytes())}),
            )
            .unwrap();
        assert_eq!((st, v["status"].as_str()), (200, Some("cancelled")), "{v}");
    }
    let epoch = key(&s, "frz-key")
        .freeze
        .values()
        .map(|f| f.epoch)
        .max()
        .unwrap_or(0);
    let (st, v) = s
        .cluster
        .api
        .post(
            "/v1/keys/frz-key/freeze",
            &freeze_body(&g, "frz-key", GUARDIAN, epoch),
        )
        .unwrap();
    assert_eq!(st, 200, "{v}");

    // Node-3 comes back: the coordinator replays every stored order to it.
    s.cluster.start_node_and_wait(2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = node_status(&s, "node-3");
        if let Some(st) = st.as_ref().filter(|st| {
            !st.syncing
                && st
                    .freezes
                    .get("frz-key")
                    .is_some_and(|f| f.frozen && f.epoch == epoch)
        }) {
            break st.clone();
        }
        assert!(
            Instant::now() < deadline,
            "node-3 never applied the freeze issued while it was offline: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!st.syncing, "{st:?}");

    // It judges by it: node-3 itself denies a transfer with the frozen key.
    let id = post(&s, &transfer("frz-key", GATE_CHAIN, 100));
    let v = wait_for(&s, &id, Duration::from_secs(30), |v| v.status.is_final());
    assert_eq!(v.status, RequestStatus::Denied, "{v:?}");
    let n3 = v.verdicts.get("node-3").expect("node-3 judged the request");
    assert_eq!(
        (n3.kind, n3.code.as_deref()),
        (VerdictKind::Deny, Some("policy.freeze")),
        "{n3:?}"
    );

    // Leave the key unfrozen for other tests (the officer quorum, epoch + 1 afterwards).
    let (st, v) = s
        .cluster
        .api
        .post(
            "/v1/keys/frz-key/unfreeze",
            &unfreeze_body(&g, "frz-key", epoch, &OFFICERS[1..]),
        )
        .unwrap();
    assert_eq!(st, 200, "{v}");
}

fn node_cli(exe: &std::path::Path, args: &[&str]) -> String {
    ok(&crate::common::node_cli(exe, args))
}

/// Kills the lab's `i`-th process (SIGKILL) and waits for it.
fn stop(lab: &mut Lab, i: usize) {
    let mut child = lab.kids.0.remove(i);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn head(st: &NodeStatus, origin: &str) -> u64 {
    st.ledger_heads.get(origin).copied().unwrap_or(0)
}

fn code(r: &Outcome) -> Option<&str> {
    r.as_ref().err().map(|f: &SessionFailure| f.code.as_str())
}

fn signed(out: &BTreeMap<String, Outcome>, what: &str) {
    for (n, r) in out {
        assert!(
            matches!(r, Ok(SessionOutput::Signature(_))),
            "{n} must sign {what}: {r:?}"
        );
    }
}

/// Back up, sign and freeze, restore, withhold the replay: the restored node, which no longer
/// knows the freeze, signs nothing. Given the replay it catches up its own ledger, and its next
/// entry follows the one it had forgotten.
#[test]
fn restored_node_signs_nothing_until_caught_up_and_never_reuses_a_ledger_sequence() {
    let mut s = exclusive();
    let exe = s.cluster.layout.exe.clone();
    let lab_dir = s.cluster.layout.dir.clone();
    let (mut lab, dirs) = Lab::new(&mut s, "dur-restore", &[0, 1], "");
    drop(s);
    let bdir = scratch("dur-restore-backup");
    std::fs::create_dir_all(&bdir).unwrap();
    let p = |f: &str| bdir.join(f).to_str().unwrap().to_string();
    let n = |f: &str| dirs[0].join(f).to_str().unwrap().to_string();
    let recipient = node_cli(&exe, &["recovery-keygen", "--out", &p("recovery.key")]);
    node_cli(
        &exe,
        &[
            "backup",
            "--config",
            &n("node.toml"),
            "--passphrase-file",
            &n("passphrase"),
            "--recipient",
            &recipient,
            "--out",
            &p("node-1.backup"),
        ],
    );
    for (d, node) in dirs.iter().zip(PAIR) {
        lab.start(d, node);
    }
    let before = head(&status_where(&lab.rogue, N1, "a status", |_| true), N1);

    // After the backup the pair signs A: node-1 records its entry `before + 1`.
    let a = rid("dur-a");
    let (_, out) = sign(
        &lab.rogue,
        (&PAIR, &PAIR),
        (GATE_KEY, &a),
        &crate::review::transfer(GATE_CHAIN, 100),
        &[],
        None,
    );
    signed(&out, "A");
    let known = status_where(&lab.rogue, N1, "A recorded", |st| head(st, N1) > before);
    let n1_head = head(&known, N1);
    let entry_a = lab
        .rogue
        .ledger_entries()
        .into_iter()
        .find(|e| e.origin == N1 && e.request_id == a)
        .expect("node-1's entry for A");
    assert_eq!(entry_a.seq, n1_head);
    // And a guardian freezes `frz-key` on it.
    let gov = Governance::at(&lab_dir);
    let epoch = known.freezes.get(FRZ_KEY).map_or(0, |f| f.epoch);
    assert!(lab.rogue.send(N1, freeze(&gov, FRZ_KEY, epoch)));
    status_where(&lab.rogue, N1, "the freeze applied", |st| {
        st.freezes.get(FRZ_KEY).is_some_and(|f| f.frozen)
    });

    // Node-1 is lost and restored from the backup; the coordinator withholds its replay.
    stop(&mut lab, 0);
    for f in [
        signer_node::store::DB_FILE,
        signer_node::init::IDENTITY_FILE,
    ] {
        std::fs::remove_file(dirs[0].join(f)).unwrap();
    }
    node_cli(
        &exe,
        &[
            "restore",
            "--backup",
            &p("node-1.backup"),
            "--identity",
            &p("recovery.key"),
            "--data-dir",
            &n(""),
            "--passphrase-file",
            &n("passphrase"),
        ],
    );
    lab.rogue.set_mark_for(N1, None);
    lab.start(&dirs[0], N1);
    // (The rogue keeps the latest status per node: wait for the restored node's own.)
    let st = status_where(&lab.rogue, N1, "the restored node, syncing", |st| {
        st.syncing
    });
    assert!(head(&st, N1) < n1_head, "the backup predates A: {st:?}");
    assert!(
        !st.freezes.get(FRZ_KEY).is_some_and(|f| f.frozen),
        "the backup predates the freeze: {st:?}"
    );

    let b = rid("dur-b");
    let (_, out) = sign(
        &lab.rogue,
        (&PAIR, &PAIR),
        (FRZ_KEY, &b),
        &crate::review::transfer(GATE_CHAIN, 100),
        &[],
        None,
    );
    assert_eq!(code(&out[N1]), Some("node.syncing"), "{out:?}");
    assert!(out[N2].is_err(), "node-2 alone cannot sign: {out:?}");

    // The replay comes (an honest mark; the entries from what the coordinator relayed): node-1
    // catches up its own ledger first, then signs, continuing after A's entry.
    // (node-1's restored copy was started last)
    let last = lab.kids.0.len() - 1;
    stop(&mut lab, last);
    let mut heads = BTreeMap::new();
    heads.insert(N1.to_string(), n1_head);
    lab.rogue.set_mark_for(
        N1,
        Some(SyncMark {
            ledger_heads: heads,
            orders: 0,
        }),
    );
    lab.start(&dirs[0], N1);
    let st = status_where(&lab.rogue, N1, "caught up", |st| {
        !st.syncing && head(st, N1) >= n1_head
    });
    assert_eq!(head(&st, N1), n1_head, "{st:?}");
    let c = rid("dur-c");
    let (_, out) = sign(
        &lab.rogue,
        (&PAIR, &PAIR),
        (GATE_KEY, &c),
        &crate::review::transfer(GATE_CHAIN, 100),
        &[],
        None,
    );
    signed(&out, "C");
    wait_until("node-1's entry for C", Duration::from_secs(20), || {
        lab.rogue
            .ledger_entries()
            .iter()
            .any(|e| e.origin == N1 && e.request_id == c)
    });
    let mine: Vec<_> = lab
        .rogue
        .ledger_entries()
        .into_iter()
        .filter(|e| e.origin == N1)
        .collect();
    for e in &mine {
        assert!(
            mine.iter().all(|o| o.seq != e.seq || o == e),
            "node-1 signed two entries with sequence {}: {mine:?}",
            e.seq
        );
    }
    let entry_c = mine.iter().find(|e| e.request_id == c).unwrap();
    assert_eq!(entry_c.seq, n1_head + 1, "{mine:?}");
}

/// Upper bound on how much a node's peak memory may grow while one peer floods one session with
/// 50,000 envelopes of 4 KiB before its join (200 MB if they were all kept). The bound per
/// session is (SESSION_QUEUE + MAX_EARLY) messages (docs/durability.md): about 1.3 MB here.
const FLOOD_BOUND_KIB: u64 = 48 * 1024;

#[test]
fn fifty_thousand_envelopes_before_a_join_keep_memory_bounded() {
    let mut s = exclusive();
    let roster =
        signer_node::identity::Roster::load(&s.cluster.layout.dir.join("roster.json")).unwrap();
    let (mut lab, dirs) = Lab::new(&mut s, "dur-flood", &[0, 1], "");
    drop(s);
    // The test speaks as node-2 (its copy never runs), with node-2's real identity.
    let n2 = Arc::new(identity_of(&dirs[1], N2));
    lab.start(&dirs[0], N1);
    let pid = lab.kids.0[0].id();

    let sid: proto::wire::SessionId = rand::random();
    let parties: Vec<String> = PAIR.iter().map(|p| p.to_string()).collect();
    lab.rogue.route(sid, parties.clone());
    let start = SessionStart {
        epoch: 0,
        session_id: sid,
        key_id: GATE_KEY.into(),
        parties: parties.clone(),
        kind: SessionKind::Sign {
            request_id: rid("dur-flood"),
            payload: crate::review::transfer(GATE_CHAIN, 100),
            part: 0,
            approvals: vec![],
            presignature: None,
            account: None,
        },
    };
    let crypto = signer_node::envelope::SessionCrypto::new(
        sid,
        1,
        n2,
        signer_node::plan::peer_keys(&roster, &parties).unwrap(),
    );
    let rss = || vm_kib(pid, "VmRSS").expect("node-1's VmRSS is readable");
    let before = rss();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset node-1's VmHWM");
    assert!(lab.rogue.send(N1, CoordFrame::Start(start)));
    let body = vec![0x5a; 4096];
    let t0 = Instant::now();
    for seq in 1..=50_000u32 {
        let env = crypto.seal(Some(0), seq, &body).expect("sealed");
        assert!(
            lab.rogue.send(N1, CoordFrame::Envelope(env)),
            "node-1 linked"
        );
    }
    let sent = t0.elapsed();
    // The session ends at its join deadline (node-2 never joins): node-1 stays responsive.
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (node, rsid, r) = lab
            .rogue
            .next_report(left)
            .expect("node-1 reports the session");
        if rsid == sid && node == N1 {
            break r;
        }
    };
    let peak = vm_kib(pid, "VmHWM").expect("node-1's VmHWM is readable");
    eprintln!(
        "flood: 50,000 envelopes sent in {sent:?}; node-1 RSS {before} KiB before, peak {peak} KiB; report {report:?}"
    );
    assert_eq!(code(&report), Some("session.timeout"), "{report:?}");
    assert!(
        peak.saturating_sub(before) < FLOOD_BOUND_KIB,
        "node-1's peak RSS grew from {before} KiB to {peak} KiB"
    );
}
