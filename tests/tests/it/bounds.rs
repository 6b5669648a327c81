//! Finding 6 of issue 16: bounded disk and time on a signer node. Every input the coordinator
//! controls is bounded (request ids, approvals, audited records), and the growth of a node's
//! store and audit log per evaluation stays within what `docs/limits/bounds.md` states, however
//! many approvals a rogue coordinator attaches.

use std::time::{Duration, Instant};

use custody_tests::{governance::GATE_CHAIN, rogue::Rogue, sample};
use proto::{
    authz::{Approval, NodeVerdict, VerdictKind},
    payload::SignPayload,
    wire::{CoordFrame, EvaluateRequest},
};
use serde_json::json;

use crate::{
    common::{exclusive, rid, shared},
    review::{transfer, Lab},
};

const GATE_KEY: &str = "gate-key";
const N1: &str = "node-1";

/// docs/limits/bounds.md: an evaluation refused for its size (too many approvals, a bad
/// request id) writes nothing to the store but the audit anchor, which it overwrites.
const STORE_PER_REFUSED: u64 = 64;
/// docs/limits/bounds.md: the audit record of a refused evaluation.
const AUDIT_PER_REFUSED: u64 = 2 * 1024;
/// docs/limits/bounds.md: store growth per judged evaluation of a new request id.
const STORE_PER_JUDGED: u64 = 4 * 1024;
/// docs/limits/bounds.md: the audit record of a judged evaluation
/// (`MAX_EVALUATION_RECORD` plus the log's own fields).
const AUDIT_PER_JUDGED: u64 = 33 * 1024;

fn approvals(n: usize) -> Vec<Approval> {
    (0..n)
        .map(|i| {
            let mut approver = [0u8; 32];
            approver[..8].copy_from_slice(&(i as u64).to_be_bytes());
            Approval {
                approver,
                signature: [0xab; 64],
                expires_at: 4_000_000_000,
            }
        })
        .collect()
}

