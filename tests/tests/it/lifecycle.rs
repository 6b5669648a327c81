//! Issue 19: refresh and reshare with the same key and addresses (`docs/lifecycle.md`), on the
//! shared cluster's `life-key`, through the API and real node processes.

use std::time::{Duration, Instant};

use alloy_consensus::{transaction::SignerRecoverable, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use custody_tests::{
    cluster::{free_port, Cluster, Layout, PrimeSource},
    governance::Governance,
};
use ed25519_dalek::Signer;
use proto::{
    api::{CeremonyPhase, KeyInfo, PresigPoolView, RequestStatus},
    authz::OfficerSignature,
    lifecycle::{MembershipKind, MembershipOrder, SignedMembershipOrder},
};
use serde_json::json;

use crate::common::{rid, scratch, shared, Shared};

const LIFE: &str = "life-key";

fn key(c: &Cluster) -> KeyInfo {
    let (st, v) = c.api.get(&format!("/v1/keys/{LIFE}")).unwrap();
    assert_eq!(st, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

fn order(k: &KeyInfo, kind: MembershipKind, new_set: &[&str], t: u16) -> MembershipOrder {
    MembershipOrder {
        key_id: LIFE.into(),
        epoch: k.epoch,
        kind,
        old_set: k.nodes.clone(),
        new_set: new_set.iter().map(|n| n.to_string()).collect(),
        new_threshold: t,
        identities: Default::default(),
        not_after: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600,
    }
}

fn signed(c: &Cluster, o: MembershipOrder, officers: &[&str]) -> SignedMembershipOrder {
    let gov = Governance::at(&c.layout.dir);
    let d = o.digest();
    let signatures = officers
        .iter()
        .map(|name| {
            let k = gov.key(name).unwrap();
            OfficerSignature {
                officer: k.verifying_key().to_bytes(),
                signature: k.sign(&d).to_bytes(),
            }
        })
        .collect();
    SignedMembershipOrder {
        order: o,
        signatures,
    }
}

/// Posts the order and waits until its ceremony is no longer dealing or activating.
fn run(s: &Cluster, route: &str, body: &SignedMembershipOrder) -> KeyInfo {
    let (st, v) = s
        .api
        .post(&format!("/v1/keys/{LIFE}/{route}"), &json!(body))
        .unwrap();
    assert_eq!(st, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let k = key(s);
        let c = k.ceremony.as_ref().expect("a ceremony");
        if matches!(c.phase, CeremonyPhase::Active | CeremonyPhase::Failed) {
            return k;
        }
        assert!(Instant::now() < deadline, "ceremony still running: {k:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Signs a transfer with the key and checks, independently, that it recovers to `address`.
fn signs_as(c: &Cluster, address: &str, nonce: u64) -> Vec<String> {
    let id = rid("life");
    let body = json!({"request_id": id, "key_id": LIFE, "chain": "ethereum",
                      "unsigned_tx": custody_tests::sample::eth_transfer(nonce, [0x42; 20], 777)});
    let (st, v) = c.api.post("/v1/sign-requests", &body).unwrap();
    assert_eq!(st, 202, "{v}");
    let r = c.wait_request(&id, Duration::from_secs(120)).unwrap();
    assert_eq!(r.status, RequestStatus::Signed, "{r:?}");
    let raw = hex::decode(r.signed_tx.as_deref().unwrap().trim_start_matches("0x")).unwrap();
    let env = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    let signer = env.recover_signer().unwrap();
    assert_eq!(format!("{signer:#x}"), address, "same key, same address");
    r.signers
}

fn prepare(s: &Shared) -> KeyInfo {
    s.cluster
        .ensure_key(LIFE, 2, Duration::from_secs(120))
        .unwrap()
}

/// Refresh (2-of-3), a threshold change to 3-of-3 and back: the address never changes, the
/// recovered signer is the key's address after each step, an order signed by one officer is
/// refused by every node (the old epoch keeps signing), and a stale order is refused.
#[test]
fn refresh_and_threshold_change_keep_the_address_and_refuse_bad_orders() {
    let s = shared();
    let before = prepare(&s);
    let addr = before.ethereum_address.clone().unwrap();
    let all = ["node-1", "node-2", "node-3"];
    signs_as(&s.cluster, &addr, 1);

    // One officer: every node refuses the order itself; nothing changes.
    let k = run(
        &s.cluster,
        "refresh",
        &signed(
            &s.cluster,
            order(&before, MembershipKind::Refresh, &all, 2),
            &["officer-1"],
        ),
    );
    let c = k.ceremony.clone().unwrap();
    assert_eq!(c.phase, CeremonyPhase::Failed, "{k:?}");
    for n in all {
        assert_eq!(
            c.progress.get(n).map(String::as_str),
            Some("reshare.order_quorum"),
            "{n} must refuse the order itself: {c:?}"
        );
    }
    assert_eq!(k.epoch, before.epoch, "nothing activated");
    signs_as(&s.cluster, &addr, 2);

    // A presignature of each subset in the pool (then no refill): the refresh deletes them
    // on every node and in the coordinator's pool.
    let pool_path = format!("/v1/keys/{LIFE}/presignatures");
    let (st, v) = s.cluster.api.put(&pool_path, &json!({"depth": 1})).unwrap();
    assert_eq!(st, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, v) = s.cluster.api.get(&pool_path).unwrap();
        let p: PresigPoolView = serde_json::from_value(v).unwrap();
        if p.subsets.len() == 3 && p.subsets.iter().all(|x| x.available >= 1) {
            break;
        }
        assert!(Instant::now() < deadline, "pool did not fill: {p:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (st, v) = s.cluster.api.put(&pool_path, &json!({"depth": 0})).unwrap();
    assert_eq!(st, 200, "{v}");

    // Two officers: a refresh to the next epoch, same address.
    let refreshed = run(
        &s.cluster,
        "refresh",
        &signed(
            &s.cluster,
            order(&before, MembershipKind::Refresh, &all, 2),
            &["officer-1", "officer-2"],
        ),
    );
    let c = refreshed.ceremony.clone().unwrap();
    assert_eq!(c.phase, CeremonyPhase::Active, "{refreshed:?}");
    assert_eq!(refreshed.epoch, before.epoch + 1);
    assert_eq!(refreshed.public_key, before.public_key);
    assert_eq!(refreshed.ethereum_address, before.ethereum_address);
    assert_eq!(refreshed.bitcoin, before.bitcoin);
    let (_, v) = s.cluster.api.get(&pool_path).unwrap();
    let p: PresigPoolView = serde_json::from_value(v).unwrap();
    assert!(
        p.subsets.iter().all(|x| x.available == 0),
        "old-epoch presignatures left the pool: {p:?}"
    );
    for n in all {
        let audit =
            std::fs::read_to_string(s.cluster.layout.dir.join(format!("{n}/audit.jsonl"))).unwrap();
        let last = audit
            .lines()
            .rfind(|l| l.contains("reshare.activated") && l.contains(LIFE))
            .unwrap_or_default();
        assert!(
            last.contains("\"presignatures_deleted\":2"),
            "{n} deletes its two old-epoch presignatures: {last}"
        );
    }
    signs_as(&s.cluster, &addr, 3);

    // The order of the old epoch cannot be replayed.
    let stale = signed(
        &s.cluster,
        order(&before, MembershipKind::Refresh, &all, 2),
        &["officer-1", "officer-2"],
    );
    let (st, v) = s
        .cluster
        .api
        .post(&format!("/v1/keys/{LIFE}/refresh"), &json!(stale))
        .unwrap();
    assert_eq!(
        (st, v["code"].as_str()),
        (409, Some("reshare.order_epoch")),
        "{v}"
    );

    // 2-of-3 → 3-of-3: every guardian now signs.
    let three = run(
        &s.cluster,
        "reshare",
        &signed(
            &s.cluster,
            order(&refreshed, MembershipKind::Reshare, &all, 3),
            &["officer-2", "officer-3"],
        ),
    );
    assert_eq!(
        three.ceremony.as_ref().map(|c| c.phase),
        Some(CeremonyPhase::Active),
        "{three:?}"
    );
    assert_eq!((three.epoch, three.threshold), (before.epoch + 2, 3));
    let mut signers = signs_as(&s.cluster, &addr, 4);
    signers.sort();
    assert_eq!(signers, all, "3-of-3 signs with every guardian");

    // … and back to 2-of-3.
    let two = run(
        &s.cluster,
        "reshare",
        &signed(
            &s.cluster,
            order(&three, MembershipKind::Reshare, &all, 2),
            &["officer-1", "officer-3"],
        ),
    );
    assert_eq!((two.epoch, two.threshold), (before.epoch + 3, 2), "{two:?}");
    assert_eq!(signs_as(&s.cluster, &addr, 5).len(), 2);
}

/// Asserts that the ceremony named exactly node-1 for `code`, that the coordinator audited it,
/// and that the retry without node-1 as a dealer activated exactly one epoch after `before`.
fn named_and_left_out(c: &Cluster, before: &KeyInfo, after: &KeyInfo, code: &str) {
    let cer = after.ceremony.clone().unwrap();
    assert_eq!(cer.blamed, ["node-1"], "{code}: {cer:?}");
    assert_eq!(cer.phase, CeremonyPhase::Active, "{code}: {cer:?}");
    assert!(
        !cer.dealers.contains(&"node-1".to_string()),
        "{code}: {cer:?}"
    );
    assert_eq!(
        after.epoch,
        before.epoch + 1,
        "{code}: exactly one epoch activated"
    );
    assert_eq!(after.public_key, before.public_key, "{code}");
    let audit = std::fs::read_to_string(c.layout.dir.join("coordinator/audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("reshare.dealer_excluded")
            && l.contains(code)
            && l.contains("node-1")),
        "{code}: the coordinator audits the named dealer"
    );
}

/// On a cluster of its own (four nodes; the key 2-of-3 on {node-1, node-2, node-3}), node-1 is
/// a compromised guardian that cheats as a dealer, with a different fault in each ceremony: a
/// wrong sub-share (shown by the receiver's complaint with node-1's own signature), a constant
/// term that would change the key, and different commitments to different parties (two views
/// node-1 signed). Each time the nodes name node-1 with the fault's code, the attempt activates
/// nothing, and the retry without node-1 as a dealer activates exactly one new epoch.
///
/// The last ceremony reshares {node-1, node-2, node-3} → {node-1, node-2, node-4}: node-4 held
/// nothing of the key and takes part with its own Paillier primes (the new group's aux info
/// runs first); the retry's dealers are node-2 and node-3, which leaves the key. Afterwards
/// every 2-subset of the new set signs with the same address, node-3 records that it holds no
/// share any more and the coordinator never asks it again.
#[test]
fn rogue_dealers_are_named_and_left_out_and_a_new_guardian_replaces_a_retired_one() {
    let layout = Layout::loopback(
        scratch("reshare-new"),
        4,
        env!("CARGO_BIN_EXE_devnet").into(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    layout.ensure(PrimeSource::TestFixture).unwrap();
    let mut c = Cluster::start(layout).unwrap();
    let (st, v) = c
        .api
        .post(
            "/v1/keys",
            &json!({"key_id": LIFE, "threshold": 2, "nodes": ["node-1", "node-2", "node-3"]}),
        )
        .unwrap();
    assert_eq!(st, 202, "{v}");
    let mut k = c.wait_key(LIFE, Duration::from_secs(300)).unwrap();
    let addr = k.ethereum_address.clone().unwrap();
    signs_as(&c, &addr, 1);
    // node-1 and node-2 spent their primes on the first group's aux info; the new group's
    // would make them generate fresh ones (minutes on two busy cores). TEST-ONLY: each gets
    // its own fixture primes back as spares, as `signer-node init` stores them. node-1 comes
    // back as `rogue-node`, the real node with a cheating dealer.
    let fixtures = custody_tests::test_primes().unwrap();
    for (i, spare) in fixtures.iter().enumerate().take(2) {
        c.terminate_node(i, Duration::from_secs(20)).unwrap();
        let dir = c.layout.dir.join(format!("node-{}", i + 1));
        let pass = std::fs::read_to_string(dir.join("passphrase")).unwrap();
        let store =
            signer_node::store::Store::open(&dir, &signer_node::secret::Passphrase::new(pass))
                .unwrap();
        let primes = serde_json::to_vec(spare).unwrap();
        store
            .put_secret(signer_node::plan::PRIMES_RECORD, &primes)
            .unwrap();
        drop(store);
    }
    let mut rogue = std::process::Command::new(env!("CARGO_BIN_EXE_rogue-node"));
    let nd = c.layout.dir.join("node-1");
    rogue
        .arg("--config")
        .arg(nd.join("node.toml"))
        .arg("--passphrase-file")
        .arg(nd.join("passphrase"))
        .args([
            "--dealer-fault",
            "wrong-sub-share,wrong-constant,equivocate",
        ]);
    c.start_node_as(0, rogue).unwrap();
    c.start_node_and_wait(1).unwrap();
    let all = c.layout.nodes.clone();
    c.wait_connected(&all, Duration::from_secs(30)).unwrap();

    for code in ["reshare.dealer_share", "reshare.dealer_constant"] {
        let nodes: Vec<&str> = k.nodes.iter().map(String::as_str).collect();
        let body = signed(
            &c,
            order(&k, MembershipKind::Refresh, &nodes, k.threshold),
            &["officer-1", "officer-2"],
        );
        let after = run(&c, "refresh", &body);
        named_and_left_out(&c, &k, &after, code);
        k = after;
    }

    let mut o = order(
        &k,
        MembershipKind::Reshare,
        &["node-1", "node-2", "node-4"],
        2,
    );
    let id: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.layout.dir.join("node-4/identity.json")).unwrap(),
    )
    .unwrap();
    o.identities.insert(
        "node-4".into(),
        proto::lifecycle::GuardianIdentity {
            sign_key: id["sign_key"].as_str().unwrap().into(),
            dh_key: id["dh_key"].as_str().unwrap().into(),
        },
    );
    let after = run(&c, "reshare", &signed(&c, o, &["officer-1", "officer-2"]));
    named_and_left_out(&c, &k, &after, "reshare.dealer_equivocation");
    assert_eq!(
        after.ceremony.as_ref().map(|c| c.dealers.clone()),
        Some(vec!["node-2".to_string(), "node-3".to_string()])
    );
    assert_eq!(after.nodes, ["node-1", "node-2", "node-4"]);
    assert_eq!((after.epoch, after.threshold), (3, 2));
    assert_eq!(after.bitcoin, k.bitcoin);
    assert_eq!(after.ethereum_address.as_deref(), Some(addr.as_str()));
    let mut pairs = std::collections::BTreeSet::new();
    for nonce in 2..10 {
        let mut signers = signs_as(&c, &addr, nonce);
        signers.sort();
        assert!(!signers.contains(&"node-3".to_string()), "{signers:?}");
        pairs.insert(signers);
        if pairs.len() == 3 {
            break;
        }
    }
    assert_eq!(
        pairs.len(),
        3,
        "every 2-subset of the new set signs: {pairs:?}"
    );
    let audit = std::fs::read_to_string(c.layout.dir.join("node-3/audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("reshare.activated") && l.contains("\"holds_share\":false")),
        "node-3 destroyed its share at activation"
    );
}
