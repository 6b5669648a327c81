//! Row 2 of the security matrix for signing sessions: the parties of a signing get different
//! round-1 broadcasts. Three parties are needed for a broadcast to have two recipients, so the
//! test signs with a 3-of-3 key of the shared cluster, on copies of its three nodes behind a
//! rogue relay.

use std::{
    collections::HashMap,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use custody_tests::{cluster::EXIT_WITH_PARENT, rogue::Rogue, sample};
use proto::wire::{CoordFrame, Envelope, SessionFailure};

use crate::{
    agreement::{spawn_copy, Kill},
    common::{copy_node, exclusive, rid, scratch, sign_start},
};

const KEY3: &str = "bcast-key";

/// The first version of each broadcast the relay saw, by session and sequence number.
type FirstSeen = HashMap<([u8; 32], u32), Vec<u8>>;
const PARTIES: [&str; 3] = ["node-1", "node-2", "node-3"];

/// One signing session of the 3-of-3 key on the rogue relay: every node's report.
fn sign3(rogue: &Rogue, nonce: u64) -> HashMap<String, Result<(), SessionFailure>> {
    let sid: [u8; 32] = rand::random();
    let parties: Vec<String> = PARTIES.iter().map(|p| p.to_string()).collect();
    rogue.route(sid, parties.clone());
    let tx =
        hex::decode(sample::eth_transfer(nonce, [0x11; 20], 5).trim_start_matches("0x")).unwrap();
    let start = sign_start(KEY3, 0, &parties, sid, &rid("row2"), tx);
    for p in &parties {
        assert!(rogue.send(p, CoordFrame::Start(start.clone())));
    }
    (0..parties.len())
        .map(|_| {
            let (node, rsid, result) = rogue
                .next_report(Duration::from_secs(120))
                .expect("a report from each node");
            assert_eq!(rsid, sid);
            (node, result.map(|_| ()))
        })
        .collect()
}

/// Row 2, for signing. The relay shows node-2 node-1's round-1 broadcast and node-3 another
/// version of it:
///
/// - made by the relay itself (node-1's signed broadcast with one byte changed): node-3 rejects
///   the envelope before the MPC library sees it and, when its round deadline passes with
///   nothing valid from node-1, fails with `session.relay_tampered`, blaming no party (node-1
///   signed only what node-2 got);
/// - signed by node-1 (a compromised guardian that signs two versions, `rogue-node
///   --equivocate`), so that both pass the envelope checks: cggmp24's echo round finds that the
///   parties hold different round-1 broadcasts, and node-2 and node-3 fail with
///   `session.broadcast_mismatch`, naming nobody (the parties whose echo differs are honest).
///
/// Either way no party produces a signature.
#[test]
fn row_2_different_round_1_broadcasts_are_refused_with_a_typed_error_and_no_signature() {
    let mut s = exclusive();
    s.cluster
        .ensure_key(KEY3, 3, Duration::from_secs(180))
        .unwrap();
    let rogue = Rogue::start(&s.cluster.layout.dir.join("pki")).unwrap();
    let mut children = Kill(vec![]);
    let mut dirs = Vec::new();
    for (i, id) in PARTIES.into_iter().enumerate() {
        let dst = scratch(&format!("row2-{id}"));
        copy_node(&mut s, i, &dst);
        crate::common::point_at_rogue(&dst, rogue.port);
        children.0.push(spawn_copy(&s.cluster.layout.exe, &dst));
        dirs.push(dst);
    }
    drop(s);
    rogue.wait_nodes(&PARTIES, Duration::from_secs(30)).unwrap();

    // Node-1's round-1 broadcast (its first message after the join): the first version seen
    // goes to node-2 only, any other version to node-3 only.
    let first: Arc<Mutex<FirstSeen>> = Arc::default();
    rogue.deliver(Some(Box::new(move |sender, target, e: &Envelope| {
        if sender != "node-1" || e.to.is_some() || e.seq != 1 {
            return true;
        }
        let mut seen = first.lock().unwrap();
        let original = seen
            .entry((e.session_id, e.seq))
            .or_insert_with(|| e.payload.clone());
        (target == "node-2") == (*original == e.payload)
    })));

    // The relay makes the second version.
    rogue.tamper(Box::new(|from: &str, e: Envelope| {
        if from != "node-1" || e.to.is_some() || e.seq != 1 {
            return vec![e];
        }
        let mut other = e.clone();
        other.payload[0] ^= 0x01;
        vec![e, other]
    }));
    let reports = sign3(&rogue, 61);
    assert!(reports.values().all(Result::is_err), "{reports:?}");
    let node3 = reports["node-3"].as_ref().unwrap_err();
    assert_eq!(
        (node3.code.as_str(), node3.blame.as_slice()),
        ("session.relay_tampered", &[] as &[String]),
        "node-3 blames the relay, not node-1: {node3:?}"
    );
    assert!(node3.message.contains("node-1"), "{node3:?}");
    let log = std::fs::read_to_string(dirs[2].join("node.log")).unwrap_or_default();
    assert!(
        log.contains("rejected envelope (the relay, not the claimed sender, is suspect)"),
        "node-3 rejected the relay's version before the MPC library:\n{log}"
    );

    // Node-1 signs the second version itself; the relay passes envelopes on unchanged.
    rogue.tamper(Box::new(|_: &str, e: Envelope| vec![e]));
    let _ = children.0[0].kill();
    let _ = children.0[0].wait();
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dirs[0].join("node.log"))
        .unwrap();
    children.0[0] = Command::new(env!("CARGO_BIN_EXE_rogue-node"))
        .arg("--config")
        .arg(dirs[0].join("node.toml"))
        .arg("--passphrase-file")
        .arg(dirs[0].join("passphrase"))
        .arg("--equivocate")
        .env(EXIT_WITH_PARENT, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    rogue
        .wait_nodes(&["node-1"], Duration::from_secs(30))
        .unwrap();
    let reports = sign3(&rogue, 62);
    assert!(reports.values().all(Result::is_err), "{reports:?}");
    for honest in ["node-2", "node-3"] {
        let f = reports[honest].as_ref().unwrap_err();
        assert_eq!(
            (f.code.as_str(), f.blame.as_slice()),
            ("session.broadcast_mismatch", &[] as &[String]),
            "{honest}: {f:?}"
        );
    }
    let log = std::fs::read_to_string(dirs[0].join("node.log")).unwrap_or_default();
    assert!(
        log.contains("rogue-node: signed a second round-1 broadcast"),
        "node-1 equivocated:\n{log}"
    );
}