/// The most approvals one `Evaluate` frame can carry under the 4 MB frame limit.
fn most_that_fit(payload: &SignPayload) -> usize {
    let frame = |n: usize| {
        proto::wire::encode(&CoordFrame::Evaluate(EvaluateRequest {
            request_id: "x".repeat(128),
            key_id: GATE_KEY.into(),
            payload: payload.clone(),
            approvals: approvals(n),
            account: None,
        }))
    };
    let per = frame(1001).map_or(0, |f| f.len()) - frame(1).map_or(0, |f| f.len());
    let mut n = proto::wire::MAX_FRAME / (per / 1000) - 100;
    while frame(n).is_err() {
        n -= 100;
    }
    n
}

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Sends `asks` as evaluations, at most `window` unanswered at once (a node drops evaluations
/// beyond its control jobs), and returns the verdicts in order.
fn evaluate_all(rogue: &Rogue, asks: Vec<EvaluateRequest>, window: usize) -> Vec<NodeVerdict> {
    let start = rogue.verdicts().len();
    let total = asks.len();
    let mut sent = 0;
    let mut asks = asks.into_iter();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let answered = rogue.verdicts().len() - start;
        if answered >= total {
            break;
        }
        assert!(Instant::now() < deadline, "{answered} of {total} verdicts");
        while sent < total && sent - answered < window {
            let ask = asks.next().expect("one left");
            assert!(rogue.send(N1, CoordFrame::Evaluate(ask)), "linked");
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    rogue.verdicts()[start..]
        .iter()
        .map(|(_, _, v)| v.clone())
        .collect()
}

fn ask(request_id: String, payload: &SignPayload, approvals: Vec<Approval>) -> EvaluateRequest {
    EvaluateRequest {
        request_id,
        key_id: GATE_KEY.into(),
        payload: payload.clone(),
        approvals,
        account: None,
    }
}

/// The coordinator's API refuses what a node would: 20,000 approvals (over the body limit),
/// more approvals than a request may carry, and an over-long request id, each with its stable
/// code.
#[test]
fn api_edge_refuses_oversized_approvals_and_ids() {
    let s = shared();
    let api = &s.cluster.api;
    let id = rid("bounds-api");
    // 1000 wei on the gate chain waits for a time-lock and two approvals: it stays open.
    let body = json!({"request_id": id, "key_id": GATE_KEY, "chain": "ethereum",
        "unsigned_tx": sample::eth_tx_on(GATE_CHAIN, 7, [0x5a; 20], 1000, vec![])});
    let (status, v) = api.post("/v1/sign-requests", &body).unwrap();
    assert!(status == 202 || status == 200, "{status} {v}");
    let path = format!("/v1/sign-requests/{id}/approvals");

    // 20,000 approvals (~4.7 MB): refused from the declared length, after the first 16 KiB.
    let huge = serde_json::to_vec(&approvals(20_000)).unwrap();
    assert!(huge.len() > 4_000_000, "{} bytes", huge.len());
    let token = s.cluster.layout.token().unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        huge.len()
    )
    .into_bytes();
    request.extend_from_slice(&huge[..16 * 1024]);
    let resp = custody_tests::api::raw_https(
        s.cluster.layout.api_port,
        &s.cluster.layout.ca(),
        &request,
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("request.too_large"), "{resp}");

    let max = proto::api::MAX_APPROVALS_PER_REQUEST;
    let over = serde_json::to_value(approvals(max + 1)).unwrap();
    let (status, v) = api.post(&path, &over).unwrap();
    assert_eq!(
        (status, v["code"].as_str()),
        (422, Some("approvals.too_many")),
        "{v}"
    );
    let (_, view) = api.get(&format!("/v1/sign-requests/{id}")).unwrap();
    assert_eq!(
        view["approvals"], 0,
        "nothing of the refused batch is kept: {view}"
    );

    let mut long = body.clone();
    long["request_id"] = json!("r".repeat(proto::api::MAX_REQUEST_ID_LEN + 1));
    let (status, v) = api.post("/v1/sign-requests", &long).unwrap();
    assert_eq!(
        (status, v["code"].as_str()),
        (422, Some("request.invalid_id")),
        "{v}"
    );
}

/// A rogue coordinator sends 10,000 evaluations with more approvals than allowed, a few with
/// the most approvals a frame can carry, and evaluations at the cap: the node refuses the
/// oversized ones before storing anything, audits only their count and hash, and its store
/// and audit log grow per evaluation within the documented bounds. An over-long request id is
/// refused and never written in full.
#[test]
fn node_growth_per_evaluation_is_bounded() {
    let t0 = Instant::now();
    let mut s = exclusive();
    let (mut lab, dirs) = Lab::new(&mut s, "bounds", &[0], "");
    drop(s);
    let usage0 = usage(&dirs[0]);
    lab.start(&dirs[0], N1);
    let t_ready = Instant::now();
    eprintln!("cluster and node copy ready after {:?}", t0.elapsed());
    let rogue = &lab.rogue;
    let (db, audit) = (dirs[0].join("node.redb"), dirs[0].join("audit.jsonl"));
    let payload = transfer(GATE_CHAIN, 10);
    let max = proto::api::MAX_APPROVALS_PER_REQUEST;

    // An over-long request id.
    let long = "L".repeat(4096);
    let v = evaluate_all(rogue, vec![ask(long.clone(), &payload, vec![])], 1);
    assert_eq!(
        (v[0].kind, v[0].code.as_deref()),
        (VerdictKind::Deny, Some("request.invalid_id"))
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(&long[..200]), "the long id is not audited");

    // The most approvals a frame carries: refused, audited by count and hash.
    let fit = most_that_fit(&payload);
    assert!(fit > 10_000, "{fit} approvals fit a frame");
    let (db0, audit0) = (size(&db), size(&audit));
    let big: Vec<EvaluateRequest> = (0..3)
        .map(|_| ask(rid("bounds-fit"), &payload, approvals(fit)))
        .collect();
    for v in evaluate_all(rogue, big, 1) {
        assert_eq!(v.code.as_deref(), Some("approvals.too_many"), "{v:?}");
    }
    let per_big = (size(&audit) - audit0) / 3;
    eprintln!("{fit} approvals: audit +{per_big} B per evaluation");
    assert!(
        per_big <= AUDIT_PER_REFUSED,
        "{per_big} B audited per evaluation"
    );
    let tail = std::fs::read_to_string(&audit).unwrap();
    let last = tail.lines().last().unwrap();
    assert!(last.contains(&format!("\"count\":{fit}")), "{last}");

    // 10,000 evaluations over the cap, each a new request id.
    let n = 10_000u64;
    let (db0, audit0) = (size(&db).max(db0), size(&audit));
    let t = Instant::now();
    let over_ids: Vec<String> = (0..n).map(|_| rid("bounds-over")).collect();
    let asks = over_ids
        .iter()
        .map(|id| ask(id.clone(), &payload, approvals(max + 1)))
        .collect();
    let verdicts = evaluate_all(rogue, asks, 24);
    let took = t.elapsed();
    assert!(verdicts
        .iter()
        .all(|v| v.kind == VerdictKind::Deny && v.code.as_deref() == Some("approvals.too_many")));
    let (store_growth, audit_growth) = (size(&db).saturating_sub(db0), size(&audit) - audit0);
    eprintln!(
        "{n} over the cap in {took:?}: store +{store_growth} B, audit +{audit_growth} B ({} B each)",
        audit_growth / n
    );
    assert!(
        store_growth <= STORE_PER_REFUSED * n,
        "store +{store_growth} B"
    );
    assert!(
        audit_growth <= AUDIT_PER_REFUSED * n,
        "audit +{audit_growth} B"
    );

    // At the cap: judged in full, each a new request id the node binds.
    let m = 1_000u64;
    let (db0, audit0) = (size(&db), size(&audit));
    let t = Instant::now();
    let cap_ids: Vec<String> = (0..m).map(|_| rid("bounds-cap")).collect();
    let asks = cap_ids
        .iter()
        .map(|id| ask(id.clone(), &payload, approvals(max)))
        .collect();
    let verdicts = evaluate_all(rogue, asks, 24);
    let took = t.elapsed();
    assert!(
        verdicts
            .iter()
            .all(|v| v.code.as_deref() != Some("approvals.too_many")),
        "{:?}",
        verdicts[0]
    );
    let (store_growth, audit_growth) = (size(&db).saturating_sub(db0), size(&audit) - audit0);
    eprintln!(
        "{m} at the cap in {took:?}: store +{store_growth} B ({} B each), audit +{audit_growth} B ({} B each)",
        store_growth / m,
        audit_growth / m
    );
    assert!(
        store_growth <= STORE_PER_JUDGED * m,
        "store +{store_growth} B"
    );
    assert!(
        audit_growth <= AUDIT_PER_JUDGED * m,
        "audit +{audit_growth} B"
    );

    // What the store holds, counted record by record (the file is preallocated, so its size
    // says little): nothing for a refused request, a bounded amount for a judged one.
    lab.kids.0.iter_mut().for_each(|c| {
        let _ = c.kill();
        let _ = c.wait();
    });
    let store = open_store(&dirs[0]);
    let usage1 = store.usage().unwrap();
    for id in &over_ids {
        assert!(
            !store.request_bound(id).unwrap(),
            "refused `{id}` was bound"
        );
    }
    for id in &cap_ids {
        assert!(store.request_bound(id).unwrap(), "judged `{id}` is bound");
    }
    let grown = usage1.bytes - usage0.bytes;
    eprintln!(
        "store content +{grown} B in +{} records over {} evaluations ({} B per judged one)",
        usage1.records - usage0.records,
        n + m + 4,
        grown / m
    );
    assert!(
        grown <= STORE_PER_JUDGED * m + STORE_PER_REFUSED * (n + 4),
        "store content +{grown} B"
    );
    eprintln!(
        "bounds test took {:?}, {:?} after the copy was ready",
        t0.elapsed(),
        t_ready.elapsed()
    );
}

fn open_store(dir: &std::path::Path) -> signer_node::store::Store {
    let pass = std::fs::read_to_string(dir.join("passphrase")).unwrap();
    signer_node::store::Store::open(dir, &signer_node::secret::Passphrase::new(pass)).unwrap()
}

/// What a stopped node's store holds.
fn usage(dir: &std::path::Path) -> signer_node::store::Usage {
    open_store(dir).usage().unwrap()
}
