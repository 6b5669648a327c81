//! Rows 11, 17, 20 and 25 of the adversarial matrix (`SECURITY-TESTS.md`), each against real
//! node processes: behind the real coordinator (rows 11 and 17), or moved to a rogue coordinator
//! that speaks the real node protocol (rows 20 and 25).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Child,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use custody_tests::{
    governance::{Governance, GATE_CHAIN, OFFICERS},
    rogue::Rogue,
    sample,
};
use proto::{
    api::{RequestStatus, SignRequestView},
    authz::VerdictKind,
    payload::SignPayload,
    wire::{
        self, CoordFrame, Envelope, EvaluateRequest, FrameError, NodeFrame, SessionFailure,
        SessionId, SessionKind, SessionOutput, SessionStart, MAX_FRAME,
    },
};
use serde_json::{json, Value};

use crate::{
    agreement::{run_sign, spawn_copy, Kill},
    common::{copy_node, exclusive, rid, scratch, shared, Shared, KEY},
};

const SEPOLIA: u64 = 11_155_111;
const GATE_KEY: &str = "gate-key";
/// The gate asset's time-lock in the test policy (tests/src/governance.rs): 20 s from 1000 wei.
const GATE_DELAY: u64 = 20;
const GATE_LOCKED_WEI: u128 = 1000;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn post(s: &Shared, body: &Value) -> String {
    let (st, v) = s.cluster.api.post("/v1/sign-requests", body).unwrap();
    assert_eq!(st, 202, "{v}");
    body["request_id"].as_str().unwrap().to_string()
}

fn final_view(s: &Shared, id: &str) -> SignRequestView {
    s.cluster.wait_request(id, Duration::from_secs(90)).unwrap()
}

/// An EIP-1559 transfer request of `wei` on `chain_id`.
fn eth_body(key: &str, chain_id: u64, nonce: u64, to: [u8; 20], wei: u128) -> Value {
    json!({"request_id": rid("rows"), "key_id": key, "chain": "ethereum",
        "unsigned_tx": sample::eth_tx_on(chain_id, nonce, to, wei, vec![])})
}

/// Every node denied with `code`, no node signed, and the rule named by `code` failed.
fn denied_everywhere(v: &SignRequestView, code: &str) {
    assert_eq!(v.status, RequestStatus::Denied, "{v:?}");
    assert_eq!(
        v.error.as_ref().map(|e| e.code.as_str()),
        Some(code),
        "{v:?}"
    );
    assert!(
        v.signature.is_none() && v.signatures.is_empty() && v.signed_tx.is_none(),
        "{v:?}"
    );
    assert!(v.signers.is_empty(), "no session may start: {v:?}");
    assert_eq!(v.verdicts.len(), 3, "{v:?}");
    let tag = code.strip_prefix("policy.").unwrap();
    for (node, x) in &v.verdicts {
        assert_eq!(x.kind, VerdictKind::Deny, "{node}: {x:?}");
        assert_eq!(x.code.as_deref(), Some(code), "{node}: {x:?}");
        let rule = x.rules.iter().find(|r| r.tag == tag);
        assert_eq!(
            rule.map(|r| r.verdict.as_str()),
            Some("fail"),
            "{node}: {x:?}"
        );
    }
}

fn signed(v: &SignRequestView) {
    assert_eq!(v.status, RequestStatus::Signed, "{v:?}");
    assert!(v.signature.is_some() && v.signed_tx.is_some(), "{v:?}");
    assert_eq!(v.signers.len(), 2, "{v:?}");
}

/// Row 11 (cross-chain replay): one EIP-1559 body (nonce, gas, destination, value, calldata)
/// is signed for Sepolia with `it-key`; the identical fields with Holesky's chain id, which
/// every node's `[scope]` admits, are denied by every node with `policy.scope.chain` (the
/// signed policy lists `it-key`'s assets on Sepolia only) and no session starts. Without the
/// policy binding the key to its chain, the second request would be signed like the first.
#[test]
fn row_11_the_same_eip1559_body_on_another_chain_is_denied_by_scope_chain() {
    let s = shared();
    let cfg = std::fs::read_to_string(s.cluster.layout.dir.join("node-1/node.toml")).unwrap();
    let scope = cfg
        .lines()
        .find(|l| l.starts_with("ethereum_chain_ids"))
        .unwrap();
    for chain in [SEPOLIA, GATE_CHAIN] {
        assert!(
            scope.contains(&chain.to_string()),
            "both chains are in the node's own scope, so only the policy can refuse: {scope}"
        );
    }
    let (nonce, to, wei) = (11, [0x4b; 20], 1_100);
    let home = eth_body(KEY, SEPOLIA, nonce, to, wei);
    let replay = eth_body(KEY, GATE_CHAIN, nonce, to, wei);
    assert_eq!(
        replay["unsigned_tx"],
        json!(sample::eth_tx_on(GATE_CHAIN, nonce, to, wei, vec![])),
    );
    let (a, b) = (post(&s, &home), post(&s, &replay));
    signed(&final_view(&s, &a));
    denied_everywhere(&final_view(&s, &b), "policy.scope.chain");
}

