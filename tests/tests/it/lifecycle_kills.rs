//! Issue 19: `kill -9` of the coordinator or a node at random points of refresh and reshare
//! ceremonies (`docs/lifecycle.md`, "Epochs and crash safety"), on a cluster of its own.

use std::time::{Duration, Instant};

use custody_tests::{
    cluster::{free_port, Cluster, Layout, PrimeSource},
    lifecycle::{order, signed},
};
use proto::{
    api::{CeremonyPhase, KeyInfo},
    lifecycle::MembershipKind,
};
use serde_json::json;

use crate::{
    common::{node_check, rounds, scratch},
    faults::{seed, Lcg},
    lifecycle::signs_as,
};

const KEY: &str = "life-key";

/// The key once no ceremony is dealing or activating.
fn settled(c: &Cluster) -> KeyInfo {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (st, v) = c.api.get(&format!("/v1/keys/{KEY}")).unwrap();
        assert_eq!(st, 200, "{v}");
        let k: KeyInfo = serde_json::from_value(v).unwrap();
        let busy = matches!(
            k.ceremony.as_ref().map(|c| c.phase),
            Some(CeremonyPhase::Dealing | CeremonyPhase::Activating)
        );
        if !busy {
            return k;
        }
        assert!(Instant::now() < deadline, "the ceremony never ended: {k:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Refreshes and threshold changes (2-of-3 ↔ 3-of-3) one after the other, each cut by a
/// `kill -9` of the coordinator or of a node at a random moment (dealing, storing pending
/// shares, confirming, certifying, activating, or after), then a restart. Whatever the kill hit, the key ends in exactly one epoch: every node's store
/// passes `signer-node check` and holds a readable share of the coordinator's epoch, and every
/// 2-subset signs in it with the key's address. At least one ceremony activated. Then, on the
/// same cluster, the policy schedules refreshes ([`crate::lifecycle_schedule`]).
#[test]
fn kill_loop_during_refreshes_and_reshares_leaves_one_epoch_then_refreshes_run_on_schedule() {
    let layout = Layout::loopback(
        scratch("reshare-kills"),
        3,
        env!("CARGO_BIN_EXE_devnet").into(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    layout.ensure(PrimeSource::TestFixture).unwrap();
    let mut c = Cluster::start(layout).unwrap();
    let first = c.ensure_key(KEY, 2, Duration::from_secs(300)).unwrap();
    let addr = first.ethereum_address.clone().unwrap();
    let mut rng = Lcg(seed(
        "lifecycle_kills::kill_loop_during_refreshes_leaves_the_key_signing_in_one_epoch",
    ));
    let all = c.layout.nodes.clone();
    let set: Vec<&str> = all.iter().map(String::as_str).collect();
    let kills = rounds(10, 20);
    let mut log = Vec::new();
    for round in 0..kills {
        let k = settled(&c);
        // Odd rounds reshare to the other threshold (2-of-3 ↔ 3-of-3), even ones refresh.
        let (kind, route, t) = match (round % 2, k.threshold) {
            (1, 2) => (MembershipKind::Reshare, "reshare", 3),
            (1, _) => (MembershipKind::Reshare, "reshare", 2),
            _ => (MembershipKind::Refresh, "refresh", k.threshold),
        };
        let body = signed(&c, order(&k, kind, &set, t), &["officer-1", "officer-2"]).unwrap();
        let (st, v) = c
            .api
            .post(&format!("/v1/keys/{KEY}/{route}"), &json!(body))
            .unwrap();
        assert_eq!(st, 202, "{v}");
        let after = rng.next_ms(0, 3000);
        std::thread::sleep(Duration::from_millis(after));
        let victim = rng.next_ms(0, 4) as usize;
        match all.get(victim) {
            Some(node) => {
                c.kill_node(victim).unwrap();
                c.start_node(victim).unwrap();
                log.push(format!("{node} at {after} ms"));
            }
            None => {
                c.kill_coordinator();
                c.start_coordinator().unwrap();
                log.push(format!("coordinator at {after} ms"));
            }
        }
        c.wait_connected(&all, Duration::from_secs(60)).unwrap();
    }
    let k = settled(&c);
    eprintln!(
        "{kills} kills ({}); the key ends in epoch {}",
        log.join(", "),
        k.epoch
    );
    assert!(
        k.epoch > first.epoch,
        "no ceremony activated in {kills} rounds"
    );
    assert_eq!(k.public_key, first.public_key);
    // Back to 2-of-3 (no kill) if the loop ended in 3-of-3.
    let k = match k.threshold {
        2 => k,
        _ => {
            let body = signed(
                &c,
                order(&k, MembershipKind::Reshare, &set, 2),
                &["officer-1", "officer-2"],
            )
            .unwrap();
            let k = custody_tests::lifecycle::run(&c, "reshare", &body, Duration::from_secs(120))
                .unwrap();
            assert_eq!(k.threshold, 2, "{k:?}");
            k
        }
    };
    for (i, node) in all.iter().enumerate() {
        c.kill_node(i).unwrap();
        let summary = node_check(&c, i);
        let key = summary["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|x| x["key_id"] == KEY))
            .cloned()
            .unwrap_or_else(|| panic!("{node} lists the key: {summary}"));
        assert_eq!(
            (key["epoch"].as_u64(), key["holds_share"].as_bool()),
            (Some(k.epoch), Some(true)),
            "{node} holds a share of the coordinator's epoch: {summary}"
        );
        c.start_node_and_wait(i).unwrap();
    }
    for (down, nonce) in (0..all.len()).zip(10..) {
        c.kill_node(down).unwrap();
        let signers = signs_as(&c, &addr, nonce);
        assert!(!signers.contains(&all[down]), "{signers:?}");
        c.start_node_and_wait(down).unwrap();
    }
    crate::lifecycle_schedule::scheduled_refreshes(&mut c, &addr);
}
