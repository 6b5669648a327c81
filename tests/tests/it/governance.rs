//! Every node enforces the signed policy itself: limits, cluster-wide velocity, time-locks with a
//! guardian veto, approvals, freeze, signed bundles, and an audit log that detects tampering.
//! Each test names the rule tag it covers. The policy is `tests/src/governance.rs`.

use std::time::{Duration, Instant};

use custody_tests::{
    governance::{Governance, APPROVERS, GATE_CHAIN, GUARDIAN, OFFICERS, VELOCITY_CHAIN},
    sample,
};
use ed25519_dalek::Signer;
use proto::{
    api::{KeyInfo, RequestStatus, SignRequestBody, SignRequestView},
    authz::{Approval, VerdictKind},
    intent::WithdrawalIntent,
    payload::SignPayload,
};
use serde_json::{json, Value};

use crate::common::{edit_node_config, exclusive, rid, shared, Shared};

fn gov(s: &Shared) -> Governance {
    Governance::at(&s.cluster.layout.dir)
}

pub(crate) fn key(s: &Shared, id: &str) -> KeyInfo {
    let (st, v) = s.cluster.api.get(&format!("/v1/keys/{id}")).unwrap();
    assert_eq!(st, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

/// A native transfer of `wei` on `chain_id` from `key_id`, with a nonce of its own: nodes refuse
/// one transaction under two request ids (`request.tx_reused`).
pub(crate) fn transfer(key_id: &str, chain_id: u64, wei: u128) -> Value {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NONCE: AtomicU64 = AtomicU64::new(1000);
    let nonce = NONCE.fetch_add(1, Ordering::SeqCst);
    json!({"request_id": rid(key_id), "key_id": key_id, "chain": "ethereum",
        "unsigned_tx": sample::eth_tx_on(chain_id, nonce, [0x5a; 20], wei, vec![])})
}

pub(crate) fn post(s: &Shared, body: &Value) -> String {
    let (st, v) = s.cluster.api.post("/v1/sign-requests", body).unwrap();
    assert_eq!(st, 202, "{v}");
    body["request_id"].as_str().unwrap().to_string()
}

pub(crate) fn view(s: &Shared, id: &str) -> SignRequestView {
    let (_, v) = s
        .cluster
        .api
        .get(&format!("/v1/sign-requests/{id}"))
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Polls a request until `pred` holds.
pub(crate) fn wait_for(
    s: &Shared,
    id: &str,
    timeout: Duration,
    pred: impl Fn(&SignRequestView) -> bool,
) -> SignRequestView {
    let deadline = Instant::now() + timeout;
    loop {
        let v = view(s, id);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met in time: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deferred(s: &Shared, id: &str) -> SignRequestView {
    wait_for(s, id, Duration::from_secs(30), |v| {
        v.status == RequestStatus::Deferred
    })
}

/// The intent as the test decodes it itself (what an approver signs).
fn intent_of(s: &Shared, body: &Value) -> WithdrawalIntent {
    let body: SignRequestBody = serde_json::from_value(body.clone()).unwrap();
    let pk: [u8; 33] = hex::decode(key(s, &body.key_id).public_key.unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let payload = SignPayload::from_body(&body).unwrap();
    payload.decode(&pk).unwrap().intent(&body.key_id).unwrap()
}

/// The hash of the payload the body asks to sign (approvals are bound to it).
fn payload_of(body: &Value) -> [u8; 32] {
    let body: SignRequestBody = serde_json::from_value(body.clone()).unwrap();
    SignPayload::from_body(&body).unwrap().payload_hash()
}

fn subject<'a>(request_id: &'a str, payload: &'a [u8; 32]) -> policy::ApprovalSubject<'a> {
    policy::ApprovalSubject {
        request_id,
        payload_hash: payload,
    }
}

/// The policy hash the nodes report for this request.
fn policy_hash(v: &SignRequestView) -> policy::PolicyHash {
    let h = v
        .verdicts
        .values()
        .find_map(|x| x.policy_hash.clone())
        .unwrap();
    let mut out = [0u8; 32];
    hex::decode_to_slice(h, &mut out).unwrap();
    policy::PolicyHash(out)
}

fn approval(
    s: &Shared,
    who: &str,
    body: &Value,
    request_id: &str,
    v: &SignRequestView,
) -> Approval {
    // Valid for three days: long enough for a node whose clock runs a day ahead.
    let expires = proto_now() + 3 * 86_400;
    policy::sign_approval(
        &gov(s).key(who).unwrap(),
        &intent_of(s, body),
        subject(request_id, &payload_of(body)),
        &policy_hash(v),
        expires,
    )
}

fn proto_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn approve(s: &Shared, id: &str, a: &[Approval]) {
    let (st, v) = s
        .cluster
        .api
        .post(&format!("/v1/sign-requests/{id}/approvals"), &json!(a))
        .unwrap();
    assert_eq!(st, 202, "{v}");
}

fn every_node(v: &SignRequestView, kind: VerdictKind, code: &str) {
    assert_eq!(v.verdicts.len(), 3, "{v:?}");
    for (node, x) in &v.verdicts {
        assert_eq!(x.kind, kind, "{node}: {x:?}");
        assert_eq!(x.code.as_deref(), Some(code), "{node}: {x:?}");
    }
}

#[test]
fn limit_per_tx_over_the_limit_is_denied_by_every_node_without_a_session() {
    let s = shared();
    let id = post(&s, &transfer("gate-key", GATE_CHAIN, 5001));
    let v = wait_for(&s, &id, Duration::from_secs(30), |v| v.status.is_final());
    assert_eq!(v.status, RequestStatus::Denied, "{v:?}");
    assert_eq!(v.error.as_ref().unwrap().code, "policy.limit.per_tx");
    every_node(&v, VerdictKind::Deny, "policy.limit.per_tx");
    assert!(v.signers.is_empty() && v.signature.is_none(), "{v:?}");
}

#[test]
fn approval_quorum_missing_defers_forged_duplicate_and_wrong_request_do_not_count() {
    let s = shared();
    let body = transfer("gate-key", GATE_CHAIN, 600);
    let id = post(&s, &body);
    let v = deferred(&s, &id);
    assert_eq!(v.missing_approvals.get("ops"), Some(&2), "{v:?}");
    every_node(&v, VerdictKind::Defer, "policy.approval.quorum");

    let good = approval(&s, APPROVERS[0], &body, &id, &v);
    let mut forged = approval(&s, APPROVERS[1], &body, &id, &v);
    forged.signature[5] ^= 1;
    let wrong_request = approval(&s, APPROVERS[2], &body, "some-other-request", &v);
    let mut duplicate = approval(&s, APPROVERS[0], &body, &id, &v);
    duplicate.expires_at += 1;
    duplicate = Approval {
        signature: {
            let digest = policy::approval_digest(
                &intent_of(&s, &body),
                subject(&id, &payload_of(&body)),
                &policy_hash(&v),
                duplicate.expires_at,
            );
            gov(&s).key(APPROVERS[0]).unwrap().sign(&digest).to_bytes()
        },
        ..duplicate
    };
    let outsider = policy::sign_approval(
        &gov(&s).key(OFFICERS[0]).unwrap(),
        &intent_of(&s, &body),
        subject(&id, &payload_of(&body)),
        &policy_hash(&v),
        proto_now() + 3600,
    );
    approve(&s, &id, &[good, forged, wrong_request, duplicate, outsider]);
    let v = wait_for(&s, &id, Duration::from_secs(30), |v| {
        v.missing_approvals.get("ops") == Some(&1)
    });
    assert_eq!(
        v.status,
        RequestStatus::Deferred,
        "only one approver counts: {v:?}"
    );
    assert!(v.signature.is_none());

    approve(&s, &id, &[approval(&s, APPROVERS[1], &body, &id, &v)]);
    let v = wait_for(&s, &id, Duration::from_secs(60), |v| v.status.is_final());
    assert_eq!(v.status, RequestStatus::Signed, "{v:?}");
    assert_eq!(v.signers.len(), 2);
}

#[test]
fn timelock_tier_defers_even_with_a_node_clock_a_day_ahead_then_signs_after_the_delay() {
    let mut s = exclusive();
    let body = transfer("gate-key", GATE_CHAIN, 1000);
    let submitted = Instant::now();
    let id = post(&s, &body);
    let v = deferred(&s, &id);
    // After every node recorded when it first saw the request, node 3's clock jumps a day ahead.
    set_clock_offset(&mut s, 2, 86_400);
    let a: Vec<Approval> = APPROVERS[..2]
        .iter()
        .map(|who| approval(&s, who, &body, &id, &v))
        .collect();
    approve(&s, &id, &a);
    let v = wait_for(&s, &id, Duration::from_secs(15), |v| {
        v.missing_approvals.is_empty()
            && v.verdicts
                .get("node-3")
                .is_some_and(|x| x.kind == VerdictKind::Allow)
    });
    // Node 3 allows, but one allow is not t: the others still wait for the time-lock.
    assert!(
        submitted.elapsed() < Duration::from_secs(20),
        "test too slow to prove anything"
    );
    assert_eq!(v.status, RequestStatus::Deferred, "{v:?}");
    assert!(v.signature.is_none() && v.not_before.is_some(), "{v:?}");
    for node in ["node-1", "node-2"] {
        let code = v.verdicts[node].code.as_deref();
        assert_eq!(code, Some("policy.timelock.tier"), "{v:?}");
    }

    let v = wait_for(&s, &id, Duration::from_secs(60), |v| v.status.is_final());
    assert_eq!(v.status, RequestStatus::Signed, "{v:?}");
    assert!(
        submitted.elapsed() >= Duration::from_secs(20),
        "signed before the delay"
    );
    set_clock_offset(&mut s, 2, 0);
}

fn set_clock_offset(s: &mut Shared, i: usize, secs: i64) {
    edit_node_config(s, i, |text| {
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("clock_offset_secs"))
            .collect();
        format!("clock_offset_secs = {secs}\n{}\n", kept.join("\n"))
    });
}

#[test]
fn veto_during_the_timelock_means_the_request_is_never_signed() {
    let s = shared();
    let body = transfer("gate-key", GATE_CHAIN, 2000);
    let id = post(&s, &body);
    let v = deferred(&s, &id);
    let locked_until = v.not_before;
    let a: Vec<Approval> = APPROVERS[1..]
        .iter()
        .map(|who| approval(&s, who, &body, &id, &v))
        .collect();
    approve(&s, &id, &a);
    let sign_veto = |who: &str| {
        let k = gov(&s).key(who).unwrap();
        let sig = k.sign(&proto::authz::veto_digest(&id));
        json!({"guardian": hex::encode(k.verifying_key().as_bytes()),
               "signature": hex::encode(sig.to_bytes())})
    };
    let cancel = format!("/v1/sign-requests/{id}/cancel");
    let (st, v) = s
        .cluster
        .api
        .post(&cancel, &sign_veto(APPROVERS[0]))
        .unwrap();
    assert_eq!((st, v["code"].as_str()), (403, Some("veto.invalid")), "{v}");
    // The time-lock's end, as the nodes reported it before the veto: the request must still be
    // unsigned after it (a fixed sleep could end before it and prove nothing).
    let not_before = view(&s, &id)
        .not_before
        .or(locked_until)
        .expect("the request is time-locked");
    let (st, v) = s.cluster.api.post(&cancel, &sign_veto(GUARDIAN)).unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "cancelled");
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let wait = not_before.saturating_sub(unix_now());
    assert!(
        wait <= 60,
        "the time-lock ends in {wait} s: too far for this test"
    );
    // Until a little past the end (time for the coordinator to re-drive deferred requests),
    // the request stays cancelled at every look.
    let deadline = Instant::now() + Duration::from_secs(wait + 3);
    while Instant::now() < deadline || unix_now() <= not_before + 2 {
        let v = view(&s, &id);
        assert_eq!(v.status, RequestStatus::Cancelled, "{v:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let v = view(&s, &id);
    assert!(unix_now() > not_before, "checked after the time-lock ended");
    assert_eq!(v.status, RequestStatus::Cancelled, "{v:?}");
    assert!(v.signature.is_none() && v.signers.is_empty(), "{v:?}");
    assert_eq!(v.error.unwrap().code, "veto");
}

/// Waits until every node holds the same ledger with no gaps.
fn wait_ledgers_converged(s: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = s.cluster.api.get("/v1/nodes").unwrap();
        let heads: Vec<&Value> = ["node-1", "node-2", "node-3"]
            .iter()
            .map(|n| &v["nodes"][n]["status"]["ledger_heads"])
            .collect();
        let gaps = ["node-1", "node-2", "node-3"]
            .iter()
            .any(|n| v["nodes"][n]["status"]["ledger_gaps"] != json!([]));
        if !gaps && heads.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(Instant::now() < deadline, "ledgers did not converge: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn limit_velocity_holds_when_requests_are_spread_over_every_two_subset() {
    let mut s = exclusive();
    let mut subsets = Vec::new();
    for down in [2, 0, 1] {
        s.cluster.kill_node(down).unwrap();
        let id = post(&s, &transfer("vel-key", VELOCITY_CHAIN, 10));
        let v = wait_for(&s, &id, Duration::from_secs(60), |v| v.status.is_final());
        assert_eq!(v.status, RequestStatus::Signed, "{v:?}");
        subsets.push(v.signers.clone());
        s.cluster.start_node_and_wait(down).unwrap();
    }
    subsets.sort();
    subsets.dedup();
    assert_eq!(subsets.len(), 3, "every 2-subset signed once: {subsets:?}");
    wait_ledgers_converged(&s);
    // Each node signed only two of the three, so only the relayed ledger tells it about the third.
    let id = post(&s, &transfer("vel-key", VELOCITY_CHAIN, 10));
    let v = wait_for(&s, &id, Duration::from_secs(60), |v| v.status.is_final());
    assert_eq!(v.status, RequestStatus::Denied, "{v:?}");
    every_node(&v, VerdictKind::Deny, "policy.limit.velocity");
}

/// The body of `POST /v1/keys/{key}/freeze`: guardian `who` freezes `key_id` in `epoch`.
pub(crate) fn freeze_body(g: &Governance, key_id: &str, who: &str, epoch: u64) -> Value {
    let k = g.key(who).unwrap();
    let sig = k.sign(&proto::authz::freeze_digest(key_id, epoch));
    json!({"epoch": epoch, "guardian": hex::encode(k.verifying_key().as_bytes()),
           "signature": hex::encode(sig.to_bytes())})
}

/// The body of `POST /v1/keys/{key}/unfreeze`: `officers` end `key_id`'s `epoch`.
pub(crate) fn unfreeze_body(g: &Governance, key_id: &str, epoch: u64, officers: &[&str]) -> Value {
    let sigs: Vec<Value> = officers
        .iter()
        .map(|o| {
            let k = g.key(o).unwrap();
            let sig = k.sign(&proto::authz::unfreeze_digest(key_id, epoch));
            json!({"officer": hex::encode(k.verifying_key().as_bytes()),
                   "signature": hex::encode(sig.to_bytes())})
        })
        .collect();
    json!({"epoch": epoch, "signatures": sigs})
}

fn order(s: &Shared, path: &str, body: &Value) -> (u16, Value) {
    s.cluster.api.post(path, body).unwrap()
}

#[test]
fn freeze_by_one_guardian_stops_signing_until_the_officer_quorum_unfreezes() {
    let s = shared();
    let g = gov(&s);
    let epoch = key(&s, "frz-key")
        .freeze
        .values()
        .map(|f| f.epoch)
        .max()
        .unwrap_or(0);
    let freeze_body = |who: &str, epoch: u64| freeze_body(&g, "frz-key", who, epoch);
    let (st, v) = order(
        &s,
        "/v1/keys/frz-key/freeze",
        &freeze_body(APPROVERS[0], epoch),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("freeze.invalid")),
        "{v}"
    );
    let (st, v) = order(&s, "/v1/keys/frz-key/freeze", &freeze_body(GUARDIAN, epoch));
    assert_eq!(st, 200, "{v}");
    let k = key(&s, "frz-key");
    assert!(
        k.freeze.len() == 3 && k.freeze.values().all(|f| f.frozen),
        "{k:?}"
    );

    let id = post(&s, &transfer("frz-key", GATE_CHAIN, 100));
    let v = wait_for(&s, &id, Duration::from_secs(30), |v| v.status.is_final());
    assert_eq!(v.status, RequestStatus::Denied, "{v:?}");
    every_node(&v, VerdictKind::Deny, "policy.freeze");

    let unfreeze_body = |officers: &[&str]| unfreeze_body(&g, "frz-key", epoch, officers);
    let (st, v) = order(
        &s,
        "/v1/keys/frz-key/unfreeze",
        &unfreeze_body(&OFFICERS[..1]),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (403, Some("unfreeze.quorum")),
        "{v}"
    );
    let (st, v) = order(
        &s,
        "/v1/keys/frz-key/unfreeze",
        &unfreeze_body(&OFFICERS[1..]),
    );
    assert_eq!(st, 200, "{v}");
    // The old freeze cannot be replayed after the unfreeze.
    let (st, v) = order(&s, "/v1/keys/frz-key/freeze", &freeze_body(GUARDIAN, epoch));
    assert_eq!((st, v["code"].as_str()), (403, Some("freeze.stale")), "{v}");

    let id = post(&s, &transfer("frz-key", GATE_CHAIN, 100));
    let v = wait_for(&s, &id, Duration::from_secs(60), |v| v.status.is_final());
    assert_eq!(v.status, RequestStatus::Signed, "{v:?}");
}