/// The policy version every node runs (they must agree).
fn live_version(s: &Shared) -> u64 {
    let (st, v) = s.cluster.api.get("/v1/nodes").unwrap();
    assert_eq!(st, 200, "{v}");
    let versions: Vec<u64> = s
        .cluster
        .layout
        .nodes
        .iter()
        .map(|n| {
            v["nodes"][n]["status"]["policy"]["version"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{v}");
    versions[0]
}

/// Signs `toml` with two officers, pushes it through the coordinator and checks that every
/// node runs it; returns its hash.
fn push_policy(s: &Shared, toml: &str) -> Result<String, String> {
    let gov = Governance::at(&s.cluster.layout.dir);
    let bundle = gov
        .bundle(toml, &OFFICERS[..2])
        .map_err(|e| e.to_string())?;
    let hash = bundle
        .policy()
        .map_err(|e| e.to_string())?
        .hash()
        .to_string();
    let body = serde_json::to_value(&bundle).map_err(|e| e.to_string())?;
    let (st, v) = s
        .cluster
        .api
        .post("/v1/policy", &body)
        .map_err(|e| e.to_string())?;
    let nodes = v["nodes"].as_object().cloned().unwrap_or_default();
    let runs = |n: &Value| n["policy"]["hash"] == json!(hash) && n["policy_error"].is_null();
    match st == 200 && nodes.len() == 3 && nodes.values().all(runs) {
        true => Ok(hash),
        false => Err(format!("policy push: {st} {v}")),
    }
}

/// Puts the shared cluster back on the standard test policy (at a higher version), also when
/// the test fails half-way: other tests need destinations without an allowlist.
struct Restore<'a> {
    s: &'a Shared,
    version: u64,
    done: bool,
}

impl Restore<'_> {
    fn now(mut self) -> String {
        self.done = true;
        let toml = Governance::at(&self.s.cluster.layout.dir)
            .policy_toml(self.version)
            .unwrap();
        push_policy(self.s, &toml).unwrap()
    }
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let gov = Governance::at(&self.s.cluster.layout.dir);
        let result = gov
            .policy_toml(self.version)
            .map_err(|e| e.to_string())
            .and_then(|t| push_policy(self.s, &t));
        if let Err(e) = result {
            eprintln!("row 17: could not restore the standard policy: {e}");
        }
    }
}

