//! Rows 4 and 5 of the security matrix against real node processes behind a rogue relay: a
//! party whose round messages are dropped is named when the round deadline passes, and a relay
//! that shuffles and duplicates every message cannot make a node process anything twice.

use std::time::Duration;

use custody_tests::rogue::Tamper;
use proto::wire::{Envelope, SessionOutput};

use crate::{
    agreement::{rogue_pair, run_sign_full, start_sign},
    common::{exclusive, rid, Shared},
};

/// Checks with libsecp256k1, independently of the nodes, that `sig` signs the transfer
/// [`start_sign`] builds for `nonce` under the shared key: the digest is Keccak-256 of the
/// unsigned EIP-1559 bytes (`0x02 || rlp(fields)`), s is low, and the recovery id recovers the key.
fn assert_signs_transfer(s: &Shared, nonce: u64, sig: &proto::sig::VerifiedSignature) {
    use secp256k1::{
        ecdsa::{RecoverableSignature, RecoveryId, Signature},
        Message, PublicKey, SECP256K1,
    };
    use sha3::Digest;
    let unsigned = custody_tests::sample::eth_transfer(nonce, [0x11; 20], 5);
    let unsigned = hex::decode(unsigned.trim_start_matches("0x")).unwrap();
    let digest: [u8; 32] = sha3::Keccak256::digest(&unsigned).into();
    let pk = hex::decode(s.key.public_key.as_deref().unwrap()).unwrap();
    let pk = PublicKey::from_slice(&pk).unwrap();
    let msg = Message::from_digest(digest);
    let compact = [sig.r, sig.s].concat();
    let parsed = Signature::from_compact(&compact).unwrap();
    let mut low = parsed;
    low.normalize_s();
    assert_eq!(parsed, low, "signature must be low-s");
    SECP256K1
        .verify_ecdsa(&msg, &parsed, &pk)
        .expect("the signature verifies under the key");
    let recid = RecoveryId::from_i32(i32::from(sig.recovery_id)).unwrap();
    let rec = RecoverableSignature::from_compact(&compact, recid).unwrap();
    assert_eq!(
        SECP256K1.recover_ecdsa(&msg, &rec).unwrap(),
        pk,
        "recovery id"
    );
}

/// Row 4: the relay drops every message node-2 sends after round 1. Node-1's round deadline
/// (4 s here) passes and its failure names node-2, and only node-2.
#[test]
fn row_4_round_deadline_names_the_party_that_did_not_deliver() {
    let mut s = exclusive();
    let (rogue, _children, _) = rogue_pair(&mut s);
    let drop_node2: Tamper =
        Box::new(
            |from: &str, e: Envelope| match from == "node-2" && e.seq >= 2 {
                true => vec![],
                false => vec![e],
            },
        );
    rogue.tamper(drop_node2);
    let started = std::time::Instant::now();
    let reports = run_sign_full(&rogue, &rid("dropped"), 41);
    let (_, node1) = reports
        .iter()
        .find(|(n, _)| n == "node-1")
        .expect("node-1 reports");
    let f = node1
        .as_ref()
        .expect_err("no signature without node-2's messages");
    assert_eq!(f.code, "session.timeout", "{f:?}");
    assert_eq!(f.blame, vec!["node-2".to_string()], "{f:?}");
    assert!(
        f.message.contains("node-2") && f.message.contains("round deadline"),
        "{f:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the deadline, not a hang, ended it"
    );
}

