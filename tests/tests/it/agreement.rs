//! Agreement before signing: a coordinator that shows node A one transaction and node B another
//! gets `session.intent_mismatch` from both, and no signature exists. The coordinator here is a
//! rogue one written in the test, speaking the real protocol to real node processes.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::Duration,
};

use custody_tests::{cluster::EXIT_WITH_PARENT, rogue::Rogue, sample};
use proto::wire::{CoordFrame, Envelope};

use crate::common::{copy_node, exclusive, scratch, Shared, KEY};

pub(crate) struct Kill(pub(crate) Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the node in `dst` (a copy), appending its stderr to `node.log` there.
pub(crate) fn spawn_copy(exe: &std::path::Path, dst: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dst.join("node.log"))
        .unwrap();
    std::process::Command::new(exe)
        .args(["signer-node", "run", "--config"])
        .arg(dst.join("node.toml"))
        .arg("--passphrase-file")
        .arg(dst.join("passphrase"))
        .env(EXIT_WITH_PARENT, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// SIGKILLs the rogue pair's nodes and starts them again on their stores.
pub(crate) fn restart_pair(s: &Shared, rogue: &Rogue, children: &mut Kill, dirs: &[PathBuf]) {
    for c in &mut children.0 {
        let _ = c.kill();
        let _ = c.wait();
    }
    std::thread::sleep(Duration::from_millis(500));
    children.0 = dirs
        .iter()
        .map(|d| spawn_copy(&s.cluster.layout.exe, d))
        .collect();
    rogue
        .wait_nodes(&["node-1", "node-2"], Duration::from_secs(30))
        .unwrap();
}

/// Moves copies of node-1 and node-2 to a rogue coordinator (stderr logged to `node.log` in each
/// copy, with short protocol deadlines) and returns the rogue, the children and the copies' dirs.
pub(crate) fn rogue_pair(s: &mut Shared) -> (Rogue, Kill, Vec<PathBuf>) {
    let rogue = Rogue::start(&s.cluster.layout.dir.join("pki")).unwrap();
    let mut children = Kill(vec![]);
    let mut dirs = Vec::new();
    for (i, id) in ["node-1", "node-2"].into_iter().enumerate() {
        let dst = scratch(&format!("rogue-{id}"));
        copy_node(s, i, &dst);
        crate::common::point_at_rogue(&dst, rogue.port);
        children.0.push(spawn_copy(&s.cluster.layout.exe, &dst));
        dirs.push(dst);
    }
    rogue
        .wait_nodes(&["node-1", "node-2"], Duration::from_secs(30))
        .unwrap();
    (rogue, children, dirs)
}

/// Two transfers to different destinations, then two `settle` calls to the policy's vault
/// that differ only in their calldata (the amount): each node decodes its own and both refuse.
#[test]
fn equivocating_coordinator_gets_intent_mismatch_and_no_signature() {
    let mut s = exclusive();
    let (rogue, _children, _) = rogue_pair(&mut s);
    let vault: [u8; 20] = [0x44; 20];
    let cases = [
        (
            "equivocation",
            sample::eth_transfer(1, [0x11; 20], 5),
            sample::eth_transfer(1, [0x66; 20], 5),
        ),
        (
            "equivocation-calldata",
            sample::eth_tx(2, vault, 0, crate::contracts::settle_data([0x42; 20], 5)),
            sample::eth_tx(2, vault, 0, crate::contracts::settle_data([0x42; 20], 400)),
        ),
    ];
    for (rid, one, other) in cases {
        let sid: [u8; 32] = rand::random();
        let parties = vec!["node-1".to_string(), "node-2".to_string()];
        rogue.route(sid, parties.clone());
        for (node, tx) in [("node-1", one), ("node-2", other)] {
            let tx = hex::decode(tx.trim_start_matches("0x")).unwrap();
            let start = crate::common::sign_start(KEY, 0, &parties, sid, rid, tx);
            assert!(rogue.send(node, CoordFrame::Start(start)));
        }
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let (node, rsid, result) = rogue
                .next_report(Duration::from_secs(60))
                .expect("a report from each node");
            assert_eq!(rsid, sid);
            let failure = result.expect_err("no node may produce a signature");
            assert_eq!(
                failure.code, "session.intent_mismatch",
                "{rid}: {failure:?}"
            );
            assert!(
                failure.message.contains("node-1") && failure.message.contains("node-2"),
                "{}",
                failure.message
            );
            seen.push(node);
        }
        seen.sort();
        assert_eq!(seen, ["node-1", "node-2"], "{rid}");
    }
}

/// Starts session `sid` signing part 0 of request `rid` (a transfer with `nonce`) on both
/// rogue nodes.
pub(crate) fn start_sign(rogue: &Rogue, sid: [u8; 32], rid: &str, nonce: u64) {
    let parties = vec!["node-1".to_string(), "node-2".to_string()];
    rogue.route(sid, parties.clone());
    let tx =
        hex::decode(sample::eth_transfer(nonce, [0x11; 20], 5).trim_start_matches("0x")).unwrap();
    let start = crate::common::sign_start(KEY, 0, &parties, sid, rid, tx);
    for node in &parties {
        assert!(rogue.send(node, CoordFrame::Start(start.clone())));
    }
}

/// Starts a signing session of request `rid` on both rogue nodes; returns both reports.
pub(crate) fn run_sign(rogue: &Rogue, rid: &str, nonce: u64) -> Vec<Result<(), String>> {
    run_sign_full(rogue, rid, nonce)
        .into_iter()
        .map(|(_, r)| r.map(|_| ()).map_err(|f| f.code))
        .collect()
}

/// Like [`run_sign`], with each node's whole report.
pub(crate) fn run_sign_full(
    rogue: &Rogue,
    rid: &str,
    nonce: u64,
) -> Vec<(
    String,
    Result<proto::wire::SessionOutput, proto::wire::SessionFailure>,
)> {
    let sid: [u8; 32] = rand::random();
    // Nodes report their status on connecting: the baseline must be a reported one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ["node-1", "node-2"]
        .iter()
        .any(|n| rogue.status(n).is_none())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a rogue node never reported its status"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let heads_before = peer_heads(rogue);
    start_sign(rogue, sid, rid, nonce);
    let reports: Vec<_> = (0..2)
        .map(|_| {
            let (node, rsid, result) = rogue
                .next_report(Duration::from_secs(40))
                .expect("a report from each node");
            assert_eq!(rsid, sid);
            (node, result)
        })
        .collect();
    if reports.iter().all(|(_, r)| r.is_ok()) {
        // Each node sent a ledger entry for the signature; the next session is refused with
        // `ledger.behind` until the peer stored it. Await that (each node reports its status
        // after storing a relayed entry), bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let now = peer_heads(rogue);
            if now.iter().zip(&heads_before).all(|(a, b)| a > b) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the peers' ledger entries were not stored: heads {heads_before:?} -> {now:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    reports
}

/// Node-1's head of node-2's ledger and node-2's head of node-1's, as they last reported.
fn peer_heads(rogue: &Rogue) -> [Option<u64>; 2] {
    let head = |of: &str, peer: &str| {
        rogue
            .status(of)
            .and_then(|st| st.ledger_heads.get(peer).copied())
    };
    [head("node-1", "node-2"), head("node-2", "node-1")]
}

fn rejections(dir: &std::path::Path, reason: &str) -> usize {
    std::fs::read_to_string(dir.join("node.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("rejected envelope") && l.contains(reason))
        .count()
}

/// Rows 1, 3 and 6 of the security matrix: a relay that tampers with a round message, forges a
/// message from node-1, or replays node-1's messages from an earlier session. Each time node-2
/// rejects the envelope before the MPC library parses it (logging that the relay, not node-1, is
/// suspect), the session fails on both nodes, and no signature exists.
#[test]
fn rows_1_3_6_25_tampered_forged_replayed_and_oversized_envelopes_are_rejected_before_mpc() {
    let mut s = exclusive();
    let (rogue, _children, dirs) = rogue_pair(&mut s);
    let honest = run_sign(&rogue, &crate::common::rid("relay-a"), 21);
    assert!(
        honest.iter().all(Result::is_ok),
        "control session: {honest:?}"
    );
    let earlier = rogue.captured();

    let signature = "invalid signature";
    let cases: [(&str, &str, custody_tests::rogue::Tamper); 4] = [
        (
            "row 1: tampered",
            signature,
            Box::new(|from: &str, mut e: Envelope| {
                if from == "node-1" && e.seq >= 1 {
                    e.payload[0] ^= 0x01;
                }
                vec![e]
            }),
        ),
        (
            "row 3: forged sender",
            signature,
            Box::new(|from: &str, mut e: Envelope| {
                if from == "node-1" && e.seq >= 1 {
                    e.signature = vec![0x5a; 64];
                }
                vec![e]
            }),
        ),
        (
            "row 25: a 200 KiB signing message (huge big-integer fields)",
            "over this session's limit",
            Box::new(|from: &str, mut e: Envelope| {
                if from == "node-1" && e.seq >= 1 {
                    e.payload.resize(200 * 1024, 0xff);
                }
                vec![e]
            }),
        ),
        (
            "row 6: cross-session replay",
            signature,
            Box::new(move |from: &str, e: Envelope| {
                if from != "node-1" || e.seq == 0 {
                    return vec![e];
                }
                earlier
                    .iter()
                    .filter(|old| old.from == e.from && old.seq == e.seq && old.to == e.to)
                    .map(|old| Envelope {
                        session_id: e.session_id,
                        ..old.clone()
                    })
                    .collect()
            }),
        ),
    ];
    for (k, (name, reason, tamper)) in cases.into_iter().enumerate() {
        let before = rejections(&dirs[1], reason);
        rogue.tamper(tamper);
        let reports = run_sign(&rogue, &crate::common::rid("relay"), 30 + k as u64);
        assert!(reports.iter().all(Result::is_err), "{name}: {reports:?}");
        let log = std::fs::read_to_string(dirs[1].join("node.log")).unwrap_or_default();
        assert!(
            rejections(&dirs[1], reason) > before,
            "{name}: node-2 logged no rejection:\n{log}"
        );
    }
}
