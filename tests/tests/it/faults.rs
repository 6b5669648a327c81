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

/// Sessions blamed on `node` so far, whatever the code (the sum of its blame counters).
fn blame_of(text: &str, node: &str) -> f64 {
    let prefix = format!("custody_session_blame_total{{node=\"{node}\",");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn log_path(s: &Shared, name: &str) -> std::path::PathBuf {
    s.cluster.layout.dir.join(format!("logs/{name}.log"))
}

/// A process's whole log, as bytes (a line may be half written); a missing log fails the test
/// (it must exist once the process ran).
fn log_bytes(s: &Shared, name: &str) -> Vec<u8> {
    let path = log_path(s, name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Length of a log now: the baseline for [`log_since`] (logs are append-only and shared by
/// every test, so a test reads only what was written after its baseline).
fn log_len(s: &Shared, name: &str) -> usize {
    log_bytes(s, name).len()
}

/// What a log gained since `from` (a [`log_len`]), without terminal colour codes.
fn log_since(s: &Shared, name: &str, from: usize) -> String {
    let all = log_bytes(s, name);
    let new = all
        .get(from..)
        .unwrap_or_else(|| panic!("log {name} shrank below its baseline of {from} bytes"));
    strip_ansi(&String::from_utf8_lossy(new))
}

/// The coordinator's audit log (append-only; a missing file fails the test).
fn coordinator_audit(s: &Shared) -> String {
    let path = s.cluster.layout.dir.join("coordinator/audit.jsonl");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Removes ANSI escape sequences (`ESC [ … letter`), which the logs' field names carry.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number in the `field=N` of the first log line containing `message`, if any.
fn logged_count(log: &str, message: &str, field: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(message))?;
    let at = line.find(&format!(" {field}="))? + field.len() + 2;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
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
        let path = s.cluster.layout.dir.join(n).join("audit.jsonl");
        // A missing log would read as "no signatures": fail instead.
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let last = text.lines().count();
        for (k, line) in text.lines().enumerate() {
            let Ok(rec) = serde_json::from_str::<Value>(line) else {
                // Only the last line can be one being written right now.
                assert_eq!(k + 1, last, "{}: unparsable line {}", path.display(), k + 1);
                continue;
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
    // A kill can land after the session's last round (the victim then signed): that attempt
    // proves nothing, so another request is tried; the test fails if none is caught mid-round.
    let mut caught = None;
    for attempt in 1..=6 {
        // Baselines: the blame counter and the audit log are cumulative and shared.
        let (metrics_before, audit_before) = (metrics(&s), coordinator_audit(&s).len());
        let body = transfer("midround", KEY, 7000 + attempt);
        let id = body["request_id"].as_str().unwrap().to_string();
        let Some(signers) = submit_until_signing(&s, &body) else {
            continue; // it ended before it was seen signing; nothing was killed
        };
        std::thread::sleep(Duration::from_millis(150));
        let victim = signers[1].clone();
        let i = index_of(&s, &victim);
        s.cluster.kill_node(i).unwrap();
        let r = s
            .cluster
            .wait_request(&id, Duration::from_secs(120))
            .unwrap();
        assert_valid_signature(&s, &r);
        s.cluster.start_node_and_wait(i).unwrap();
        if !r.signers.contains(&victim) {
            caught = Some((victim, metrics_before, audit_before));
            break;
        }
        eprintln!("attempt {attempt}: {id} finished before the kill of {victim} landed");
    }
    let (victim, metrics_before, audit_before) =
        caught.expect("no kill landed mid-session in 6 attempts");
    let blamed =
        format!("custody_session_blame_total{{node=\"{victim}\",code=\"node.disconnected\"}}");
    let before = metric(&metrics_before, &blamed).unwrap_or(0.0);
    let m = metrics(&s);
    let after = metric(&m, &blamed);
    assert!(
        after.is_some_and(|a| a >= before + 1.0),
        "{blamed} went from {before} to {after:?}:\n{m}"
    );
    let audit = coordinator_audit(&s);
    assert!(
        audit[audit_before..]
            .lines()
            .any(|l| l.contains("\"session.blame\"")
                && l.contains(&format!("\"{victim}\""))
                && l.contains("node.disconnected")),
        "the coordinator audit names the blamed node in a new record"
    );
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
/// signatures off by one) signs with node-1, then with node-2. Each time the combined signature
/// fails verification on the honest node; the coordinator returns no signature and never
/// retries on its own. One node's report alone locks nothing (it could be lying: see
/// `hardening::one_node_reporting_signature_invalid_does_not_lock_the_key`); the second distinct
/// reporter (t = 2) locks the key, and the coordinator logs an error, counts the incident and
/// audits it. An operator unlocks the key.
#[test]
fn row_7_tampered_partial_signature_locks_the_key_until_an_operator_unlocks_it() {
    const INC: &str = "inc-key";
    let mut s = exclusive();
    // Baselines: logs, the audit log and the incident counter are cumulative and shared.
    let incidents_series = format!("custody_incidents_total{{key=\"{INC}\"}}");
    let incidents_before = metric(&metrics(&s), &incidents_series).unwrap_or(0.0);
    let (node3_log, coord_log) = (log_len(&s, "node-3"), log_len(&s, "coordinator"));
    let audit_before = coordinator_audit(&s).len();
    start_rogue(&mut s, &[]);
    s.cluster.kill_node(1).unwrap();
    let up = vec!["node-1".to_string(), "node-3".to_string()];
    s.cluster
        .wait_connected(&up, Duration::from_secs(30))
        .unwrap();

    let first = submit(&s, &transfer("tampered", INC, 1));
    assert_eq!(first.status, RequestStatus::Failed, "{first:?}");
    let (_, key) = s.cluster.api.get(&format!("/v1/keys/{INC}")).unwrap();
    assert!(
        key.get("locked").is_none_or(|l| l.is_null()),
        "one report: {key}"
    );

    // node-2 back, node-1 down: node-2 is the second distinct node to report.
    s.cluster.start_node(1).unwrap();
    s.cluster.kill_node(0).unwrap();
    let up = vec!["node-2".to_string(), "node-3".to_string()];
    s.cluster
        .wait_connected(&up, Duration::from_secs(30))
        .unwrap();
    let body = transfer("tampered", INC, 2);
    let id = body["request_id"].as_str().unwrap();
    let r = submit(&s, &body);
    for r in [&first, &r] {
        assert_eq!(r.status, RequestStatus::Failed, "{r:?}");
        assert_eq!(
            r.error.as_ref().map(|e| e.code.as_str()),
            Some("signature.invalid"),
            "{r:?}"
        );
        assert!(r.signature.is_none() && r.signed_tx.is_none(), "{r:?}");
    }
    assert!(
        log_since(&s, "node-3", node3_log).contains("tampered a round message"),
        "the rogue node-3 tampered in this test"
    );

    let (_, key) = s.cluster.api.get(&format!("/v1/keys/{INC}")).unwrap();
    assert_eq!(key["locked"]["code"], "signature.invalid", "{key}");
    assert_eq!(key["locked"]["request_id"], id, "{key}");
    assert_eq!(
        key["locked"]["reported_by"],
        serde_json::json!(["node-1", "node-2"]),
        "{key}"
    );
    let m = metrics(&s);
    assert_eq!(
        metric(&m, &incidents_series),
        Some(incidents_before + 1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, &format!("custody_key_locked{{key=\"{INC}\"}}")),
        Some(1.0),
        "{m}"
    );
    let incidents = log_since(&s, "coordinator", coord_log)
        .matches("SECURITY INCIDENT")
        .count();
    assert_eq!(incidents, 1, "one alert, no automatic retry");
    let audit = coordinator_audit(&s);
    assert!(
        audit[audit_before..]
            .lines()
            .any(|l| l.contains("\"incident.key_locked\"") && l.contains(id)),
        "a new incident record names {id}"
    );
    let (st, v) = s
        .cluster
        .api
        .post("/v1/sign-requests", &transfer("locked", INC, 3))
        .unwrap();
    assert_eq!((st, v["code"].as_str()), (423, Some("key.locked")), "{v}");

    // Replace the rogue node, bring node-1 back, and unlock.
    s.cluster.kill_node(2).unwrap();
    s.cluster.start_node(0).unwrap();
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
    let r = submit(&s, &transfer("unlocked", INC, 4));
    assert_eq!(r.status, RequestStatus::Signed, "{r:?}");
    let m = metrics(&s);
    assert_eq!(
        metric(&m, &format!("custody_key_locked{{key=\"{INC}\"}}")),
        Some(0.0)
    );
    // Still one incident at the end: the failed request was never retried on its own.
    assert_eq!(
        metric(&m, &incidents_series),
        Some(incidents_before + 1.0),
        "{m}"
    );
    assert_eq!(
        log_since(&s, "coordinator", coord_log)
            .matches("SECURITY INCIDENT")
            .count(),
        1
    );
    assert_eq!(view(&s, id).status, RequestStatus::Failed);
}

/// Tiny deterministic generator for kill points (the seed is printed; see [`seed`]).
pub(crate) struct Lcg(pub(crate) u64);
impl Lcg {
    pub(crate) fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

/// Environment variable that fixes the seed of a randomised test, to replay a failure.
pub(crate) const SEED_ENV: &str = "CUSTODY_TEST_SEED";

/// The seed of the randomised test `test` (its path in this binary, e.g. `faults::name`):
/// [`SEED_ENV`] when set, else fresh from the clock. Printed with the command that replays it.
pub(crate) fn seed(test: &str) -> u64 {
    let seed = match std::env::var(SEED_ENV) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV} must be a u64, got `{v}`")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7),
    };
    eprintln!(
        "{test}: seed {seed}; replay with {SEED_ENV}={seed} cargo test --release -p custody-tests --test it -- --exact {test}"
    );
    seed
}

/// Node log lines that say a session was aborted because the coordinator's link dropped: a
/// coordinator kill that landed mid-session leaves at least one.
fn link_lost_aborts(s: &Shared, from: &[usize]) -> usize {
    s.cluster
        .layout
        .nodes
        .iter()
        .zip(from)
        .map(|(n, f)| {
            log_since(s, n, *f)
                .lines()
                .filter(|l| l.contains("session aborted") && l.contains("coordinator link lost"))
                .count()
        })
        .sum()
}

/// Rows 9 and 10 at cluster level: the coordinator is killed (SIGKILL) 8 times (20 with
/// `CUSTODY_SOAK=1`) at random points
/// while a client keeps submitting (and resubmitting, under the same id, whatever got no answer).
/// Afterwards every accepted request is final; each signed one has exactly one signature in all
/// the nodes' audit logs, equal to the one the API returns; a resubmission returns the stored
/// result.
#[test]
fn coordinator_killed_in_a_loop_under_load_loses_nothing_and_signs_each_request_once() {
    let mut s = exclusive();
    let mut rng = Lcg(seed(
        "faults::coordinator_killed_in_a_loop_under_load_loses_nothing_and_signs_each_request_once",
    ));
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
    let kills = crate::common::rounds(8, 20);
    let mut mid_session = 0;
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.next_ms(200, 2500)));
        let logs: Vec<usize> = s
            .cluster
            .layout
            .nodes
            .iter()
            .map(|n| log_len(&s, n))
            .collect();
        s.cluster.kill_coordinator();
        std::thread::sleep(Duration::from_millis(rng.next_ms(0, 300)));
        s.cluster.start_coordinator().unwrap();
        // A node notices the lost link at once (the kill resets its connection) and aborts the
        // sessions that coordinator relayed; by the time the new one answers, that is logged.
        if link_lost_aborts(&s, &logs) > 0 {
            mid_session += 1;
        }
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
        "{kills} coordinator kills, {mid_session} of them mid-session; {} requests accepted, {signed} signed",
        accepted.len()
    );
    assert!(
        mid_session > 0,
        "no kill landed while a session ran: the loop tested only idle restarts"
    );
    assert!(
        accepted.len() >= kills,
        "the workload ran: {}",
        accepted.len()
    );
    assert!(
        signed * 10 >= accepted.len() * 9,
        "{signed} of {} signed",
        accepted.len()
    );
    let by_node = node_signatures(&s);
    for body in &accepted {
        let id = body["request_id"].as_str().unwrap();
        let r = view(&s, id);
        let distinct = by_node.get(id).cloned().unwrap_or_default();
        match r.signature {
            Some(sig) => {
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
            // Failed (checked above): never two different signatures for one request.
            None => assert!(distinct.len() <= 1, "{id} ({:?}): {distinct:?}", r.status),
        }
    }
}

fn check_node(s: &Shared, i: usize) -> Value {
    crate::common::node_check(&s.cluster, i)
}

/// Row 28: node-1 is killed (SIGKILL) 6 times (12 with `CUSTODY_SOAK=1`) at random points while it signs, i.e. while it
/// writes reservations, session claims, signatures and ledger entries. After each kill,
/// `signer-node check` finds its store whole (every sealed record decrypts and parses, the
/// audit chain holds, the policy verifies, the ledger is contiguous and signed, and every stored
/// signature has its ledger entry); the node starts again, and every request ends signed.
#[test]
fn row_28_node_killed_in_a_loop_while_signing_keeps_a_consistent_store() {
    let mut s = exclusive();
    let mut rng = Lcg(seed(
        "faults::row_28_node_killed_in_a_loop_while_signing_keeps_a_consistent_store",
    ));
    // Baseline: node-1's ledger already holds the requests of every earlier test.
    s.cluster.kill_node(0).unwrap();
    let own_before = check_node(&s, 0)["ledger"]["own_requests"]
        .as_u64()
        .expect("`signer-node check` reports own_requests");
    s.cluster.start_node_and_wait(0).unwrap();
    // A kill that lands while node-1 is in a session fails that session, and the coordinator
    // blames node-1 for it: the blame counters tell the mid-session kills apart.
    let mut mid_session = 0;
    let mut ids = Vec::new();
    let kills = crate::common::rounds(6, 12) as u64;
    for k in 0..kills {
        for j in 0..2 {
            let body = transfer("nloop", KEY, 200_000 + 2 * k + j);
            let (st, v) = s.cluster.api.post("/v1/sign-requests", &body).unwrap();
            assert_eq!(st, 202, "{v}");
            ids.push(body["request_id"].as_str().unwrap().to_string());
        }
        std::thread::sleep(Duration::from_millis(rng.next_ms(100, 2000)));
        let blamed_before = blame_of(&metrics(&s), "node-1");
        s.cluster.kill_node(0).unwrap();
        let summary = check_node(&s, 0);
        assert_eq!(summary["node_id"], "node-1");
        assert!(summary["policy"]["version"].as_u64().is_some(), "{summary}");
        s.cluster.start_node_and_wait(0).unwrap();
        if blame_of(&metrics(&s), "node-1") > blamed_before {
            mid_session += 1;
        }
    }
    let mut with_node1 = 0;
    for id in &ids {
        let r = s
            .cluster
            .wait_request(id, Duration::from_secs(180))
            .unwrap();
        assert_valid_signature(&s, &r);
        with_node1 += usize::from(r.signers.iter().any(|n| n == "node-1"));
    }
    // The coordinator prefers the pair holding presignatures, which may never include the node
    // it keeps killing. With node-3 stopped, node-1 must sign what follows, straight after its
    // last restart: the store the loop left behind signs.
    s.cluster.kill_node(2).unwrap();
    let after: Vec<String> = (0..2)
        .map(|j| {
            let body = transfer("nloop", KEY, 200_100 + j);
            let (st, v) = s.cluster.api.post("/v1/sign-requests", &body).unwrap();
            assert_eq!(st, 202, "{v}");
            body["request_id"].as_str().unwrap().to_string()
        })
        .collect();
    for id in &after {
        let r = s
            .cluster
            .wait_request(id, Duration::from_secs(180))
            .unwrap();
        assert_valid_signature(&s, &r);
        assert!(
            r.signers.iter().any(|n| n == "node-1"),
            "signed without node-1 while node-3 was down: {:?}",
            r.signers
        );
        with_node1 += 1;
    }
    s.cluster.start_node_and_wait(2).unwrap();
    s.cluster.kill_node(0).unwrap();
    let summary = check_node(&s, 0);
    s.cluster.start_node_and_wait(0).unwrap();
    eprintln!(
        "{kills} node kills, {mid_session} of them mid-session; node-1 signed {with_node1} of {} requests; final state: {summary}",
        ids.len() + after.len()
    );
    assert!(
        mid_session > 0,
        "no kill landed while node-1 was in a session: the loop tested only idle restarts"
    );
    let own_after = summary["ledger"]["own_requests"]
        .as_u64()
        .expect("`signer-node check` reports own_requests");
    // Every request node-1 ended up signing has its own ledger entry (a session it signed and
    // then lost to a kill may add more).
    assert!(with_node1 > 0, "node-1 signed none of the requests");
    assert!(
        own_after >= own_before + with_node1 as u64,
        "node-1's ledger went from {own_before} to {own_after} own requests, {with_node1} signed: {summary}"
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

    // A SIGTERM can land after the session ended: each part tries again with a new request
    // (bounded) until the stopped process's own log says a session was running at the stop.
    let mut caught = false;
    for attempt in 0..5 {
        let body = transfer("term-node", KEY, 300_000 + 2 * attempt);
        let id = body["request_id"].as_str().unwrap().to_string();
        let Some(signers) = submit_until_signing(&s, &body) else {
            continue; // it ended before it was seen signing
        };
        let i = index_of(&s, &signers[0]);
        let from = log_len(&s, &signers[0]);
        let status = s
            .cluster
            .terminate_node(i, Duration::from_secs(40))
            .unwrap();
        assert!(status.success(), "node exit status {status:?}");
        let stop_log = log_since(&s, &signers[0], from);
        assert!(stop_log.contains("signer node stopped"), "{stop_log}");
        let r = s
            .cluster
            .wait_request(&id, Duration::from_secs(120))
            .unwrap();
        assert_valid_signature(&s, &r);
        s.cluster.start_node_and_wait(i).unwrap();
        let running = logged_count(
            &stop_log,
            "stopping: letting running sessions finish",
            "running",
        );
        assert!(
            running.is_some(),
            "no stop line with `running=`: {stop_log}"
        );
        if running > Some(0) {
            caught = true;
            break;
        }
    }
    assert!(
        caught,
        "no node SIGTERM landed while its session ran (5 attempts)"
    );

    let mut caught = None;
    for attempt in 0..5 {
        let body = transfer("term-coord", KEY, 300_001 + 2 * attempt);
        let id = body["request_id"].as_str().unwrap().to_string();
        if submit_until_signing(&s, &body).is_none() {
            continue; // it ended before it was seen signing
        }
        let from = log_len(&s, "coordinator");
        let status = s
            .cluster
            .terminate_coordinator(Duration::from_secs(40))
            .unwrap();
        assert!(status.success(), "coordinator exit status {status:?}");
        let stop_log = log_since(&s, "coordinator", from);
        assert!(stop_log.contains("coordinator stopped"), "{stop_log}");
        let sessions = logged_count(
            &stop_log,
            "stopping: letting running sessions finish",
            "sessions",
        );
        assert!(
            sessions.is_some(),
            "no stop line with `sessions=`: {stop_log}"
        );
        if sessions > Some(0) {
            caught = Some(id);
            break;
        }
        // The session ended first: start again and sign it, then try another request.
        restart_coordinator_and_sign(&mut s, &id);
    }
    let id = caught.expect("no coordinator SIGTERM landed while a session ran (5 attempts)");
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
    restart_coordinator_and_sign(&mut s, &id);
    let (st, v) = ready(&url);
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.cluster.api.get("/readyz").unwrap();
    assert_eq!(st, 200, "{v}");
}

/// Starts the coordinator again, waits for every node, and checks that `id` gets signed.
fn restart_coordinator_and_sign(s: &mut Shared, id: &str) {
    s.cluster.start_coordinator().unwrap();
    let all = s.cluster.layout.nodes.clone();
    s.cluster
        .wait_connected(&all, Duration::from_secs(30))
        .unwrap();
    let r = s
        .cluster
        .wait_request(id, Duration::from_secs(120))
        .unwrap();
    assert_valid_signature(s, &r);
}
