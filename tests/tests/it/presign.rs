//! The presignature pool, end to end: the coordinator keeps each signer subset of a key at its
//! depth, a request signs from a presignature (no MPC rounds online), and the pool shows in the
//! API, the metrics and every node's status. Against a rogue coordinator speaking the real
//! protocol: a presignature signs one request part only, durably across a SIGKILL.

use std::time::{Duration, Instant};

use custody_tests::{rogue::Rogue, sample};
use proto::{
    api::{PresigPoolView, RequestStatus},
    payload::SignPayload,
    presig::PresigPublic,
    wire::{CoordFrame, SessionKind, SessionOutput, SessionStart},
};
use serde_json::json;

use crate::{
    agreement::rogue_pair,
    common::{exclusive, rid, shared, Shared, KEY},
    signing::submit,
};

const POOL_KEY: &str = "pool-key";

fn pool(s: &Shared, key: &str) -> PresigPoolView {
    let (st, v) = s
        .cluster
        .api
        .get(&format!("/v1/keys/{key}/presignatures"))
        .unwrap();
    assert_eq!(st, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

fn set_depth(s: &Shared, key: &str, depth: u32) -> (u16, serde_json::Value) {
    s.cluster
        .api
        .put(
            &format!("/v1/keys/{key}/presignatures"),
            &json!({ "depth": depth }),
        )
        .unwrap()
}

fn wait_full(s: &Shared, depth: u64) -> PresigPoolView {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let p = pool(s, POOL_KEY);
        if p.subsets.len() == 3 && p.subsets.iter().all(|x| x.available >= depth) {
            return p;
        }
        assert!(Instant::now() < deadline, "pool did not fill: {p:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn pool_refills_every_subset_and_a_request_signs_from_a_presignature() {
    let s = shared();
    let (st, v) = set_depth(&s, POOL_KEY, 65);
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("presign.depth_invalid")),
        "{v}"
    );
    let (st, v) = set_depth(&s, "no-such-key", 1);
    assert_eq!(
        (st, v["code"].as_str()),
        (404, Some("key.not_found")),
        "{v}"
    );
    let (st, v) = set_depth(&s, POOL_KEY, 1);
    assert_eq!(st, 200, "{v}");

    let full = wait_full(&s, 1);
    assert_eq!(full.depth, 1);
    assert!(
        full.available >= 3 && full.oldest_age_secs.is_some(),
        "{full:?}"
    );
    assert!(
        full.made_total >= 3 && full.refilled_last_minute >= 1,
        "{full:?}"
    );
    // Each node holds its share of the presignatures of the two subsets it is in.
    let (_, nodes) = s.cluster.api.get("/v1/nodes").unwrap();
    for n in ["node-1", "node-2", "node-3"] {
        let held = nodes["nodes"][n]["status"]["presignatures"][POOL_KEY].as_u64();
        assert!(held >= Some(2), "{n}: {nodes}");
    }
    let (_, metrics) = s.cluster.api.get("/metrics").unwrap();
    let text = metrics
        .as_str()
        .map(str::to_string)
        .unwrap_or(metrics.to_string());
    assert!(
        text.contains("custody_presig_available{key=\"pool-key\",subset=\"node-1,node-2\"}"),
        "{text}"
    );

    let body = json!({
        "request_id": rid("pooled"), "key_id": POOL_KEY, "chain": "ethereum",
        // A nonce no other test uses: nodes refuse a transaction another request reserved
        // (`request.tx_reused`), and `faults::transfer(_, _, 3)` builds this same transfer.
        "unsigned_tx": sample::eth_transfer(600_003, [0x42; 20], 777),
    });
    // `used_total` counts since the coordinator started: compare with this baseline.
    let used_before = pool(&s, POOL_KEY).used_total;
    let v = submit(&s, &body);
    assert_eq!(v.status, RequestStatus::Signed, "{v:?}");
    assert_eq!(v.presigned, 1, "signed from a presignature: {v:?}");
    let key = s
        .cluster
        .wait_key(POOL_KEY, Duration::from_secs(5))
        .unwrap();
    let sig = v.signature.clone().unwrap();
    let raw = hex::decode(v.signed_tx.as_deref().unwrap().trim_start_matches("0x")).unwrap();
    use alloy_consensus::transaction::SignerRecoverable;
    use alloy_eips::eip2718::Decodable2718;
    let env = alloy_consensus::TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    assert_eq!(
        format!("{:#x}", env.recover_signer().unwrap()),
        key.ethereum_address.unwrap(),
        "{sig:?}"
    );
    // The counter may be updated just after the request is final: await it, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let used_after = loop {
        let used = pool(&s, POOL_KEY).used_total;
        if used > used_before || Instant::now() >= deadline {
            break used;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        used_after > used_before,
        "used_total stayed at {used_before} after a presigned signature"
    );
    // Turned off, the pool is not refilled; a request then signs fully interactively.
    let (st, _) = set_depth(&s, POOL_KEY, 0);
    assert_eq!(st, 200);
}

/// Starts a session on node-1 and node-2 of the rogue pair.
fn start(rogue: &Rogue, kind: SessionKind) -> [u8; 32] {
    start_for(rogue, KEY, kind)
}

/// Starts a session of `key` on node-1 and node-2 of the rogue pair; returns its id.
pub(crate) fn start_for(rogue: &Rogue, key: &str, kind: SessionKind) -> [u8; 32] {
    let sid: [u8; 32] = rand::random();
    let parties = vec!["node-1".to_string(), "node-2".to_string()];
    rogue.route(sid, parties.clone());
    let start = SessionStart {
        epoch: 0,
        session_id: sid,
        key_id: key.into(),
        parties: parties.clone(),
        kind,
    };
    for node in &parties {
        assert!(rogue.send(node, CoordFrame::Start(start.clone())));
    }
    sid
}

/// Both nodes' results of session `sid`, in party order.
pub(crate) fn results(rogue: &Rogue, sid: [u8; 32]) -> Vec<Result<SessionOutput, String>> {
    let mut got = std::collections::BTreeMap::new();
    while got.len() < 2 {
        let (node, rsid, r) = rogue
            .next_report(Duration::from_secs(60))
            .expect("a report");
        assert_eq!(rsid, sid, "report of another session");
        got.insert(node, r.map_err(|f| f.code));
    }
    got.into_values().collect()
}

fn sign_kind(request: &str, nonce: u64, presig: Option<[u8; 32]>) -> SessionKind {
    let tx =
        hex::decode(sample::eth_transfer(nonce, [0x11; 20], 5).trim_start_matches("0x")).unwrap();
    SessionKind::Sign {
        request_id: request.into(),
        payload: SignPayload::EthTx(tx),
        part: 0,
        approvals: vec![],
        presignature: presig,
        account: None,
    }
}

fn sign_with(
    rogue: &Rogue,
    request: &str,
    nonce: u64,
    presig: [u8; 32],
) -> Vec<Result<SessionOutput, String>> {
    let sid = start(rogue, sign_kind(request, nonce, Some(presig)));
    results(rogue, sid)
}

fn sigmas(rs: &[Result<SessionOutput, String>]) -> Vec<[u8; 32]> {
    rs.iter()
        .map(|r| match r {
            Ok(SessionOutput::Partial { sigma }) => *sigma,
            other => panic!("expected a partial signature: {rs:?} ({other:?})"),
        })
        .collect()
}

/// Rows 8/9 for presignatures: a presignature signs one part of one request. Asked again for
/// the same part, a node resends its stored partial; for any other request it refuses with
/// `presig.used`, also after SIGKILL and restart; an id it never made is `presig.unknown`.
/// The partials combine into a signature libsecp256k1 accepts under the key.
#[test]
fn a_presignature_signs_one_request_part_once_even_across_a_crash() {
    let mut s = exclusive();
    let (rogue, mut children, dirs) = rogue_pair(&mut s);
    let psid = start(&rogue, SessionKind::Presign);
    let made = results(&rogue, psid);
    let publics: Vec<PresigPublic> = made
        .iter()
        .map(|r| match r {
            Ok(SessionOutput::Presignature(p)) => p.clone(),
            other => panic!("expected a presignature: {other:?}"),
        })
        .collect();
    assert_eq!(
        publics[0], publics[1],
        "both parties report the same public data"
    );

    // A stalled session (node-2 never hears of it; node-1 waits for its join) does not hold up
    // a presigned signing: both partials arrive before node-1 gives up on the stalled one.
    let stalled: [u8; 32] = rand::random();
    rogue.route(stalled, vec!["node-1".into(), "node-2".into()]);
    let start_stalled = SessionStart {
        epoch: 0,
        session_id: stalled,
        key_id: KEY.into(),
        parties: vec!["node-1".into(), "node-2".into()],
        kind: sign_kind(&rid("stalled"), 70, None),
    };
    assert!(rogue.send("node-1", CoordFrame::Start(start_stalled)));
    let request = rid("presigned");
    let quick = start(&rogue, sign_kind(&request, 71, Some(psid)));
    let mut order = Vec::new();
    let mut first = Vec::new();
    while order.len() < 3 {
        let (node, sid, r) = rogue
            .next_report(Duration::from_secs(60))
            .expect("a report");
        order.push((sid == quick, node.clone()));
        if sid == quick {
            first.push((node, r.map_err(|f| f.code)));
        } else {
            assert_eq!(r.err().map(|f| f.code).as_deref(), Some("session.timeout"));
        }
    }
    assert!(
        order[0].0 && order[1].0,
        "presigned partials first: {order:?}"
    );
    first.sort_by(|a, b| a.0.cmp(&b.0));
    let first = sigmas(&first.into_iter().map(|(_, r)| r).collect::<Vec<_>>());
    let tx = hex::decode(sample::eth_transfer(71, [0x11; 20], 5).trim_start_matches("0x")).unwrap();
    let digest = proto::eth::UnsignedEip1559::decode(&tx)
        .unwrap()
        .signing_hash();
    let (r, sig_s) = proto::presig::combine(&publics[0], &first, &digest).unwrap();
    let pk: [u8; 33] = hex::decode(s.key.public_key.as_deref().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    proto::sig::verify(&pk, &digest, &r, &sig_s).expect("combined signature verifies");

    let again = sigmas(&sign_with(&rogue, &request, 71, psid));
    assert_eq!(
        first, again,
        "the same part gets the stored partials, not new ones"
    );
    for r in sign_with(&rogue, &rid("other"), 72, psid) {
        assert_eq!(r.err().as_deref(), Some("presig.used"));
    }
    for r in sign_with(&rogue, &rid("unknown"), 73, rand::random()) {
        assert_eq!(r.err().as_deref(), Some("presig.unknown"));
    }

    // Two sessions naming one presignature for two different requests, at once: on each node
    // at most one of them gets a partial, the other `presig.used` (check and consume are one
    // transaction), so no node ever issues two partials from one presignature.
    let psid2 = start(&rogue, SessionKind::Presign);
    assert!(results(&rogue, psid2).iter().all(|r| r.is_ok()));
    let race = [
        start(&rogue, sign_kind(&rid("race-a"), 75, Some(psid2))),
        start(&rogue, sign_kind(&rid("race-b"), 76, Some(psid2))),
    ];
    let mut partials_per_node = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..4 {
        let (node, sid, r) = rogue
            .next_report(Duration::from_secs(60))
            .expect("a report");
        assert!(race.contains(&sid));
        match r {
            Ok(SessionOutput::Partial { .. }) => *partials_per_node.entry(node).or_default() += 1,
            Ok(other) => panic!("unexpected output {other:?}"),
            Err(f) => assert!(
                // `ledger.behind`: the other session's partial moved a peer's ledger head
                // before this node received the entry; it refused without issuing anything.
                [
                    "presig.used",
                    "session.aborted",
                    "session.timeout",
                    "ledger.behind"
                ]
                .contains(&f.code.as_str()),
                "{f:?}"
            ),
        }
    }
    assert!(
        partials_per_node.values().all(|n| *n <= 1),
        "{partials_per_node:?}"
    );

    crate::agreement::restart_pair(&s, &rogue, &mut children, &dirs);
    for r in sign_with(&rogue, &rid("after-crash"), 74, psid) {
        assert_eq!(r.err().as_deref(), Some("presig.used"), "used is durable");
    }
}
