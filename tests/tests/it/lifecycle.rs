//! Issue 19: refresh and reshare with the same key and addresses (`docs/lifecycle.md`), on the
//! shared cluster's `life-key`, through the API and real node processes.

use std::time::{Duration, Instant};

use alloy_consensus::{transaction::SignerRecoverable, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use custody_tests::governance::Governance;
use ed25519_dalek::Signer;
use proto::{
    api::{CeremonyPhase, KeyInfo, RequestStatus},
    authz::OfficerSignature,
    lifecycle::{MembershipKind, MembershipOrder, SignedMembershipOrder},
};
use serde_json::json;

use crate::{
    common::{exclusive, rid, shared, Shared},
    signing::submit,
};

const LIFE: &str = "life-key";

fn key(s: &Shared) -> KeyInfo {
    let (st, v) = s.cluster.api.get(&format!("/v1/keys/{LIFE}")).unwrap();
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

fn signed(s: &Shared, o: MembershipOrder, officers: &[&str]) -> SignedMembershipOrder {
    let gov = Governance::at(&s.cluster.layout.dir);
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
fn run(s: &Shared, route: &str, body: &SignedMembershipOrder) -> KeyInfo {
    let (st, v) = s
        .cluster
        .api
        .post(&format!("/v1/keys/{LIFE}/{route}"), &json!(body))
        .unwrap();
    assert_eq!(st, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(180);
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
fn signs_as(s: &Shared, address: &str, nonce: u64) -> Vec<String> {
    let body = json!({"request_id": rid("life"), "key_id": LIFE, "chain": "ethereum",
                      "unsigned_tx": custody_tests::sample::eth_transfer(nonce, [0x42; 20], 777)});
    let r = submit(s, &body);
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
    signs_as(&s, &addr, 1);

    // One officer: every node refuses the order itself; nothing changes.
    let k = run(
        &s,
        "refresh",
        &signed(
            &s,
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
    signs_as(&s, &addr, 2);

    // Two officers: a refresh to the next epoch, same address.
    let refreshed = run(
        &s,
        "refresh",
        &signed(
            &s,
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
    signs_as(&s, &addr, 3);

    // The order of the old epoch cannot be replayed.
    let stale = signed(
        &s,
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
        &s,
        "reshare",
        &signed(
            &s,
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
    let mut signers = signs_as(&s, &addr, 4);
    signers.sort();
    assert_eq!(signers, all, "3-of-3 signs with every guardian");

    // … and back to 2-of-3.
    let two = run(
        &s,
        "reshare",
        &signed(
            &s,
            order(&three, MembershipKind::Reshare, &all, 2),
            &["officer-1", "officer-3"],
        ),
    );
    assert_eq!((two.epoch, two.threshold), (before.epoch + 3, 2), "{two:?}");
    assert_eq!(signs_as(&s, &addr, 5).len(), 2);
}

fn start_rogue_dealer(s: &mut Shared, fault: &str) {
    s.cluster.kill_node(0).unwrap();
    let mut rogue = std::process::Command::new(env!("CARGO_BIN_EXE_rogue-node"));
    let nd = s.cluster.layout.dir.join("node-1");
    rogue
        .arg("--config")
        .arg(nd.join("node.toml"))
        .arg("--passphrase-file")
        .arg(nd.join("passphrase"))
        .args(["--dealer-fault", fault]);
    s.cluster.start_node_as(0, rogue).unwrap();
    let all = s.cluster.layout.nodes.clone();
    s.cluster
        .wait_connected(&all, Duration::from_secs(30))
        .unwrap();
}

/// A compromised node-1 cheats as a dealer in three ways: a wrong sub-share (shown by the
/// receiver's complaint with node-1's own signature), a constant term that would change the
/// key, and different commitments to different parties (two views node-1 signed). Each time the
/// nodes name node-1 with the fault's code, the attempt activates nothing, and the retry
/// without node-1 as a dealer activates exactly one new epoch with the same address.
#[test]
fn rogue_dealers_are_named_and_left_out_and_the_key_keeps_its_address() {
    let mut s = exclusive();
    let mut k = prepare(&s);
    let addr = k.ethereum_address.clone().unwrap();
    let audit_path = s.cluster.layout.dir.join("coordinator/audit.jsonl");
    for (fault, code) in [
        ("wrong-sub-share", "reshare.dealer_share"),
        ("wrong-constant", "reshare.dealer_constant"),
        ("equivocate", "reshare.dealer_equivocation"),
    ] {
        start_rogue_dealer(&mut s, fault);
        let nodes: Vec<&str> = k.nodes.iter().map(String::as_str).collect();
        let body = signed(
            &s,
            order(&k, MembershipKind::Refresh, &nodes, k.threshold),
            &["officer-1", "officer-2"],
        );
        let after = run(&s, "refresh", &body);
        let c = after.ceremony.clone().unwrap();
        assert_eq!(c.blamed, ["node-1"], "{fault}: {c:?}");
        assert_eq!(c.phase, CeremonyPhase::Active, "{fault}: {c:?}");
        assert!(!c.dealers.contains(&"node-1".to_string()), "{fault}: {c:?}");
        assert_eq!(
            after.epoch,
            k.epoch + 1,
            "{fault}: exactly one epoch activated"
        );
        let audit = std::fs::read_to_string(&audit_path).unwrap();
        assert!(
            audit.lines().any(|l| l.contains("reshare.dealer_excluded")
                && l.contains(code)
                && l.contains("node-1")),
            "{fault}: the coordinator audits the named dealer"
        );
        k = after;
    }
    s.cluster.kill_node(0).unwrap();
    s.cluster.start_node_and_wait(0).unwrap();
    signs_as(&s, &addr, 100);
}
