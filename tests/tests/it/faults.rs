//! Issue 7: the cluster keeps working through crashes, stalls and a lying guardian, and loses or
//! duplicates nothing. Real processes throughout; rows 4, 7, 9, 10 and 28 of the security matrix.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use custody_tests::sample;
use proto::api::RequestStatus;
use serde_json::{json, Value};

use crate::{
    common::{exclusive, rid, Shared, KEY},
    governance::view,
    signing::{assert_valid_signature, submit},
};

pub fn transfer(tag: &str, key: &str, nonce: u64) -> Value {
    json!({"request_id": rid(tag), "key_id": key, "chain": "ethereum",
           "unsigned_tx": sample::eth_transfer(nonce, [0x42; 20], 777)})
}

/// Submits and waits until the request is in a signing session; `None` if it ended first.
fn submit_until_signing(s: &Shared, body: &Value) -> Option<Vec<String>> {
    let (st, v) = s.cluster.api.post("/v1/sign-requests", body).unwrap();
    assert_eq!(st, 202, "{v}");
    let id = body["request_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let r = view(s, id);
        if r.status == RequestStatus::Signing && !r.signers.is_empty() {
            return Some(r.signers);
        }
        if r.status.is_final() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn metrics(s: &Shared) -> String {
    let (_, m) = s.cluster.api.get("/metrics").unwrap();
    m.as_str().unwrap_or_default().to_string()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

fn log_of(s: &Shared, name: &str) -> String {
    std::fs::read_to_string(s.cluster.layout.dir.join(format!("logs/{name}.log")))
        .unwrap_or_default()
}

fn index_of(s: &Shared, node: &str) -> usize {
    s.cluster
        .layout
        .nodes
        .iter()
        .position(|n| n == node)
        .unwrap()
}

/// Every `signature` record in the nodes' audit logs: request id → distinct (r, s).
fn node_signatures(s: &Shared) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for n in &s.cluster.layout.nodes {
        let text = std::fs::read_to_string(s.cluster.layout.dir.join(n).join("audit.jsonl"))
            .unwrap_or_default();
        for line in text.lines() {
            let Ok(rec) = serde_json::from_str::<Value>(line) else {
                continue; // a line being written right now
            };
            if rec["kind"] == "signature" {
                let d = &rec["data"];
                let rid = d["request_id"].as_str().unwrap_or_default().to_string();
                let rs = (
                    d["r"].as_str().unwrap_or_default().to_string(),
                    d["s"].as_str().unwrap_or_default().to_string(),
                );
                out.entry(rid).or_default().insert(rs);
            }
        }
    }
    out
}

/// Row 4 through the real coordinator: a signer is killed (SIGKILL) in the middle of a round.
/// The session's failure names it, the coordinator counts and audits the blame, and the request
/// is signed by another subset without it.
#[test]
fn row_4_node_killed_mid_round_is_blamed_and_another_subset_signs() {
    let mut s = exclusive();
    let mut attempt = 0;
    let (id, victim) = loop {
        attempt += 1;
        assert!(attempt <= 5, "never caught a request mid-session");
        let body = transfer("midround", KEY, 7000 + attempt);
        if let Some(signers) = submit_until_signing(&s, &body) {
            std::thread::sleep(Duration::from_millis(150));
            let victim = signers[1].clone();
            let i = index_of(&s, &victim);
            s.cluster.kill_node(i).unwrap();
            break (body["request_id"].as_str().unwrap().to_string(), victim);
        }
    };
    let r = s
        .cluster
        .wait_request(&id, Duration::from_secs(120))
        .unwrap();
    assert_valid_signature(&s, &r);
    if r.signers.contains(&victim) {
        // The round finished before the kill landed: nothing to blame, nothing lost.
        let i = index_of(&s, &victim);
        s.cluster.start_node_and_wait(i).unwrap();
        return;
    }
    let m = metrics(&s);
    let blamed =
        format!("custody_session_blame_total{{node=\"{victim}\",code=\"node.disconnected\"}}");
    assert!(metric(&m, &blamed).unwrap_or(0.0) >= 1.0, "{m}");
    let audit =
        std::fs::read_to_string(s.cluster.layout.dir.join("coordinator/audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"session.blame\"") && l.contains(&victim)),
        "coordinator audit names the blamed node"
    );
    let i = index_of(&s, &victim);
    s.cluster.start_node_and_wait(i).unwrap();
}

fn start_rogue(s: &mut Shared, extra: &[&str]) {
    s.cluster.kill_node(2).unwrap();
    let mut rogue = std::process::Command::new(env!("CARGO_BIN_EXE_rogue-node"));
    let nd = s.cluster.layout.dir.join("node-3");
    rogue
        .arg("--config")
        .arg(nd.join("node.toml"))
        .arg("--passphrase-file")
        .arg(nd.join("passphrase"))
        .args(extra);
    s.cluster.start_node_as(2, rogue).unwrap();
}

/// A compromised node-3 alters its round-2 `Γ`. Honest peers' proof checks fail and cggmp24 names
/// it (`faulty_party` in its error's `Debug`); the session's failure blames node-3, the
/// coordinator counts and audits that, and signs every request with node-1 and node-2.
#[test]
fn culprits_named_by_cggmp24_are_blamed_and_excluded() {
    let mut s = exclusive();
    start_rogue(&mut s, &["--tamper-gamma"]);
    let all = s.cluster.layout.nodes.clone();
    s.cluster
        .wait_connected(&all, Duration::from_secs(30))
        .unwrap();
    // Subsets rotate by one per request: three requests meet every subset, two with node-3.
    for k in 0..3 {
        let r = submit(&s, &transfer("culprit", KEY, 500_000 + k));
        assert_valid_signature(&s, &r);
        assert_eq!(r.signers, ["node-1", "node-2"], "{r:?}");
    }
    let m = metrics(&s);
    let series = "custody_session_blame_total{node=\"node-3\",code=\"session.protocol\"}";
    assert!(metric(&m, series).unwrap_or(0.0) >= 1.0, "{m}");
    let audit =
        std::fs::read_to_string(s.cluster.layout.dir.join("coordinator/audit.jsonl")).unwrap();
    assert!(audit.lines().any(|l| l.contains("\"session.blame\"")
        && l.contains("node-3")
        && l.contains("session.protocol")));
    s.cluster.kill_node(2).unwrap();
    s.cluster.start_node_and_wait(2).unwrap();
}

/// Row 7: a compromised node-3 (the `rogue-node` binary: the real node with its partial
/// signatures off by one) signs with node-1. The combined signature fails verification on
/// node-1; the coordinator returns no signature, locks the key, logs an error, counts the
/// incident and audits it, and never retries on its own. An operator unlocks the key.
#[test]
fn row_7_tampered_partial_signature_locks_the_key_until_an_operator_unlocks_it() {
    const INC: &str = "inc-key";
    let mut s = exclusive();
    start_rogue(&mut s, &[]);
    s.cluster.kill_node(1).unwrap();
    let up = vec!["node-1".to_string(), "node-3".to_string()];
    s.cluster
        .wait_connected(&up, Duration::from_secs(30))
        .unwrap();

    let body = transfer("tampered", INC, 1);
    let id = body["request_id"].as_str().unwrap();
    let r = submit(&s, &body);
    assert_eq!(r.status, RequestStatus::Failed, "{r:?}");
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("signature.invalid"),
        "{r:?}"
    );
    assert!(r.signature.is_none() && r.signed_tx.is_none(), "{r:?}");
    assert!(log_of(&s, "node-3").contains("tampered a round message"));

    let (_, key) = s.cluster.api.get(&format!("/v1/keys/{INC}")).unwrap();
    assert_eq!(key["locked"]["code"], "signature.invalid", "{key}");
    assert_eq!(key["locked"]["request_id"], id, "{key}");
    let m = metrics(&s);
    assert_eq!(
        metric(&m, &format!("custody_incidents_total{{key=\"{INC}\"}}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, &format!("custody_key_locked{{key=\"{INC}\"}}")),
        Some(1.0),
        "{m}"
    );
    let incidents = log_of(&s, "coordinator")
        .matches("SECURITY INCIDENT")
        .count();
    assert_eq!(incidents, 1, "one alert, no automatic retry");
    let audit =
        std::fs::read_to_string(s.cluster.layout.dir.join("coordinator/audit.jsonl")).unwrap();
    assert!(audit.contains("\"incident.key_locked\""));
    let (st, v) = s
        .cluster
        .api
        .post("/v1/sign-requests", &transfer("locked", INC, 2))
        .unwrap();
    assert_eq!((st, v["code"].as_str()), (423, Some("key.locked")), "{v}");

    // Replace the rogue node, bring node-2 back, and unlock.
    s.cluster.kill_node(2).unwrap();
    s.cluster.start_node(1).unwrap();
    s.cluster.start_node_and_wait(2).unwrap();
    let reader = s.cluster.api.with_token(None);
    let (st, _) = reader
        .post(&format!("/v1/keys/{INC}/unlock"), &json!({}))
        .unwrap();
    assert_eq!(st, 401);
    let reason = json!({"reason": "node-3 reinstalled from its backup"});
    let (st, v) = s
        .cluster
        .api
        .post(&format!("/v1/keys/{INC}/unlock"), &reason)
        .unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["lock"]["code"], "signature.invalid");
    let (st, v) = s
        .cluster
        .api
        .post(&format!("/v1/keys/{INC}/unlock"), &reason)
        .unwrap();
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("key.not_locked")),
        "{v}"
    );
    let r = submit(&s, &transfer("unlocked", INC, 3));
    assert_eq!(r.status, RequestStatus::Signed, "{r:?}");
    assert_eq!(
        metric(
            &metrics(&s),
            &format!("custody_key_locked{{key=\"{INC}\"}}")
        ),
        Some(0.0)
    );
}