/// Row 17 (destination not allowed): officers sign a new policy version that requires the
/// allowlist and lists one Holesky address; the coordinator pushes it and every node runs it
/// (the verdicts name its hash). A small `gate-key` withdrawal to an unlisted address is then
/// denied by every node with `policy.dest.allow` naming that address, and no session starts;
/// the same withdrawal to the listed address is signed. The standard policy (no allowlist) is
/// pushed back afterwards, and the unlisted address signs again, so the denial was the rule's.
#[test]
fn row_17_dest_allow_on_the_live_policy_denies_an_unlisted_destination() {
    let s = exclusive();
    let gov = Governance::at(&s.cluster.layout.dir);
    let v0 = live_version(&s);
    let (listed, unlisted) = ([0xa1u8; 20], [0xb2u8; 20]);
    let open = gov.policy_toml(v0 + 1).unwrap();
    let strict = open.replace(
        "[destinations]\nrequire_allowlist = false\n",
        &format!(
            "[destinations]\nrequire_allowlist = true\n\n[[destinations.allow]]\nchain = \"holesky\"\naddress = \"0x{}\"\nlabel = \"row 17 cold storage\"\n",
            hex::encode(listed)
        ),
    );
    assert_ne!(strict, open, "the test policy changed shape");
    let restore = Restore {
        s: &s,
        version: v0 + 2,
        done: false,
    };
    let hash = push_policy(&s, &strict).unwrap();

    let (a, b) = (
        post(&s, &eth_body(GATE_KEY, GATE_CHAIN, 1, unlisted, 100)),
        post(&s, &eth_body(GATE_KEY, GATE_CHAIN, 2, listed, 100)),
    );
    let denied = final_view(&s, &a);
    denied_everywhere(&denied, "policy.dest.allow");
    for (node, x) in &denied.verdicts {
        assert_eq!(
            x.policy_hash.as_deref(),
            Some(hash.as_str()),
            "{node}: {x:?}"
        );
        let rule = x.rules.iter().find(|r| r.tag == "dest.allow").unwrap();
        assert!(
            rule.reason.contains(&hex::encode(unlisted)),
            "{node}: {rule:?}"
        );
    }
    let ok = final_view(&s, &b);
    signed(&ok);
    for (node, x) in &ok.verdicts {
        let rule = x.rules.iter().find(|r| r.tag == "dest.allow").unwrap();
        assert_eq!(rule.verdict, "pass", "{node}: {rule:?}");
    }

    restore.now();
    let again = post(&s, &eth_body(GATE_KEY, GATE_CHAIN, 3, unlisted, 100));
    signed(&final_view(&s, &again));
}

/// Copies node `i` into a scratch directory (restarting the real node), points the copy at
/// `port` on loopback with short protocol deadlines, and starts it.
fn copy_to(s: &mut Shared, i: usize, tag: &str, port: u16) -> (PathBuf, Child) {
    let dst = scratch(tag);
    copy_node(s, i, &dst);
    crate::common::point_at_rogue(&dst, port);
    let child = spawn_copy(&s.cluster.layout.exe, &dst);
    (dst, child)
}

