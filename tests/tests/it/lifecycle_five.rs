//! Issue 19: 2-of-3 → 3-of-5 → 2-of-3 with the same key and address, on a five-node cluster
//! of its own. Opt-in (`bash .ci/extra`): the aux info of a five-guardian group and the one
//! back take minutes of two cores; CI runs 2-of-3 → 3-of-3 → 2-of-3 and {1,2,3} → {1,2,4}
//! ([`crate::lifecycle`]), which take the same code path.

use std::time::Duration;

use custody_tests::{
    cluster::{free_port, Cluster, Layout, PrimeSource},
    lifecycle::{add_identity, order, run, signed},
};
use proto::{
    api::{CeremonyPhase, KeyInfo},
    lifecycle::MembershipKind,
};

use crate::{
    common::scratch,
    lifecycle::{signs_as, spare_primes},
};

const KEY: &str = "life-key";

/// Starts node-1..3 again (stopped for their spare primes) and waits for every node.
fn restart_first_three(c: &mut Cluster) {
    c.start_node(0).unwrap();
    c.start_node(1).unwrap();
    c.start_node_and_wait(2).unwrap();
}

/// Runs the officers' reshare of `k` to `set` with threshold `t`; it must activate.
fn reshare(c: &Cluster, k: &KeyInfo, set: &[&str], t: u16) -> KeyInfo {
    let mut o = order(k, MembershipKind::Reshare, set, t);
    for g in set {
        if !k.nodes.iter().any(|n| n == g) {
            add_identity(c, &mut o, g).unwrap();
        }
    }
    let body = signed(c, o, &["officer-1", "officer-2"]).unwrap();
    let after = run(c, "reshare", &body, Duration::from_secs(900)).unwrap();
    assert_eq!(
        after.ceremony.as_ref().map(|c| c.phase),
        Some(CeremonyPhase::Active),
        "{after:?}"
    );
    assert_eq!(
        (after.epoch, after.threshold, after.nodes.len()),
        (k.epoch + 1, t, set.len())
    );
    assert_eq!(after.public_key, k.public_key, "same key");
    assert_eq!(after.bitcoin, k.bitcoin, "same addresses");
    after
}

/// 2-of-3 on {node-1, node-2, node-3} → 3-of-5 on all five (node-4 and node-5 new, each with
/// its own primes; the five-guardian group's aux info first) → 2-of-3 on {node-1, node-2,
/// node-3} again. After each step the key signs with its address: with three signers in
/// 3-of-5, also with node-1 and node-2 stopped (node-3, node-4 and node-5 alone), and node-4
/// and node-5 record that they hold no share after the last step.
#[test]
#[ignore = "opt-in, several minutes of two cores: bash .ci/extra"]
fn two_of_three_to_three_of_five_and_back_keeps_the_key_and_address() {
    let layout = Layout::loopback(
        scratch("reshare-five"),
        5,
        env!("CARGO_BIN_EXE_devnet").into(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    layout.ensure(PrimeSource::TestFixture).unwrap();
    let mut c = Cluster::start(layout).unwrap();
    let first: Vec<String> = ["node-1", "node-2", "node-3"].map(String::from).to_vec();
    let k = c
        .ensure_key_on(KEY, 2, &first, Duration::from_secs(300))
        .unwrap();
    let addr = k.ethereum_address.clone().unwrap();
    assert_eq!(signs_as(&c, &addr, 1).len(), 2);

    // node-1..3 spent their primes on the first group's aux info: TEST-ONLY spares.
    spare_primes(&mut c, &[0, 1, 2]);
    restart_first_three(&mut c);
    let all = ["node-1", "node-2", "node-3", "node-4", "node-5"];
    let five = reshare(&c, &k, &all, 3);
    assert_eq!(signs_as(&c, &addr, 2).len(), 3, "3-of-5 signs with three");
    c.kill_node(0).unwrap();
    c.kill_node(1).unwrap();
    let mut signers = signs_as(&c, &addr, 3);
    signers.sort();
    assert_eq!(
        signers,
        ["node-3", "node-4", "node-5"],
        "the new guardians sign"
    );
    c.start_node(0).unwrap();
    c.start_node_and_wait(1).unwrap();

    spare_primes(&mut c, &[0, 1, 2]);
    restart_first_three(&mut c);
    let back = reshare(&c, &five, &["node-1", "node-2", "node-3"], 2);
    assert_eq!(back.ethereum_address.as_deref(), Some(addr.as_str()));
    assert_eq!(signs_as(&c, &addr, 4).len(), 2);
    for n in ["node-4", "node-5"] {
        let audit = std::fs::read_to_string(c.layout.dir.join(format!("{n}/audit.jsonl"))).unwrap();
        assert!(
            audit.lines().any(|l| l.contains("reshare.activated")
                && l.contains(&format!("\"epoch\":{}", back.epoch))
                && l.contains("\"holds_share\":false")),
            "{n} destroyed its share at activation"
        );
    }
}