/// Tiny deterministic generator for kill points (the seed is printed).
struct Lcg(u64);
impl Lcg {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
}

/// Rows 9 and 10 at cluster level: the coordinator is killed (SIGKILL) 20 times at random points
/// while a client keeps submitting (and resubmitting, under the same id, whatever got no answer).
/// Afterwards every accepted request is final; each signed one has exactly one signature in all
/// the nodes' audit logs, equal to the one the API returns; a resubmission returns the stored
/// result.
#[test]
fn coordinator_killed_20_times_under_load_loses_nothing_and_signs_each_request_once() {
    let mut s = exclusive();
    let seed = seed();
    eprintln!("kill-loop seed {seed}");
    let mut rng = Lcg(seed);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<Vec<Value>>> = Arc::default();
    let client = s
        .cluster
        .api
        .with_token(Some(&s.cluster.layout.token().unwrap()));
    let worker = {
        let (stop, accepted) = (stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut unanswered: Option<Value> = None;
            while !stop.load(Ordering::SeqCst) {
                let body = unanswered.take().unwrap_or_else(|| {
                    n += 1;
                    transfer("kloop", KEY, 100_000 + n)
                });
                match client.post("/v1/sign-requests", &body) {
                    Ok((200 | 202, _)) => accepted.lock().unwrap().push(body),
                    Ok((st, v)) => panic!("unexpected answer {st}: {v}"),
                    Err(_) => unanswered = Some(body),
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            unanswered
        })
    };
    let kills = 20;
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.next_ms(200, 2500)));
        s.cluster.kill_coordinator();
        std::thread::sleep(Duration::from_millis(rng.next_ms(0, 300)));
        s.cluster.start_coordinator().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let last = worker.join().unwrap();
    let mut accepted = accepted.lock().unwrap().clone();
    if let Some(body) = last {
        let (st, v) = s.cluster.api.post("/v1/sign-requests", &body).unwrap();
        assert!(st == 200 || st == 202, "{v}");
        accepted.push(body);
    }
    let all = s.cluster.layout.nodes.clone();
    s.cluster
        .wait_connected(&all, Duration::from_secs(30))
        .unwrap();
    let mut signed = 0;
    // The backlog signs at about one request per second on two cores.
    let deadline = Instant::now() + Duration::from_secs(60 + 4 * accepted.len() as u64);
    for body in &accepted {
        let id = body["request_id"].as_str().unwrap();
        let left = deadline.saturating_duration_since(Instant::now());
        let r = s.cluster.wait_request(id, left).unwrap();
        match r.status {
            RequestStatus::Signed => {
                assert_valid_signature(&s, &r);
                signed += 1;
            }
            RequestStatus::Failed => assert!(r.error.is_some(), "failed without a reason: {r:?}"),
            other => panic!("{id} ended {other:?}"),
        }
        // Idempotent across restarts: the same body gets the stored result.
        let (st, again) = s.cluster.api.post("/v1/sign-requests", body).unwrap();
        assert_eq!(st, 200, "{again}");
        assert_eq!(
            again["signature"],
            serde_json::to_value(&r.signature).unwrap()
        );
    }
    eprintln!(
        "{kills} coordinator kills; {} requests accepted, {signed} signed",
        accepted.len()
    );
    assert!(accepted.len() >= 20, "the workload ran: {}", accepted.len());
    assert!(
        signed * 10 >= accepted.len() * 9,
        "{signed} of {} signed",
        accepted.len()
    );
    let by_node = node_signatures(&s);
    for body in &accepted {
        let id = body["request_id"].as_str().unwrap();
        let r = view(&s, id);
        let Some(sig) = r.signature else { continue };
        let distinct = by_node.get(id).cloned().unwrap_or_default();
        let api = (
            sig.r.trim_start_matches("0x").to_string(),
            sig.s.trim_start_matches("0x").to_string(),
        );
        assert_eq!(
            distinct,
            BTreeSet::from([api]),
            "{id}: exactly one signature exists"
        );
    }
}

