//! Issue 16, finding 7: a node's audit log cut at a line boundary (its hash chain still intact)
//! is caught at start against the head the node anchored in its store; and one node's report of
//! a failed signature check does not lock a key (only the coordinator's own failed check, or t
//! distinct nodes' reports, do). Metric label escaping is unit-tested in `coordinator::faults`.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use proto::api::RequestStatus;
use serde_json::Value;

use crate::{
    common::{exclusive, Shared},
    faults::transfer,
    signing::submit,
};

/// Runs `cmd` to completion (bounded: a node that starts is killed and reported as started).
/// Returns (exited with success, stderr), or `None` if it kept running.
fn run_until_exit(mut cmd: Command) -> Option<(bool, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            return Some((status.success(), err));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn node_status(s: &Shared, node: &str) -> Value {
    let (st, v) = s.cluster.api.get("/v1/nodes").unwrap();
    assert_eq!(st, 200, "{v}");
    v["nodes"][node].clone()
}

#[test]
fn an_audit_log_cut_at_a_line_boundary_stops_the_node_until_it_is_put_back() {
    let mut s = exclusive();
    let id = s.cluster.layout.nodes[0].clone();
    // A signing audits on every node (evaluation and signing), so the log has records to cut.
    let r = crate::signing::sign_transfer(&s, 910_001);
    assert_eq!(r.status, RequestStatus::Signed, "{r:?}");
    // The node reports the head it anchors: the coordinator's listing shows it.
    let listed = node_status(&s, &id);
    let head = &listed["status"]["audit_head"];
    assert!(head["count"].as_u64().is_some_and(|c| c >= 2), "{listed}");
    assert_eq!(listed["audit_head"], *head, "shown in the listing too");

    // Stopped cleanly, the store's anchor equals the log's length.
    s.cluster
        .terminate_node(0, Duration::from_secs(20))
        .unwrap();
    let path = s.cluster.layout.dir.join(&id).join("audit.jsonl");
    let full = std::fs::read_to_string(&path).unwrap();
    let records = full.lines().count();
    let kept = records / 2;
    let cut: String = full.lines().take(kept).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &cut).unwrap();
    // The cut log is a valid chain: only the anchor can tell.
    assert_eq!(
        proto::audit::verify(&path).unwrap().records,
        kept as u64,
        "the chain of the cut log still verifies"
    );

    let refused = run_until_exit(s.cluster.layout.node_command(&id));
    let restore_and_restart = |s: &mut Shared| {
        std::fs::write(&path, &full).unwrap();
        s.cluster.start_node_and_wait(0).unwrap();
    };
    let Some((ok, err)) = refused else {
        restore_and_restart(&mut s);
        panic!("the node started on an audit log cut from {records} to {kept} records");
    };
    assert!(!ok);
    let expected = format!("has {kept} records, the store anchored {records}");
    assert!(
        err.contains("audit.truncated: audit log `") && err.contains(&expected),
        "stderr: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        cut,
        "a refused log is left as found"
    );

    // The complete log put back: the node starts and signs as before.
    restore_and_restart(&mut s);
    let after = node_status(&s, &id);
    assert!(
        after["status"]["audit_head"]["count"]
            .as_u64()
            .is_some_and(|c| c >= records as u64),
        "{after}"
    );
}

fn metric(s: &Shared, series: &str) -> f64 {
    let (_, m) = s.cluster.api.get("/metrics").unwrap();
    m.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn coordinator_audit(s: &Shared) -> String {
    std::fs::read_to_string(s.cluster.layout.dir.join("coordinator/audit.jsonl")).unwrap()
}

/// node-3 runs as the rogue (its last-round partial off by one) and node-2 is down, so every
/// session is {node-1, node-3}: node-1 alone reports `signature.invalid`. The coordinator cannot
/// tell this from node-1 lying (it sees one node's word either way), so the key stays unlocked:
/// the request fails, the report is audited and counted against node-1, and once the rogue is
/// replaced the key signs again with no operator unlock.
#[test]
fn one_node_reporting_signature_invalid_does_not_lock_the_key() {
    const INC: &str = "inc-key";
    let mut s = exclusive();
    let reports_series = "custody_signature_reports_total{node=\"node-1\"}";
    let reports_before = metric(&s, reports_series);
    let audit_before = coordinator_audit(&s).len();
    s.cluster.kill_node(1).unwrap();
    s.cluster.kill_node(2).unwrap();
    let nd = s.cluster.layout.dir.join("node-3");
    let mut rogue = Command::new(env!("CARGO_BIN_EXE_rogue-node"));
    rogue
        .arg("--config")
        .arg(nd.join("node.toml"))
        .arg("--passphrase-file")
        .arg(nd.join("passphrase"));
    s.cluster.start_node_as(2, rogue).unwrap();
    let up = vec!["node-1".to_string(), "node-3".to_string()];
    s.cluster
        .wait_connected(&up, Duration::from_secs(30))
        .unwrap();

    let body = transfer("one-report", INC, 900_001);
    let id = body["request_id"].as_str().unwrap().to_string();
    let r = submit(&s, &body);
    assert_eq!(r.status, RequestStatus::Failed, "{r:?}");
    assert_eq!(
        r.error.as_ref().map(|e| e.code.as_str()),
        Some("signature.invalid"),
        "{r:?}"
    );
    let (_, key) = s.cluster.api.get(&format!("/v1/keys/{INC}")).unwrap();
    assert!(key.get("locked").is_none_or(Value::is_null), "{key}");
    assert_eq!(metric(&s, reports_series), reports_before + 1.0);
    let audit = coordinator_audit(&s);
    let new = &audit[audit_before..];
    assert!(
        new.lines().any(|l| l.contains("\"incident.reported\"")
            && l.contains(&id)
            && l.contains("\"node\":\"node-1\"")),
        "the single report is audited, naming its node"
    );
    assert!(!new.contains("\"incident.key_locked\""), "no lock recorded");
    assert!(node_status(&s, "node-1")["signature_reports"].as_u64() >= Some(1));

    // The rogue replaced: the key signs again without an operator's unlock.
    s.cluster.kill_node(2).unwrap();
    s.cluster.start_node(1).unwrap();
    s.cluster.start_node_and_wait(2).unwrap();
    let r = submit(&s, &transfer("after-report", INC, 900_002));
    assert_eq!(r.status, RequestStatus::Signed, "{r:?}");
}