fn log_count(dir: &Path, needle: &str) -> usize {
    std::fs::read_to_string(dir.join("node.log"))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// The node's own audit records of `kind` about `request_id` (any request when empty).
fn audit(dir: &Path, kind: &str, request_id: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(signer_node::AUDIT_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == kind)
        .filter(|r| request_id.is_empty() || r["data"]["request_id"] == request_id)
        .map(|r| r["data"].clone())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const PAIR: [&str; 2] = ["node-1", "node-2"];

/// Starts session `sid` signing `tx` (a `gate-key` transaction) as request `request_id`, with
/// no approvals, on both rogue nodes.
fn start_gate(rogue: &Rogue, sid: SessionId, request_id: &str, tx: &[u8]) {
    let parties: Vec<String> = PAIR.iter().map(|p| p.to_string()).collect();
    rogue.route(sid, parties.clone());
    let start = SessionStart {
        epoch: 0,
        session_id: sid,
        key_id: GATE_KEY.into(),
        parties: parties.clone(),
        kind: SessionKind::Sign {
            request_id: request_id.into(),
            payload: SignPayload::EthTx(tx.to_vec()),
            part: 0,
            approvals: vec![],
            presignature: None,
            account: None,
        },
    };
    for p in PAIR {
        assert!(
            rogue.send(p, CoordFrame::Start(start.clone())),
            "{p} linked"
        );
    }
}

type Outcome = Result<SessionOutput, SessionFailure>;

/// Both nodes' reports for `sid` (reports of other sessions are skipped).
fn outcomes(rogue: &Rogue, sid: SessionId) -> BTreeMap<String, Outcome> {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut out = BTreeMap::new();
    while out.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (node, rsid, r) = rogue.next_report(left).expect("a report from each node");
        if rsid == sid {
            out.insert(node, r);
        }
    }
    out
}

/// Envelopes the nodes sent in session `sid`, as `(sender index, seq)`.
fn sent_in(rogue: &Rogue, sid: SessionId) -> Vec<(u16, u32)> {
    rogue
        .captured()
        .iter()
        .filter(|e| e.session_id == sid)
        .map(|e| (e.from, e.seq))
        .collect()
}

fn gate_tx(nonce: u64, wei: u128) -> Vec<u8> {
    let hex_tx = sample::eth_tx_on(GATE_CHAIN, nonce, [0x20; 20], wei, vec![]);
    hex::decode(hex_tx.trim_start_matches("0x")).unwrap()
}

/// Row 20 (clock skew, forged timestamp), against a rogue coordinator driving copies of node-1
/// and node-2. No frame of the node protocol carries a coordinator time, so a coordinator can
/// only choose *when* it asks, or fake a request's age by reusing an id the nodes saw long ago.
/// The copies run the test policy with the `gate` time-lock (20 s from 1000 wei) but without its
/// approval tier (officer-signed, relayed by the rogue), so that time is the only condition.
/// - Asked to sign a time-locked request at once, both nodes refuse (`policy.timelock.tier`),
///   send no MPC message, and their own audit logs show `not_before = first_seen + 20` with
///   `first_seen` read from their own clocks.
/// - Node-1's clock then jumps a day ahead: it allows, but node-2 still refuses and sends
///   nothing, so no signature exists (one fooled clock of t = 2 is not enough).
/// - After the delay, an id first seen 20 s earlier for a small transfer, reused for the
///   time-locked one, is refused by both (`request.conflict`), while the real request signs.
#[test]
fn row_20_rogue_coordinator_cannot_release_a_timelocked_request_early() {
    let mut s = exclusive();
    let gov = Governance::at(&s.cluster.layout.dir);
    let v0 = live_version(&s);
    let rogue = Rogue::start(&s.cluster.layout.dir.join("pki")).unwrap();
    let mut kids = Kill(vec![]);
    let mut dirs = Vec::new();
    for (i, id) in PAIR.into_iter().enumerate() {
        let (dir, child) = copy_to(&mut s, i, &format!("row20-{id}"), rogue.port);
        kids.0.push(child);
        dirs.push(dir);
    }
    rogue.wait_nodes(&PAIR, Duration::from_secs(30)).unwrap();

    let standard = gov.policy_toml(v0 + 1).unwrap();
    let toml = standard.replace(
        "[[assets.gate.approval]]\nat_or_above = 500\nrequire = { ops = 2 }\n",
        "",
    );
    assert_ne!(toml, standard, "the test policy changed shape");
    assert!(toml.contains(&format!(
        "[[assets.gate.timelock]]\nat_or_above = {GATE_LOCKED_WEI}\ndelay = \"{GATE_DELAY}s\""
    )));
    let bundle = gov.bundle(&toml, &OFFICERS[..2]).unwrap();
    let hash = bundle.policy().unwrap().hash().to_string();
    for p in PAIR {
        let bundle_json = bundle.to_json();
        assert!(rogue.send(p, CoordFrame::Policy { bundle_json }));
    }
    for d in &dirs {
        wait_until("the copies' policy", Duration::from_secs(20), || {
            audit(d, "policy.installed", "").iter().any(|r| {
                let outcome = r["outcome"].as_str().unwrap_or_default();
                outcome.starts_with("Activated") && outcome.contains(&hash)
            })
        });
    }

    // Asked at once: both defer by their own clocks, and nothing leaves either node.
    let locked = gate_tx(1, GATE_LOCKED_WEI);
    let a = rid("row20-a");
    let sid1: SessionId = rand::random();
    let asked = unix_now();
    start_gate(&rogue, sid1, &a, &locked);
    for (node, r) in outcomes(&rogue, sid1) {
        let f = r.expect_err("no signature before the time-lock");
        assert_eq!(f.code, "policy.timelock.tier", "{node}: {f:?}");
    }
    let answered = unix_now();
    assert_eq!(sent_in(&rogue, sid1), vec![], "no MPC message may leave");
    let mut first_seen = BTreeMap::new();
    for (node, d) in PAIR.iter().zip(&dirs) {
        let v = audit(d, "request.evaluated", &a)[0]["verdict"].clone();
        assert_eq!(v["kind"], "defer", "{node}: {v}");
        assert_eq!(v["policy_hash"], json!(hash), "{node}: {v}");
        let seen = v["first_seen"].as_u64().unwrap();
        assert!((asked..=answered).contains(&seen), "{node}: own clock: {v}");
        assert_eq!(
            v["not_before"].as_u64(),
            Some(seen + GATE_DELAY),
            "{node}: {v}"
        );
        first_seen.insert(*node, seen);
    }

    // The nodes first see id `b` with a small transfer (no time-lock).
    let b = rid("row20-b");
    for p in PAIR {
        let ask = EvaluateRequest {
            request_id: b.clone(),
            key_id: GATE_KEY.into(),
            payload: SignPayload::EthTx(gate_tx(2, 100)),
            approvals: vec![],
            account: None,
        };
        assert!(rogue.send(p, CoordFrame::Evaluate(ask)));
    }
    for d in &dirs {
        wait_until("the evaluation of `b`", Duration::from_secs(10), || {
            !audit(d, "request.evaluated", &b).is_empty()
        });
    }

    // Node-1's clock jumps a day ahead (its first sighting of `a` is stored already).
    let connects = log_count(&dirs[0], "connected to coordinator");
    let _ = kids.0[0].kill();
    let _ = kids.0[0].wait();
    let cfg = std::fs::read_to_string(dirs[0].join("node.toml")).unwrap();
    std::fs::write(
        dirs[0].join("node.toml"),
        format!("clock_offset_secs = 86400\n{cfg}"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    kids.0[0] = spawn_copy(&s.cluster.layout.exe, &dirs[0]);
    wait_until("node-1 to reconnect", Duration::from_secs(30), || {
        log_count(&dirs[0], "connected to coordinator") > connects
    });
    rogue.wait_nodes(&PAIR, Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let sid2: SessionId = rand::random();
    assert!(
        unix_now() + 3 < first_seen["node-2"] + GATE_DELAY,
        "test too slow to prove anything"
    );
    start_gate(&rogue, sid2, &a, &locked);
    let got = outcomes(&rogue, sid2);
    let f = got["node-2"]
        .as_ref()
        .expect_err("node-2's clock is honest");
    assert_eq!(f.code, "policy.timelock.tier", "{f:?}");
    assert!(got["node-1"].is_err(), "one clock of t=2 signed: {got:?}");
    let skewed = audit(&dirs[0], "request.evaluated", &a);
    let v = &skewed.last().unwrap()["verdict"];
    assert_eq!(v["kind"], "allow", "node-1's clock is a day ahead: {v}");
    let honest = audit(&dirs[1], "request.evaluated", &a);
    let v = &honest.last().unwrap()["verdict"];
    let not_before = first_seen["node-2"] + GATE_DELAY;
    assert_eq!(v["not_before"].as_u64(), Some(not_before), "{v}");
    assert!(
        sent_in(&rogue, sid2).iter().all(|(from, _)| *from == 0),
        "node-2 sent nothing: {:?}",
        sent_in(&rogue, sid2)
    );

    // After the delay: the aged id cannot carry the locked transfer; the real request signs.
    let release = first_seen.values().max().unwrap() + GATE_DELAY + 1;
    wait_until("the end of the time-lock", Duration::from_secs(60), || {
        unix_now() >= release
    });
    let sid3: SessionId = rand::random();
    start_gate(&rogue, sid3, &b, &locked);
    for (node, r) in outcomes(&rogue, sid3) {
        let f = r.expect_err("an aged id does not age another payload");
        assert_eq!(f.code, "request.conflict", "{node}: {f:?}");
    }
    assert_eq!(sent_in(&rogue, sid3), vec![]);
    let sid4: SessionId = rand::random();
    start_gate(&rogue, sid4, &a, &locked);
    let sigs: Vec<_> = outcomes(&rogue, sid4)
        .into_iter()
        .map(|(node, r)| match r {
            Ok(SessionOutput::Signature(sig)) => sig,
            other => panic!("{node}: after the delay: {other:?}"),
        })
        .collect();
    assert_eq!(sigs[0], sigs[1]);
}

/// VmRSS or VmHWM of a process, in KiB.
pub(crate) fn vm_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A node's peak RSS may grow by less than this while it is sent the 10 MiB envelope: half of
/// the envelope, so a node that buffered it (let alone decoded it) fails the test.
const RSS_BOUND_KIB: u64 = 5 * 1024;

/// One frame holding a `CoordFrame::Envelope` with a 10 MiB payload, CBOR as `wire` encodes it
/// (`wire::encode` itself refuses to build it).
fn ten_mib_envelope() -> Vec<u8> {
    let env = Envelope {
        session_id: [0x25; 32],
        from: 0,
        to: Some(1),
        seq: 1,
        payload: vec![0xee; 10 * 1024 * 1024],
        signature: vec![0x5a; 64],
    };
    let frame = CoordFrame::Envelope(env);
    assert!(matches!(wire::encode(&frame), Err(FrameError::TooLarge(_))));
    let mut body = Vec::new();
    ciborium::into_writer(&frame, &mut body).unwrap();
    assert!(body.len() > 10 * 1024 * 1024);
    body
}

/// What the node did with the oversized frame: whether all of it was written, whether the
/// node closed the link afterwards.
async fn send_oversized<S>(tls: &mut S, body: &[u8]) -> (bool, bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let send = async {
        tls.write_u32(body.len() as u32).await?;
        for chunk in body.chunks(64 * 1024) {
            tls.write_all(chunk).await?;
        }
        tls.flush().await
    };
    let all_written = matches!(
        tokio::time::timeout(Duration::from_secs(20), send).await,
        Ok(Ok(()))
    );
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (all_written, true),
            Ok(Ok(_)) => continue,
            Err(_) => return (all_written, false),
        }
    }
}

/// Row 25 (oversized input), on the node link: a coordinator-side peer with the coordinator's
/// certificate welcomes a copy of node-1, then sends it one 10 MiB envelope frame. The node
/// refuses the length prefix with `FrameError::TooLarge` (logged with the exact length), drops
/// the link, and its RSS, peak included (`VmHWM` reset through `clear_refs` just before, and
/// sampled during the transfer), grows by less than 5 MiB. The node then reconnects (the peer
/// now forwards to a rogue coordinator) and, in the same process, signs a valid request with a
/// copy of node-2.
#[test]
fn row_25_a_10_mib_envelope_is_refused_before_allocation_and_memory_stays_bounded() {
    let mut s = exclusive();
    let pki = s.cluster.layout.dir.join("pki");
    let rogue = Rogue::start(&pki).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let front = listener.local_addr().unwrap().port();
    let (dir1, c1) = copy_to(&mut s, 0, "row25-node-1", front);
    let (_dir2, c2) = copy_to(&mut s, 1, "row25-node-2", rogue.port);
    let mut kids = Kill(vec![c1, c2]);
    let pid = kids.0[0].id();
    let tls_cfg = runtime::tls::node_server_config(
        &pki.join("ca.pem"),
        &pki.join("coordinator.pem"),
        &pki.join("coordinator.key"),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_cfg));
    let mut tls = rt.block_on(async {
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("node-1 dials")
            .unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let hello: NodeFrame = runtime::frame::read_frame(&mut tls).await.unwrap();
        assert!(
            matches!(&hello, NodeFrame::Hello { node_id, .. } if node_id == "node-1"),
            "{hello:?}"
        );
        runtime::frame::write_frame(&mut tls, &CoordFrame::Welcome)
            .await
            .unwrap();
        tls
    });
    let body = ten_mib_envelope();
    std::thread::sleep(Duration::from_secs(1));

    let before = vm_kib(pid, "VmRSS").expect("node-1's VmRSS is readable");
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset node-1's VmHWM");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::SeqCst) {
                peak = peak.max(vm_kib(pid, "VmRSS").expect("node-1's VmRSS is readable"));
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        })
    };
    let (all_written, closed) = rt.block_on(send_oversized(&mut tls, &body));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let sampled = sampler.join().unwrap();
    let hwm = vm_kib(pid, "VmHWM").expect("node-1's VmHWM is readable");
    let peak = hwm.max(sampled);
    eprintln!(
        "row 25: node-1 RSS {before} KiB before, peak {peak} KiB (VmHWM {hwm}, sampled {sampled}); frame of {} bytes, all written: {all_written}",
        body.len()
    );
    assert!(
        closed,
        "node-1 must drop a link that sends an oversized frame"
    );
    assert!(
        peak.saturating_sub(before) < RSS_BOUND_KIB,
        "node-1's RSS grew from {before} KiB to {peak} KiB for a {} byte frame",
        body.len()
    );
    let refusal = format!(
        "frame of {} bytes exceeds the {MAX_FRAME}-byte limit",
        body.len()
    );
    wait_until("node-1 to log the refusal", Duration::from_secs(10), || {
        log_count(&dir1, &refusal) > 0
    });
    drop(tls);

    // From now on the peer forwards node-1's connections to the rogue coordinator.
    let to = rogue.port;
    rt.spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    rogue.wait_nodes(&PAIR, Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let reports = run_sign(&rogue, &rid("row25-after"), 25);
    assert!(reports.iter().all(Result::is_ok), "{reports:?}");
    assert!(
        kids.0[0].try_wait().unwrap().is_none(),
        "the same node-1 process signed"
    );
}