fn check_node(s: &Shared, i: usize) -> Value {
    let nd = s.cluster.layout.dir.join(&s.cluster.layout.nodes[i]);
    let out = std::process::Command::new(&s.cluster.layout.exe)
        .args(["signer-node", "check", "--config"])
        .arg(nd.join("node.toml"))
        .arg("--passphrase-file")
        .arg(nd.join("passphrase"))
        .env_remove(signer_node::cli::PASSPHRASE_ENV)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "signer-node check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Row 28: node-1 is killed (SIGKILL) 12 times at random points while it signs, i.e. while it
/// writes reservations, session claims, signatures and ledger entries. After each kill,
/// `signer-node check` finds its store whole (every sealed record decrypts and parses, the
/// audit chain holds, the policy verifies, the ledger is contiguous and signed, and every stored
/// signature has its ledger entry); the node starts again, and every request ends signed.
#[test]
fn row_28_node_killed_in_a_loop_while_signing_keeps_a_consistent_store() {
    let mut s = exclusive();
    let seed = seed();
    eprintln!("node kill-loop seed {seed}");
    let mut rng = Lcg(seed);
    let mut ids = Vec::new();
    let kills = 12;
    for k in 0..kills {
        for j in 0..2 {
            let body = transfer("nloop", KEY, 200_000 + 2 * k + j);
            let (st, v) = s.cluster.api.post("/v1/sign-requests", &body).unwrap();
            assert_eq!(st, 202, "{v}");
            ids.push(body["request_id"].as_str().unwrap().to_string());
        }
        std::thread::sleep(Duration::from_millis(rng.next_ms(100, 2000)));
        s.cluster.kill_node(0).unwrap();
        let summary = check_node(&s, 0);
        assert_eq!(summary["node_id"], "node-1");
        assert!(summary["policy"]["version"].as_u64().is_some(), "{summary}");
        s.cluster.start_node_and_wait(0).unwrap();
    }
    for id in &ids {
        let r = s
            .cluster
            .wait_request(id, Duration::from_secs(180))
            .unwrap();
        assert_valid_signature(&s, &r);
    }
    s.cluster.kill_node(0).unwrap();
    let summary = check_node(&s, 0);
    s.cluster.start_node_and_wait(0).unwrap();
    eprintln!("{kills} node kills; final state: {summary}");
    assert!(
        summary["ledger"]["own_requests"].as_u64().unwrap_or(0) > 0,
        "{summary}"
    );
}

fn ready(url: &str) -> (u16, Value) {
    let resp = reqwest::blocking::get(format!("{url}/readyz")).unwrap();
    let st = resp.status().as_u16();
    (st, resp.json().unwrap_or(Value::Null))
}

/// SIGTERM: a signer node stopped mid-session exits cleanly (status 0) and the request is signed
/// anyway; a coordinator stopped mid-session exits cleanly and the request is signed after it
/// starts again. `/readyz` is honest throughout: a node without its coordinator is not ready.
#[test]
fn sigterm_stops_nodes_and_coordinator_cleanly_and_readiness_is_honest() {
    let mut s = exclusive();
    let url = s.cluster.node_health_url(0).unwrap();
    let (st, v) = ready(&url);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["checks"]["coordinator"], "connected");
    let (st, v) = s.cluster.api.get("/readyz").unwrap();
    assert_eq!(st, 200, "{v}");

    let body = transfer("term-node", KEY, 300_000);
    let id = body["request_id"].as_str().unwrap().to_string();
    if let Some(signers) = submit_until_signing(&s, &body) {
        let i = index_of(&s, &signers[0]);
        let status = s
            .cluster
            .terminate_node(i, Duration::from_secs(40))
            .unwrap();
        assert!(status.success(), "node exit status {status:?}");
        assert!(log_of(&s, &signers[0]).contains("signer node stopped"));
        let r = s
            .cluster
            .wait_request(&id, Duration::from_secs(120))
            .unwrap();
        assert_valid_signature(&s, &r);
        s.cluster.start_node_and_wait(i).unwrap();
    }

    let body = transfer("term-coord", KEY, 300_001);
    let id = body["request_id"].as_str().unwrap().to_string();
    submit_until_signing(&s, &body);
    let status = s
        .cluster
        .terminate_coordinator(Duration::from_secs(40))
        .unwrap();
    assert!(status.success(), "coordinator exit status {status:?}");
    assert!(log_of(&s, "coordinator").contains("coordinator stopped"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let (st, v) = ready(&url);
        if st == 503 || Instant::now() > deadline {
            assert_eq!(st, 503, "{v}");
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["checks"]["coordinator"], "disconnected", "{v}");
    assert_eq!(v["ready"], false);
    s.cluster.start_coordinator().unwrap();
    let all = s.cluster.layout.nodes.clone();
    s.cluster
        .wait_connected(&all, Duration::from_secs(30))
        .unwrap();
    let r = s
        .cluster
        .wait_request(&id, Duration::from_secs(120))
        .unwrap();
    assert_valid_signature(&s, &r);
    let (st, v) = ready(&url);
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.cluster.api.get("/readyz").unwrap();
    assert_eq!(st, 200, "{v}");
}
