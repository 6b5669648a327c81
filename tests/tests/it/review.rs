//! Review findings 2, 3 and 6 (rows 47, 48 and 50 of the adversarial matrix,
//! `SECURITY-TESTS.md`), each against real node processes: copies of the cluster's nodes moved
//! to a rogue coordinator (`custody_tests::rogue`) that speaks the real node protocol, so that
//! the test alone decides what each node is shown, and when. The copies are separate processes
//! on separate stores: once they are made, the shared cluster is released to other tests.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use custody_tests::{
    governance::{Governance, APPROVERS, GATE_CHAIN, GUARDIAN, OFFICERS, VELOCITY_CHAIN},
    rogue::Rogue,
    sample,
};
use ed25519_dalek::Signer;
use proto::{
    api::{AccountView, KeyInfo},
    authz::{
        Approval, Freeze, LedgerEntry, NodeStatus, NodeVerdict, OfficerSignature, Order, Unfreeze,
        VerdictKind, Veto,
    },
    payload::SignPayload,
    wire::{
        CoordFrame, EvaluateRequest, SessionFailure, SessionId, SessionKind, SessionOutput,
        SessionStart,
    },
};
use serde_json::json;
use signer_node::identity::{NodeIdentity, IDENTITY_RECORD};

use crate::{
    agreement::{spawn_copy, Kill},
    common::{copy_node, exclusive, rid, scratch, Shared},
};

const GATE_KEY: &str = "gate-key";
const ACCT_KEY: &str = "acct-key";
/// The gate asset's time-lock in the test policy (tests/src/governance.rs): 20 s from 1000 wei,
/// and two `ops` approvals from 500 wei.
const GATE_DELAY: u64 = 20;
/// The `vel` asset's window (Hoodi): at most 30 wei per 24 h, per key or account ledger.
const VEL_MAX: u128 = 30;
const PAIR: [&str; 2] = ["node-1", "node-2"];
const N1: &str = "node-1";
const N3: &str = "node-3";

pub(crate) type Outcome = Result<SessionOutput, SessionFailure>;

/// Node copies connected to a rogue coordinator; the copies are killed first on drop.
pub(crate) struct Lab {
    pub(crate) kids: Kill,
    pub(crate) rogue: Rogue,
    exe: PathBuf,
}

impl Lab {
    /// Copies nodes `which` (indexes) into scratch directories pointed at a new rogue, with
    /// short join deadlines and `limits` added to `[limits]`. Nothing is started.
    pub(crate) fn new(
        s: &mut Shared,
        tag: &str,
        which: &[usize],
        limits: &str,
    ) -> (Self, Vec<PathBuf>) {
        let rogue = Rogue::start(&s.cluster.layout.dir.join("pki")).unwrap();
        let mut dirs = Vec::new();
        for &i in which {
            let dst = scratch(&format!("{tag}-{}", s.cluster.layout.nodes[i]));
            dirs.push(copy_to_rogue(s, i, &dst, (rogue.port, limits)));
        }
        let lab = Lab {
            kids: Kill(vec![]),
            rogue,
            exe: s.cluster.layout.exe.clone(),
        };
        (lab, dirs)
    }

    /// Starts the copy in `dir` and waits until it connected and reported its status.
    pub(crate) fn start(&mut self, dir: &Path, node: &str) {
        self.kids.0.push(spawn_copy(&self.exe, dir));
        self.rogue
            .wait_nodes(&[node], Duration::from_secs(30))
            .unwrap();
        status_where(&self.rogue, node, "its first status", |_| true);
    }
}