/// Row 5: every envelope is sent twice and each delivery is delayed by up to 150 ms, so
/// messages arrive shuffled across rounds. Duplicates are dropped before the protocol sees them
/// (the library would abort on a second message from the same party in a round), and both
/// nodes produce the same valid signature.
#[test]
fn row_5_shuffled_and_duplicated_messages_are_processed_once() {
    let mut s = exclusive();
    let (rogue, _children, _) = rogue_pair(&mut s);
    let twice: Tamper = Box::new(|_: &str, e: Envelope| vec![e.clone(), e]);
    rogue.tamper(twice);
    rogue.jitter(Some(Duration::from_millis(150)));
    for k in 0..2 {
        let reports = run_sign_full(&rogue, &rid("shuffled"), 50 + k);
        let sigs: Vec<_> = reports
            .iter()
            .map(|(n, r)| match r {
                Ok(SessionOutput::Signature(sig)) => *sig,
                other => panic!("{n}: {other:?}"),
            })
            .collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(
            sigs[0], sigs[1],
            "both nodes hold one and the same signature"
        );
        // Equal is not enough (two copies of one wrong value are equal): it must verify.
        assert_signs_transfer(&s, 50 + k, &sigs[0]);
    }
}

/// Per session: each node with its outcome (the signature's `r`, or the failure code).
type BySession = std::collections::BTreeMap<[u8; 32], Vec<(String, Result<[u8; 32], String>)>>;

/// The next `n` reports, by session.
fn reports(rogue: &custody_tests::rogue::Rogue, n: usize) -> BySession {
    let mut out: std::collections::BTreeMap<_, Vec<_>> = Default::default();
    for _ in 0..n {
        let (node, sid, r) = rogue
            .next_report(Duration::from_secs(40))
            .expect("a report");
        let r = match r {
            Ok(SessionOutput::Signature(sig)) => Ok(sig.r),
            Ok(other) => Err(format!("{other:?}")),
            Err(f) => Err(f.code),
        };
        out.entry(sid).or_default().push((node, r));
    }
    out
}

/// Rows 8 and 9 for full signing, whose one-time material is the session's nonces: two sessions
/// for the same part of one request, started in parallel, give at most one signature (the other
/// is refused with `request.in_progress`). Once a part is signed, each node refuses to sign it
/// again (`request.already_signed`), and that record survives SIGKILL and restart.
#[test]
fn rows_8_9_one_part_signs_once_even_in_parallel_and_across_a_crash() {
    let mut s = exclusive();
    let (rogue, mut children, dirs) = rogue_pair(&mut s);
    let id = rid("once");
    let (a, b): ([u8; 32], [u8; 32]) = (rand::random(), rand::random());
    start_sign(&rogue, a, &id, 61);
    start_sign(&rogue, b, &id, 61);
    let got = reports(&rogue, 4);
    let signed: Vec<_> = got
        .values()
        .filter(|rs| rs.iter().all(|(_, r)| r.is_ok()))
        .collect();
    assert!(signed.len() <= 1, "two signatures for one part: {got:?}");
    let codes: Vec<&String> = got
        .values()
        .flatten()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    assert!(
        codes.iter().any(|c| *c == "request.in_progress"),
        "the parallel session is refused: {got:?}"
    );
    if signed.is_empty() {
        // Each node took a different session first, or the session both took ran out of time
        // on busy cores (its protocol thread holds the part until its round deadline ends it):
        // the part is free again once those sessions are over.
        let mut tries = 0;
        loop {
            start_sign(&rogue, rand::random(), &id, 61);
            let again = reports(&rogue, 2);
            let busy = again
                .values()
                .flatten()
                .any(|(_, r)| r.as_ref().err().map(String::as_str) == Some("request.in_progress"));
            tries += 1;
            if !busy || tries == 5 {
                assert!(
                    again.values().flatten().all(|(_, r)| r.is_ok()),
                    "{again:?}"
                );
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    // Kill both nodes (SIGKILL) and start them again: the record is durable.
    crate::agreement::restart_pair(&s, &rogue, &mut children, &dirs);
    start_sign(&rogue, rand::random(), &id, 61);
    let after = reports(&rogue, 2);
    for (node, r) in after.values().flatten() {
        assert_eq!(
            r.as_ref().err().map(String::as_str),
            Some("request.already_signed"),
            "{node}: {after:?}"
        );
    }
}
