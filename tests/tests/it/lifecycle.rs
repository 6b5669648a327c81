//! Issue 19: refresh and reshare with the same key and addresses (`docs/lifecycle.md`), on the
//! shared cluster's `life-key`, through the API and real node processes.

use std::time::{Duration, Instant};

use alloy_consensus::{transaction::SignerRecoverable, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use custody_tests::{
    cluster::{free_port, Cluster, Layout, PrimeSource},
    lifecycle::order,
    rogue::Rogue,
};
use proto::{
    api::{CeremonyPhase, KeyInfo, PresigPoolView, RequestStatus},
    lifecycle::{MembershipKind, MembershipOrder, SignedMembershipOrder},
    wire::CoordFrame,
};
use serde_json::json;

use crate::{
    agreement::{spawn_copy, Kill},
    common::{rid, scratch, shared, Shared},
};

const LIFE: &str = "life-key";

fn signed(c: &Cluster, o: MembershipOrder, officers: &[&str]) -> SignedMembershipOrder {
    custody_tests::lifecycle::signed(c, o, officers).unwrap()
}

/// Posts the order and waits until its ceremony is no longer dealing or activating.
fn run(s: &Cluster, route: &str, body: &SignedMembershipOrder) -> KeyInfo {
    custody_tests::lifecycle::run(s, route, body, Duration::from_secs(300)).unwrap()
}

/// Signs a transfer with the key and checks, independently, that it recovers to `address`.
pub(crate) fn signs_as(c: &Cluster, address: &str, nonce: u64) -> Vec<String> {
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
    let (_, m) = s.cluster.api.get("/metrics").unwrap();
    let m = m.as_str().unwrap_or_default();
    assert!(
        m.lines()
            .any(|l| l == format!("custody_key_epoch{{key=\"{LIFE}\"}} {}", refreshed.epoch)),
        "the epoch gauge follows the key: {m}"
    );
    for outcome in ["failed", "activated"] {
        let series = format!("custody_reshare_total{{kind=\"refresh\",outcome=\"{outcome}\"}} ");
        assert!(
            m.lines().any(|l| l.starts_with(&series)),
            "{series} is counted: {m}"
        );
    }

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

/// TEST-ONLY: stops nodes `which` (indexes) and stores their own fixture primes in each as
/// spares, as `signer-node primes` would (fresh ones take minutes on two busy cores); the caller
/// starts them again.
pub(crate) fn spare_primes(c: &mut Cluster, which: &[usize]) {
    let fixtures = custody_tests::test_primes().unwrap();
    for &i in which {
        c.terminate_node(i, Duration::from_secs(20)).unwrap();
        let dir = c.layout.dir.join(&c.layout.nodes[i]);
        let pass = std::fs::read_to_string(dir.join("passphrase")).unwrap();
        let store =
            signer_node::store::Store::open(&dir, &signer_node::secret::Passphrase::new(pass))
                .unwrap();
        let primes = serde_json::to_vec(&fixtures[i]).unwrap();
        store
            .put_secret(signer_node::plan::PRIMES_RECORD, &primes)
            .unwrap();
    }
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

/// Copies node `i` to `dst` for a rogue coordinator on `rogue_port`: the node is SIGKILLed
/// first (redb survives it; a live copy would be torn) and not restarted.
fn copy_stopped(c: &mut Cluster, i: usize, dst: &std::path::Path, rogue_port: u16) {
    c.kill_node(i).unwrap();
    crate::common::copy_store(c, i, dst);
    crate::common::point_at_rogue(dst, rogue_port);
}

/// A compromised coordinator pairs node-1, in the key's new epoch, with a copy of node-2 from
/// before the last activation (a restored old backup that never saw the certificate). Shown
/// each its own epoch, both refuse at the join (`session.intent_mismatch`: the epoch is in the
/// context hash); shown the new epoch, the stale node refuses itself (`session.epoch`). No
/// partial signature leaves either node.
fn mixed_epochs_are_refused(c: &mut Cluster, rogue: &Rogue, stale: &std::path::Path, epoch: u64) {
    let current = scratch("epoch-current-node-1");
    copy_stopped(c, 0, &current, rogue.port);
    let _children = Kill(vec![
        spawn_copy(&c.layout.exe, &current),
        spawn_copy(&c.layout.exe, stale),
    ]);
    rogue
        .wait_nodes(&["node-1", "node-2"], Duration::from_secs(30))
        .unwrap();
    let parties = vec!["node-1".to_string(), "node-2".to_string()];
    for (n, (e1, e2), codes) in [
        (
            90,
            (epoch, epoch - 1),
            ["session.intent_mismatch", "session.intent_mismatch"],
        ),
        (91, (epoch, epoch), ["", "session.epoch"]),
    ] {
        let sid: [u8; 32] = rand::random();
        rogue.route(sid, parties.clone());
        let tx = hex::decode(
            custody_tests::sample::eth_transfer(n, [0x42; 20], 777).trim_start_matches("0x"),
        )
        .unwrap();
        for (node, e) in [("node-1", e1), ("node-2", e2)] {
            let start = crate::common::sign_start(
                LIFE,
                e,
                &parties,
                sid,
                &format!("mixed-{n}"),
                tx.clone(),
            );
            assert!(rogue.send(node, CoordFrame::Start(start)));
        }
        let mut got = std::collections::BTreeMap::new();
        while got.len() < 2 {
            let (node, rsid, r) = rogue
                .next_report(Duration::from_secs(60))
                .expect("a report from each node");
            assert_eq!(rsid, sid);
            let f = r.expect_err("no partial signature in a mixed-epoch session");
            got.insert(node, f.code);
        }
        assert_eq!(got["node-2"], codes[1], "{got:?}");
        if !codes[0].is_empty() {
            assert_eq!(got["node-1"], codes[0], "{got:?}");
        }
    }
}

/// A 2-input regtest PSBT spending outputs to the key's P2WPKH address (the one it had before
/// the reshare) is signed by the new guardians, and the finalized transaction passes Bitcoin
/// Core's script checks (`bitcoinconsensus`) for each input.
fn psbt_from_before_signs(c: &Cluster, public_key_hex: &str) {
    let pk: [u8; 33] = hex::decode(public_key_hex).unwrap().try_into().unwrap();
    let spk = proto::btc::p2wpkh_script(&pk).unwrap();
    let amounts = [60_000u64, 61_000];
    let psbt = custody_tests::sample::btc_psbt(&spk, &amounts, 100_000, 20_000);
    let id = rid("life-btc");
    let body = json!({"request_id": id, "key_id": LIFE, "chain": "bitcoin", "network": "regtest",
        "psbt": psbt.to_string()});
    let (st, v) = c.api.post("/v1/sign-requests", &body).unwrap();
    assert_eq!(st, 202, "{v}");
    let r = c.wait_request(&id, Duration::from_secs(180)).unwrap();
    assert_eq!(r.status, RequestStatus::Signed, "{r:?}");
    let raw = hex::decode(r.signed_tx.as_deref().unwrap()).unwrap();
    for (i, sat) in amounts.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(&spk, *sat, &raw, None, i, crate::btc_psbt::FLAGS)
            .unwrap_or_else(|e| panic!("input {i} fails script verification: {e:?}"));
    }
}

/// On a cluster of its own (four nodes; the key 2-of-3 on {node-1, node-2, node-3}), node-1 is
/// a compromised guardian that cheats as a dealer, with a different fault in each ceremony: a
/// wrong sub-share (shown by the receiver's complaint with node-1's own signature), a constant
/// term that would change the key, a false public share of its own with a constant term to
/// match (the old guardians compare it with the public shares they hold), and different
/// commitments to different parties (two views node-1 signed). Each time the nodes name node-1 with the fault's code, the attempt activates
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
    let before_pk = k.public_key.clone();
    signs_as(&c, &addr, 1);
    // node-1 and node-2 spent their primes on the first group's aux info; the new group's
    // would make them generate fresh ones (minutes on two busy cores). TEST-ONLY: each gets
    // its own fixture primes back as spares, as `signer-node init` stores them. node-1 comes
    // back as `rogue-node`, the real node with a cheating dealer.
    spare_primes(&mut c, &[0, 1]);
    let mut rogue = std::process::Command::new(env!("CARGO_BIN_EXE_rogue-node"));
    let nd = c.layout.dir.join("node-1");
    rogue
        .arg("--config")
        .arg(nd.join("node.toml"))
        .arg("--passphrase-file")
        .arg(nd.join("passphrase"))
        .args([
            "--dealer-fault",
            "wrong-sub-share,wrong-constant,wrong-public-share,equivocate",
        ]);
    c.start_node_as(0, rogue).unwrap();
    c.start_node_and_wait(1).unwrap();
    let all = c.layout.nodes.clone();
    c.wait_connected(&all, Duration::from_secs(30)).unwrap();

    for code in [
        "reshare.dealer_share",
        "reshare.dealer_constant",
        "reshare.dealer_key",
    ] {
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

    // A copy of node-2 in this epoch, before the reshare activates the next one.
    let rogue = Rogue::start(&c.layout.dir.join("pki")).unwrap();
    let stale = scratch("epoch-stale-node-2");
    copy_stopped(&mut c, 1, &stale, rogue.port);
    c.start_node_and_wait(1).unwrap();

    let mut o = order(
        &k,
        MembershipKind::Reshare,
        &["node-1", "node-2", "node-4"],
        2,
    );
    custody_tests::lifecycle::add_identity(&c, &mut o, "node-4").unwrap();
    let after = run(&c, "reshare", &signed(&c, o, &["officer-1", "officer-2"]));
    named_and_left_out(&c, &k, &after, "reshare.dealer_equivocation");
    assert_eq!(
        after.ceremony.as_ref().map(|c| c.dealers.clone()),
        Some(vec!["node-2".to_string(), "node-3".to_string()])
    );
    assert_eq!(after.nodes, ["node-1", "node-2", "node-4"]);
    assert_eq!((after.epoch, after.threshold), (k.epoch + 1, 2));
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
    psbt_from_before_signs(&c, before_pk.as_deref().unwrap());
    mixed_epochs_are_refused(&mut c, &rogue, &stale, after.epoch);
}