/// Copies node `i` into `dst`, pointed at the rogue on `port`, with short join deadlines and
/// `limits` added to `[limits]`; returns `dst`.
pub(crate) fn copy_to_rogue(
    s: &mut Shared,
    i: usize,
    dst: &Path,
    (port, limits): (u16, &str),
) -> PathBuf {
    copy_node(s, i, dst);
    // Signing runs the full protocol while other tests load the two cores: generous round
    // deadlines, a short join deadline (a lone party gives up quickly).
    crate::common::point_at(
        dst,
        port,
        &format!(
            "join_timeout_secs = 8\nprotocol_timeout_secs = 60\nround_timeout_secs = 20\n{limits}"
        ),
    );
    dst.to_path_buf()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits (bounded) until `ok` holds; panics naming `what` otherwise.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until `node`'s latest reported status satisfies `pred`, and returns it.
pub(crate) fn status_where(
    rogue: &Rogue,
    node: &str,
    what: &str,
    pred: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    wait_status(rogue, node, (what, false), pred)
}

/// [`status_where`]; with `poke`, for a change that sends no status by itself (a refused
/// ledger entry), the node is sent an invalid veto every second, which it answers with its
/// status.
fn wait_status(
    rogue: &Rogue,
    node: &str,
    (what, poke): (&str, bool),
    pred: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next_poke = Instant::now();
    loop {
        if let Some(st) = rogue.status(node).filter(|st| pred(st)) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{node}: timed out waiting for {what}; last status {:?}",
            rogue.status(node)
        );
        if poke && Instant::now() >= next_poke {
            let veto = Veto {
                request_id: "review-status-poke".into(),
                guardian: [0; 32],
                signature: [0; 64],
            };
            assert!(rogue.send(node, CoordFrame::Order(Order::Veto(veto))));
            next_poke += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What `node` reports about `peer`, if it reported it.
fn suspect(st: &NodeStatus, peer: &str) -> String {
    st.suspects.get(peer).cloned().unwrap_or_default()
}

fn head(st: &NodeStatus, origin: &str) -> u64 {
    st.ledger_heads.get(origin).copied().unwrap_or(0)
}

/// An EIP-1559 transfer of `wei` on `chain`, with a random nonce (each transaction is new, so
/// no node has it reserved under another request id).
pub(crate) fn transfer(chain: u64, wei: u128) -> SignPayload {
    let nonce = u64::from(rand::random::<u32>());
    let tx = sample::eth_tx_on(chain, nonce, [0xe6; 20], wei, vec![]);
    SignPayload::EthTx(hex::decode(tx.trim_start_matches("0x")).unwrap())
}

/// The rogue asks `node` "would you sign this now?" and returns the answer.
fn evaluate(
    rogue: &Rogue,
    node: &str,
    (key_id, request_id): (&str, &str),
    payload: &SignPayload,
    approvals: &[Approval],
    account: Option<&str>,
) -> NodeVerdict {
    let mine = |v: &(String, String, NodeVerdict)| v.0 == node && v.1 == request_id;
    let before = rogue.verdicts().iter().filter(|v| mine(v)).count();
    let ask = EvaluateRequest {
        request_id: request_id.into(),
        key_id: key_id.into(),
        payload: payload.clone(),
        approvals: approvals.to_vec(),
        account: account.map(str::to_string),
    };
    assert!(rogue.send(node, CoordFrame::Evaluate(ask)), "{node} linked");
    let mut answer = None;
    wait_until(
        &format!("{node}'s verdict on `{request_id}`"),
        Duration::from_secs(20),
        || {
            answer = rogue.verdicts().into_iter().filter(mine).nth(before);
            answer.is_some()
        },
    );
    answer.unwrap().2
}

/// Starts a signing session of `parties` (index order), sends its start to `ask` only, and
/// returns the session id and each asked node's report.
pub(crate) fn sign(
    rogue: &Rogue,
    (parties, ask): (&[&str], &[&str]),
    (key_id, request_id): (&str, &str),
    payload: &SignPayload,
    approvals: &[Approval],
    account: Option<&str>,
) -> (SessionId, BTreeMap<String, Outcome>) {
    let sid: SessionId = rand::random();
    let parties: Vec<String> = parties.iter().map(|p| p.to_string()).collect();
    rogue.route(sid, parties.clone());
    let start = SessionStart {
        epoch: 0,
        session_id: sid,
        key_id: key_id.into(),
        parties,
        kind: SessionKind::Sign {
            request_id: request_id.into(),
            payload: payload.clone(),
            part: 0,
            approvals: approvals.to_vec(),
            presignature: None,
            account: account.map(str::to_string),
        },
    };
    for node in ask {
        assert!(
            rogue.send(node, CoordFrame::Start(start.clone())),
            "{node} linked"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut out = BTreeMap::new();
    while out.len() < ask.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (node, rsid, r) = rogue
            .next_report(left)
            .unwrap_or_else(|| panic!("no report for `{request_id}` from every node: {out:?}"));
        if rsid == sid {
            out.insert(node, r);
        }
    }
    (sid, out)
}

/// Both reports are signatures, the same one.
fn both_signed(out: &BTreeMap<String, Outcome>, what: &str) {
    let sigs: Vec<_> = out
        .values()
        .map(|r| match r {
            Ok(SessionOutput::Signature(sig)) => *sig,
            other => panic!("{what}: expected a signature, got {other:?} (all: {out:?})"),
        })
        .collect();
    assert_eq!(sigs.len(), 2, "{what}: {out:?}");
    assert_eq!(sigs[0], sigs[1], "{what}: one signature");
}

/// Every report is a failure with `code`, and no MPC message of `sid` left any node.
fn all_refused(rogue: &Rogue, sid: SessionId, out: &BTreeMap<String, Outcome>, code: &str) {
    for (node, r) in out {
        let f = r.as_ref().expect_err("no signature may come out");
        assert_eq!(f.code, code, "{node}: {f:?}");
    }
    let sent: Vec<_> = rogue
        .captured()
        .into_iter()
        .filter(|e| e.session_id == sid)
        .map(|e| (e.from, e.seq))
        .collect();
    assert_eq!(sent, vec![], "no MPC message may leave a refusing node");
}

fn key_pk(s: &Shared, key_id: &str) -> [u8; 33] {
    let (st, v) = s.cluster.api.get(&format!("/v1/keys/{key_id}")).unwrap();
    assert_eq!(st, 200, "{v}");
    let info: KeyInfo = serde_json::from_value(v).unwrap();
    hex::decode(info.public_key.unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// The hash of the policy `node` runs (what approvals are bound to).
fn policy_hash(rogue: &Rogue, node: &str) -> policy::PolicyHash {
    let st = status_where(rogue, node, "a policy", |st| st.policy.is_some());
    let mut out = [0u8; 32];
    hex::decode_to_slice(st.policy.unwrap().hash, &mut out).unwrap();
    policy::PolicyHash(out)
}

/// The `ops` quorum's approvals (two approvers) of `payload` under `request_id`, valid three
/// days.
fn approvals(
    gov: &Governance,
    (key_id, pk): (&str, &[u8; 33]),
    request_id: &str,
    payload: &SignPayload,
    policy: &policy::PolicyHash,
) -> Vec<Approval> {
    let intent = payload.decode(pk).unwrap().intent(key_id).unwrap();
    let payload_hash = payload.payload_hash();
    let subject = policy::ApprovalSubject {
        request_id,
        payload_hash: &payload_hash,
    };
    let expires = unix_now() + 3 * 86_400;
    APPROVERS[..2]
        .iter()
        .map(|w| policy::sign_approval(&gov.key(w).unwrap(), &intent, subject, policy, expires))
        .collect()
}

/// Creates an account of `acct-key` through the real cluster (so the copies made after it
/// hold it) and waits until all three nodes registered it. Each test's account has a fresh
/// velocity ledger, whatever other tests spent.
fn fresh_account(s: &Shared, tag: &str) -> String {
    let name = rid(tag);
    let (st, v) = s
        .cluster
        .api
        .post(
            &format!("/v1/keys/{ACCT_KEY}/accounts"),
            &json!({ "name": name }),
        )
        .unwrap();
    assert!(st == 201 || st == 200, "{st} {v}");
    wait_until(
        "every node to register the account",
        Duration::from_secs(30),
        || {
            let (_, v) = s
                .cluster
                .api
                .get(&format!("/v1/keys/{ACCT_KEY}/accounts/{name}"))
                .unwrap();
            serde_json::from_value::<AccountView>(v).is_ok_and(|a| a.nodes.len() == 3)
        },
    );
    name
}

fn send_all(rogue: &Rogue, nodes: &[&str], frame: &CoordFrame) {
    for n in nodes {
        assert!(rogue.send(n, frame.clone()), "{n} linked");
    }
}

/// The guardian's freeze of `key_id` in `epoch`, as the rogue relays it.
pub(crate) fn freeze(gov: &Governance, key_id: &str, epoch: u64) -> CoordFrame {
    let guardian = gov.key(GUARDIAN).unwrap();
    let digest = proto::authz::freeze_digest(key_id, epoch);
    CoordFrame::Order(Order::Freeze(Freeze {
        key_id: key_id.into(),
        epoch,
        guardian: guardian.verifying_key().to_bytes(),
        signature: guardian.sign(&digest).to_bytes(),
    }))
}

/// Two officers' unfreeze of `key_id`, ending `epoch`.
fn unfreeze(gov: &Governance, key_id: &str, epoch: u64) -> CoordFrame {
    let digest = proto::authz::unfreeze_digest(key_id, epoch);
    let signatures = OFFICERS[..2]
        .iter()
        .map(|o| {
            let k = gov.key(o).unwrap();
            OfficerSignature {
                officer: k.verifying_key().to_bytes(),
                signature: k.sign(&digest).to_bytes(),
            }
        })
        .collect();
    CoordFrame::Order(Order::Unfreeze(Unfreeze {
        key_id: key_id.into(),
        epoch,
        signatures,
    }))
}

/// Finding 6, matrix row 50 (time-lock aged while denied). On copies of node-1 and node-2 at a
/// rogue coordinator, the guardian freezes `gate-key`; a 1000-wei request (time-lock tier:
/// 20 s; both approvals attached) is refused by both with `policy.freeze`. The rogue waits past
/// the delay, has the officer quorum unfreeze, and asks again: both still refuse with
/// `policy.timelock.tier`, no MPC message leaves, and each verdict shows the request first seen
/// after the unfreeze, `not_before = first_seen + 20`. After that time it signs. A node that
/// dated the request from the refused ask (the old code) signed at once after the unfreeze.
#[test]
fn time_lock_is_not_aged_while_denied() {
    let mut s = exclusive();
    let gov = Governance::at(&s.cluster.layout.dir);
    let pk = key_pk(&s, GATE_KEY);
    let (mut lab, dirs) = Lab::new(&mut s, "review-tl", &[0, 1], "");
    drop(s);
    for (d, n) in dirs.iter().zip(PAIR) {
        lab.start(d, n);
    }
    let rogue = &lab.rogue;
    let policy = policy_hash(rogue, N1);
    assert_eq!(policy_hash(rogue, "node-2").0, policy.0, "one policy");
    let epoch = rogue
        .status(N1)
        .unwrap()
        .freezes
        .get(GATE_KEY)
        .map_or(0, |f| f.epoch);

    send_all(rogue, &PAIR, &freeze(&gov, GATE_KEY, epoch));
    for n in PAIR {
        status_where(rogue, n, "the freeze", |st| {
            st.freezes.get(GATE_KEY).is_some_and(|f| f.frozen)
        });
    }

    let id = rid("review-tl");
    let payload = transfer(GATE_CHAIN, 1000);
    let a = approvals(&gov, (GATE_KEY, &pk), &id, &payload, &policy);
    let refused_at = unix_now();
    let (sid, out) = sign(rogue, (&PAIR, &PAIR), (GATE_KEY, &id), &payload, &a, None);
    all_refused(rogue, sid, &out, "policy.freeze");

    // Past the whole delay, counted from the refusal.
    wait_until(
        "the delay to pass since the refusal",
        Duration::from_secs(60),
        || unix_now() > refused_at + GATE_DELAY,
    );
    let unfrozen_at = unix_now();
    send_all(rogue, &PAIR, &unfreeze(&gov, GATE_KEY, epoch));
    for n in PAIR {
        status_where(rogue, n, "the unfreeze", |st| {
            st.freezes
                .get(GATE_KEY)
                .is_some_and(|f| !f.frozen && f.epoch == epoch + 1)
        });
    }

    let (sid, out) = sign(rogue, (&PAIR, &PAIR), (GATE_KEY, &id), &payload, &a, None);
    all_refused(rogue, sid, &out, "policy.timelock.tier");
    let mut not_before = 0;
    for n in PAIR {
        let v = evaluate(rogue, n, (GATE_KEY, &id), &payload, &a, None);
        assert_eq!(v.kind, VerdictKind::Defer, "{n}: {v:?}");
        assert_eq!(
            v.code.as_deref(),
            Some("policy.timelock.tier"),
            "{n}: {v:?}"
        );
        let seen = v.first_seen.unwrap();
        assert!(
            seen >= unfrozen_at && seen > refused_at + GATE_DELAY,
            "{n}: the delay runs from the first ask after the unfreeze ({unfrozen_at}), not \
             from the refusal ({refused_at}): {v:?}"
        );
        assert_eq!(v.not_before, Some(seen + GATE_DELAY), "{n}: {v:?}");
        not_before = not_before.max(seen + GATE_DELAY);
    }

    // The full delay after the unfreeze: then it signs.
    wait_until("the time-lock to end", Duration::from_secs(60), || {
        unix_now() > not_before
    });
    let (_, out) = sign(rogue, (&PAIR, &PAIR), (GATE_KEY, &id), &payload, &a, None);
    both_signed(&out, "after the delay");
}

/// Finding 3, matrix row 48 (one approval, many payouts). Copies of all three nodes are made
/// before anything is signed; node-1 and node-2 sign request `X` (a 600-wei `gate-key` payout,
/// two `ops` approvals) at a rogue coordinator. The copy of node-3, which never saw `X`, is
/// then asked for `X` with another payload (another nonce, the same intent) and the same
/// approvals: it does not count them (deferred, two approvals missing), where approvals bound
/// to the request id alone (the old code) released the second payout. Once the rogue relays
/// the pair's ledger entries for `X`, node-3 refuses `X` with the second payload with
/// `request.conflict`, even with approvals made for that payload.
///
/// Velocity counts each payload: node-3 reserves request `Z` (20 wei of a fresh account, at
/// most 30 per 24 h) for one payload while the pair signs `Z` for another. When the pair's
/// entries reach node-3, it reports the conflict (naming the entries' origins) and counts
/// both payloads, so 5 more wei are denied `policy.limit.velocity`; node-1, which only knows
/// its own payload, allows them. Counting per request id (the old code) allowed them on both.
#[test]
fn one_approval_never_releases_a_second_payload() {
    let mut s = exclusive();
    let gov = Governance::at(&s.cluster.layout.dir);
    let pk = key_pk(&s, GATE_KEY);
    let account = fresh_account(&s, "review-pay");
    let (mut lab, dirs) = Lab::new(&mut s, "review-pay", &[0, 1, 2], "");
    drop(s);
    for (d, n) in dirs.iter().zip(PAIR) {
        lab.start(d, n);
    }
    let rogue = &lab.rogue;
    let policy = policy_hash(rogue, N1);

    // The pair signs X with the first payload, approved.
    let x = rid("review-x");
    let (tx1, tx2) = (transfer(GATE_CHAIN, 600), transfer(GATE_CHAIN, 600));
    let a = approvals(&gov, (GATE_KEY, &pk), &x, &tx1, &policy);
    let (_, out) = sign(rogue, (&PAIR, &PAIR), (GATE_KEY, &x), &tx1, &a, None);
    both_signed(&out, "X with its approved payload");
    let mut entries = Vec::new();
    wait_until("both ledger entries for X", Duration::from_secs(20), || {
        entries = rogue
            .ledger_entries()
            .into_iter()
            .filter(|e| e.request_id == x)
            .collect();
        entries.len() == 2
    });
    for e in &entries {
        assert_eq!(e.payload_hash, Some(tx1.payload_hash()), "{e:?}");
    }

    // Node-3's copy connects only now: the rogue never relayed it the entries for X.
    lab.start(&dirs[2], N3);
    let rogue = &lab.rogue;
    assert_eq!(policy_hash(rogue, N3).0, policy.0, "one policy");
    let v = evaluate(rogue, N3, (GATE_KEY, &x), &tx2, &a, None);
    assert_eq!(v.kind, VerdictKind::Defer, "{v:?}");
    assert_eq!(v.code.as_deref(), Some("policy.approval.quorum"), "{v:?}");
    assert_eq!(
        v.missing_approvals.get("ops"),
        Some(&2),
        "not counted: {v:?}"
    );
    assert_eq!(
        v.payload_hash.as_deref(),
        Some(hex::encode(tx2.payload_hash()).as_str()),
        "{v:?}"
    );
    let (sid, out) = sign(rogue, (&[N3, N1], &[N3]), (GATE_KEY, &x), &tx2, &a, None);
    all_refused(rogue, sid, &out, "policy.approval.quorum");

    // The pair's entries reach node-3: X is bound to the first payload for good.
    for e in &entries {
        assert!(rogue.send(N3, CoordFrame::Ledger(e.clone())));
    }
    for e in &entries {
        status_where(rogue, N3, "the pair's entries for X stored", |st| {
            head(st, &e.origin) >= e.seq || st.ledger_gaps.contains(&e.origin)
        });
    }
    let fresh = approvals(&gov, (GATE_KEY, &pk), &x, &tx2, &policy);
    let both: Vec<Approval> = a.iter().chain(&fresh).cloned().collect();
    let v = evaluate(rogue, N3, (GATE_KEY, &x), &tx2, &both, None);
    assert_eq!(v.kind, VerdictKind::Deny, "{v:?}");
    assert_eq!(v.code.as_deref(), Some("request.conflict"), "{v:?}");
    let (sid, out) = sign(rogue, (&[N3, N1], &[N3]), (GATE_KEY, &x), &tx2, &both, None);
    all_refused(rogue, sid, &out, "request.conflict");
    // Node-3 had only evaluated X (no reservation), yet it recognised the conflict itself.
    let st = status_where(rogue, N3, "the conflict on X reported", |st| {
        suspect(st, "coordinator").contains(&x)
    });
    assert!(
        suspect(&st, "coordinator").starts_with("request.conflict"),
        "{:?}",
        st.suspects
    );

    // Velocity counts each payload. Node-3 reserves Z for p2 (alone, it then waits for a
    // partner's join in vain) ...
    let z = rid("review-z");
    let (p1, p2) = (transfer(VELOCITY_CHAIN, 20), transfer(VELOCITY_CHAIN, 20));
    let acct = Some(account.as_str());
    let (_, out) = sign(rogue, (&[N3, N1], &[N3]), (ACCT_KEY, &z), &p2, &[], acct);
    let f = out[N3].as_ref().expect_err("no partner joined");
    assert_eq!(
        f.code, "session.timeout",
        "allowed and reserved, then no join: {f:?}"
    );
    assert!(f.message.contains("no join message"), "{f:?}");
    // ... while the pair signs Z for p1; the rogue relays their entries to node-3 as well.
    let (_, out) = sign(rogue, (&PAIR, &PAIR), (ACCT_KEY, &z), &p1, &[], acct);
    both_signed(&out, "Z with the other payload");
    // Reported against the coordinator (it shows the payloads), naming the peer that signed.
    let st = status_where(rogue, N3, "the conflict on Z reported", |st| {
        let r = suspect(st, "coordinator");
        r.starts_with("request.conflict") && r.contains(&z)
    });
    let r = suspect(&st, "coordinator");
    assert!(PAIR.iter().any(|p| r.contains(p)), "{:?}", st.suspects);
    let w = rid("review-w");
    let five = transfer(VELOCITY_CHAIN, 5);
    let v = evaluate(rogue, N3, (ACCT_KEY, &w), &five, &[], acct);
    assert_eq!(v.kind, VerdictKind::Deny, "20 + 20 + 5 > {VEL_MAX}: {v:?}");
    assert_eq!(v.code.as_deref(), Some("policy.limit.velocity"), "{v:?}");
    let v = evaluate(rogue, N1, (ACCT_KEY, &w), &five, &[], acct);
    assert_eq!(
        v.kind,
        VerdictKind::Allow,
        "node-1 knows one payload: {v:?}"
    );
}

/// Loads a node's identity from its (stopped) store, as the node does at start.
pub(crate) fn identity_of(dir: &Path, node_id: &str) -> NodeIdentity {
    let pass = std::fs::read_to_string(dir.join("passphrase")).unwrap();
    let store =
        signer_node::store::Store::open(dir, &signer_node::secret::Passphrase::new(pass)).unwrap();
    let secret = store.get_secret(IDENTITY_RECORD).unwrap().unwrap();
    NodeIdentity::from_secret_bytes(node_id, secret.expose_secret()).unwrap()
}

/// A ledger entry signed by `by`.
fn forge(
    by: &NodeIdentity,
    seq: u64,
    (request_id, signed_at): (&str, u64),
    payload_hash: Option<[u8; 32]>,
) -> LedgerEntry {
    let mut e = LedgerEntry {
        origin: by.node_id.clone(),
        seq,
        request_id: request_id.into(),
        key_id: ACCT_KEY.into(),
        signed_at,
        moves: vec![],
        payload_hash,
        presig: None,
        part: None,
        audit: None,
        signature: [0; 64],
    };
    e.signature = by.sign(&e.signed_bytes());
    e
}

/// Delivers to each pair node the entry `make(base + k)` returns, `base` being that node's
/// head of node-3's ledger before the forgeries (the copies may hold different heads).
fn deliver(rogue: &Rogue, base: &BTreeMap<&str, u64>, k: u64, make: impl Fn(u64) -> LedgerEntry) {
    for n in PAIR {
        assert!(rogue.send(n, CoordFrame::Ledger(make(base[n] + k))));
    }
}

/// Finding 2, matrix row 47 (forged ledger entries). Copies of node-1 and node-2 at a rogue
/// coordinator (`ledger_gap_timeout_secs = 6`) sign request `Y`, 20 wei of a fresh account
/// (at most 30 wei per 24 h). Node-3's identity, loaded from its store as the node does,
/// signs what the rogue delivers:
/// - an entry five ahead of node-3's head: a gap, so a 5-wei request is refused `ledger.behind`
///   at first; after the timeout it signs, and node-3 is reported `ledger.gap_expired` (the old
///   code deferred for ever);
/// - entries for `Y` dated 0 with no movements, without payload hash (v1) and with `Y`'s: the
///   window keeps `Y`, so 20 more wei are still denied `policy.limit.velocity` (the old code
///   took the earliest time of any entry and allowed them); the v2 one has node-3 reported
///   `ledger.contradiction`;
/// - an entry with sequence `u64::MAX`: refused, node-3 reported `ledger.impossible_seq`, no
///   gap opens and a velocity-limited request signs at once (the old code stored it and waited
///   for the missing entries for ever).
#[test]
fn forged_ledger_entries_never_weaken_windows_and_never_block_signing() {
    const GAP_TIMEOUT: u64 = 6;
    let mut s = exclusive();
    let account = fresh_account(&s, "review-forge");
    let limits = format!("ledger_gap_timeout_secs = {GAP_TIMEOUT}\n");
    let (mut lab, dirs) = Lab::new(&mut s, "review-forge", &[0, 1, 2], &limits);
    drop(s);
    let node3 = identity_of(&dirs[2], N3);
    for (d, n) in dirs.iter().zip(PAIR) {
        lab.start(d, n);
    }
    let rogue = &lab.rogue;
    let acct = Some(account.as_str());
    let request = |tag: &str, wei: u128| (rid(tag), transfer(VELOCITY_CHAIN, wei));
    let sign_pair = |id: &str, payload: &SignPayload| {
        sign(rogue, (&PAIR, &PAIR), (ACCT_KEY, id), payload, &[], acct)
    };

    let (y, y_payload) = request("review-y", 20);
    let heads_before: Vec<u64> = PAIR
        .iter()
        .map(|n| rogue.status(n).unwrap().ledger_heads.values().sum())
        .collect();
    let (_, out) = sign_pair(&y, &y_payload);
    both_signed(&out, "Y");
    for (n, before) in PAIR.iter().zip(heads_before) {
        // Its own entry and its peer's: two more.
        status_where(rogue, n, "both entries for Y", |st| {
            st.ledger_heads.values().sum::<u64>() >= before + 2
        });
    }

    // A gap that nobody fills defers velocity-limited requests, then stops deferring.
    let base: BTreeMap<&str, u64> = PAIR
        .iter()
        .map(|n| (*n, head(&rogue.status(n).unwrap(), N3)))
        .collect();
    deliver(rogue, &base, 5, |seq| {
        forge(&node3, seq, ("review-gap", unix_now()), Some([7; 32]))
    });
    for n in PAIR {
        status_where(rogue, n, "the gap", |st| {
            st.ledger_gaps.contains(&N3.to_string())
        });
    }
    let opened = unix_now();
    let (small, small_payload) = request("review-small", 5);
    let (sid, out) = sign_pair(&small, &small_payload);
    assert!(
        unix_now() < opened + GAP_TIMEOUT,
        "too slow to see the gap defer anything"
    );
    all_refused(rogue, sid, &out, "ledger.behind");
    wait_until("the gap timeout to pass", Duration::from_secs(30), || {
        unix_now() > opened + GAP_TIMEOUT + 1
    });
    let (_, out) = sign_pair(&small, &small_payload);
    both_signed(&out, "after the gap timeout");
    for n in PAIR {
        let st = status_where(rogue, n, "node-3 reported for the gap", |st| {
            suspect(st, N3).starts_with("ledger.gap_expired")
        });
        assert!(
            st.ledger_gaps.contains(&N3.to_string()),
            "still unfilled: {st:?}"
        );
    }

    // Entries for Y dated 0 with no movements: v1 (no payload hash), then v2 (Y's hash).
    let denied_velocity = |tag: &str| {
        let (id, payload) = request(tag, 20);
        for n in PAIR {
            let v = evaluate(rogue, n, (ACCT_KEY, &id), &payload, &[], acct);
            assert_eq!(
                v.kind,
                VerdictKind::Deny,
                "{n}: 20 + 5 + 20 > {VEL_MAX}: {v:?}"
            );
            assert_eq!(
                v.code.as_deref(),
                Some("policy.limit.velocity"),
                "{n}: {v:?}"
            );
        }
    };
    denied_velocity("review-control");
    deliver(rogue, &base, 1, |seq| forge(&node3, seq, (&y, 0), None));
    for n in PAIR {
        status_where(rogue, n, "the v1 entry stored", |st| {
            head(st, N3) == base[n] + 1
        });
    }
    denied_velocity("review-after-v1");
    let y_hash = Some(y_payload.payload_hash());
    deliver(rogue, &base, 2, |seq| forge(&node3, seq, (&y, 0), y_hash));
    for n in PAIR {
        status_where(rogue, n, "node-3 reported for the contradiction", |st| {
            head(st, N3) == base[n] + 2 && suspect(st, N3).starts_with("ledger.contradiction")
        });
    }
    denied_velocity("review-after-v2");

    // Fill the gap (harmless entries), then a sequence number no node can reach.
    for k in 3..5 {
        deliver(rogue, &base, k, |seq| {
            forge(
                &node3,
                seq,
                (&format!("review-fill-{k}"), unix_now()),
                Some([9; 32]),
            )
        });
    }
    for n in PAIR {
        status_where(rogue, n, "the gap filled", |st| {
            head(st, N3) == base[n] + 5 && st.ledger_gaps.is_empty()
        });
    }
    let huge = forge(&node3, u64::MAX, ("review-huge", unix_now()), Some([8; 32]));
    send_all(rogue, &PAIR, &CoordFrame::Ledger(huge));
    for n in PAIR {
        let what = ("node-3 reported for the sequence", true);
        let st = wait_status(rogue, n, what, |st| {
            suspect(st, N3).starts_with("ledger.impossible_seq")
        });
        assert_eq!(head(&st, N3), base[n] + 5, "{n}: refused: {st:?}");
        assert!(st.ledger_gaps.is_empty(), "{n}: no gap: {st:?}");
    }
    let (last, last_payload) = request("review-last", 1);
    let (_, out) = sign_pair(&last, &last_payload);
    both_signed(&out, "after the impossible entry");
}
