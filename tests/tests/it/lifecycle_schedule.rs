//! Issue 19: scheduled refresh (`refresh_every` in the signed policy, `docs/lifecycle.md`,
//! "Scheduled refresh"), on the kill loop's cluster once its loop is over
//! ([`crate::lifecycle_kills`]): no other test shares its key.

use std::time::{Duration, Instant};

use custody_tests::{
    cluster::Cluster,
    governance::{Governance, OFFICERS},
    lifecycle::{order, run, signed},
};
use proto::{
    api::{CeremonyPhase, KeyInfo},
    lifecycle::{MembershipKind, SignedMembershipOrder},
};
use serde_json::json;

use crate::lifecycle::signs_as;

const KEY: &str = "life-key";

/// The key's `refresh_every` in this test, the policy's minimum.
const EVERY: u64 = 10;

fn key(c: &Cluster, key_id: &str) -> KeyInfo {
    let (st, v) = c.api.get(&format!("/v1/keys/{key_id}")).unwrap();
    assert_eq!(st, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

/// Waits until `done` holds for the key (bounded), and returns it.
fn wait_key(c: &Cluster, key_id: &str, what: &str, done: impl Fn(&KeyInfo) -> bool) -> KeyInfo {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let k = key(c, key_id);
        if done(&k) {
            return k;
        }
        assert!(Instant::now() < deadline, "{what}: {k:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The overdue gauge of the key in the coordinator's metrics, if present.
fn overdue_metric(c: &Cluster, key_id: &str) -> Option<u64> {
    let (_, m) = c.api.get("/metrics").unwrap();
    let needle = format!("custody_refresh_overdue{{key=\"{key_id}\"}} ");
    m.as_str()?
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// A scheduled (unsigned) refresh posted through the API: every node judges it itself.
fn post_scheduled(c: &Cluster, k: &KeyInfo) -> KeyInfo {
    let set: Vec<&str> = k.nodes.iter().map(String::as_str).collect();
    let mut o = order(k, MembershipKind::Refresh, &set, k.threshold);
    o.scheduled = true;
    o.not_after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let body = SignedMembershipOrder {
        order: o,
        signatures: vec![],
    };
    run(c, "refresh", &body, Duration::from_secs(120)).unwrap()
}

fn refused_by_every_node(k: &KeyInfo, code: &str, why: &str) {
    let c = k.ceremony.as_ref().unwrap();
    assert_eq!(c.phase, CeremonyPhase::Failed, "{why}: {k:?}");
    for n in &k.nodes {
        assert_eq!(
            c.progress.get(n).map(String::as_str),
            Some(code),
            "{why}: {n} refuses it itself: {c:?}"
        );
    }
}

/// No officer signs a scheduled refresh, so the nodes are its only judges: one the policy does
/// not schedule is refused (`reshare.not_scheduled`), one that is not yet due is refused
/// (`reshare.not_due`). Then the policy sets `refresh_every = "10s"`: the coordinator refreshes
/// on time on its own (same address), and with node-3 down it reports the key overdue
/// (`GET`'s `refresh.overdue`, `custody_refresh_overdue`, a `refresh.overdue` audit record)
/// until node-3 is back and a refresh activates.
pub(crate) fn scheduled_refreshes(c: &mut Cluster, address: &str) {
    let key_id = KEY;
    let k = key(c, key_id);
    assert_eq!(k.refresh, None, "no schedule yet: {k:?}");
    let refused = post_scheduled(c, &k);
    refused_by_every_node(&refused, "reshare.not_scheduled", "no refresh_every");
    assert_eq!(refused.epoch, k.epoch);

    // An officers' refresh starts a fresh epoch; right after, the policy schedules the key.
    let set: Vec<&str> = k.nodes.iter().map(String::as_str).collect();
    let fresh = run(
        c,
        "refresh",
        &signed(
            c,
            order(&k, MembershipKind::Refresh, &set, k.threshold),
            &["officer-1", "officer-2"],
        )
        .unwrap(),
        Duration::from_secs(120),
    )
    .unwrap();
    assert_eq!(
        fresh.ceremony.as_ref().map(|c| c.phase),
        Some(CeremonyPhase::Active),
        "{fresh:?}"
    );
    let gov = Governance::at(&c.layout.dir);
    let base = gov.policy_toml(2).unwrap();
    let section = format!("[keys.{key_id}]\n");
    assert!(base.contains(&section), "the policy names the key");
    let toml = base.replace(
        &section,
        &format!("{section}refresh_every = \"{EVERY}s\"\n"),
    );
    let bundle = gov.bundle(&toml, &OFFICERS[..2]).unwrap();
    let (st, v) = c.api.post("/v1/policy", &json!(bundle)).unwrap();
    assert_eq!(st, 200, "{v}");
    for (n, s) in v["nodes"].as_object().unwrap() {
        assert_eq!(s["policy"]["version"], json!(2), "{n} runs it: {s}");
    }
    let early = post_scheduled(c, &fresh);
    refused_by_every_node(&early, "reshare.not_due", "the epoch is brand new");
    assert_eq!(early.epoch, fresh.epoch);
    let view = early.refresh.clone().unwrap();
    assert_eq!(view.every_secs, EVERY);
    assert!(!view.overdue, "{view:?}");

    // On time, on its own.
    let on_time = wait_key(c, key_id, "the schedule refreshes the key", |x| {
        x.epoch > fresh.epoch
            && x.ceremony
                .as_ref()
                .is_some_and(|c| c.scheduled && c.phase == CeremonyPhase::Active)
    });
    assert_eq!(on_time.public_key, k.public_key);
    assert_eq!(overdue_metric(c, key_id), Some(0));

    // A guardian down: the refresh cannot run and the key becomes overdue.
    c.kill_node(2).unwrap();
    let late = wait_key(c, key_id, "the key is reported overdue", |x| {
        x.refresh.as_ref().is_some_and(|r| r.overdue)
    });
    assert_eq!(overdue_metric(c, key_id), Some(1));
    // The schedule's next tick (each second) audits it.
    let audited = || {
        std::fs::read_to_string(c.layout.dir.join("coordinator/audit.jsonl"))
            .unwrap()
            .lines()
            .any(|l| {
                l.contains("\"refresh.overdue\"")
                    && l.contains(key_id)
                    && l.contains(&format!("\"epoch\":{}", late.epoch))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !audited() {
        assert!(
            Instant::now() < deadline,
            "the coordinator audits the overdue refresh"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.start_node_and_wait(2).unwrap();
    let caught_up = wait_key(c, key_id, "a refresh activates once node-3 is back", |x| {
        x.epoch > late.epoch && x.refresh.as_ref().is_some_and(|r| !r.overdue)
    });
    assert_eq!(caught_up.public_key, k.public_key);
    assert_eq!(overdue_metric(c, key_id), Some(0));

    // Unscheduled again (a refresh that started meanwhile is refused by the nodes): the key
    // signs in the epoch it ends in, with its address.
    let bundle = gov
        .bundle(&gov.policy_toml(3).unwrap(), &OFFICERS[..2])
        .unwrap();
    let (st, v) = c.api.post("/v1/policy", &json!(bundle)).unwrap();
    assert_eq!(st, 200, "{v}");
    let settled = wait_key(c, key_id, "no ceremony runs", |x| {
        x.refresh.is_none()
            && !x.ceremony.as_ref().is_some_and(|c| {
                matches!(c.phase, CeremonyPhase::Dealing | CeremonyPhase::Activating)
            })
    });
    assert!(settled.epoch >= caught_up.epoch);
    signs_as(c, address, 40);
}
