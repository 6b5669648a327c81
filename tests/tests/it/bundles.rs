//! Signed policy bundles on every node (tampered files, too few officers, rollbacks, upgrades
//! pushed through the coordinator) and the hash-chained audit logs.

use std::{process::Command, time::Duration};

use custody_tests::governance::{Governance, OFFICERS};
use serde_json::{json, Value};

use crate::common::{exclusive, scratch, Shared};

fn statuses(s: &Shared) -> Value {
    let (st, v) = s.cluster.api.get("/v1/nodes").unwrap();
    assert_eq!(st, 200, "{v}");
    v["nodes"].clone()
}

fn policy_of(s: &Shared, node: &str) -> (u64, String, Value) {
    let st = &statuses(s)[node]["status"];
    (
        st["policy"]["version"].as_u64().unwrap(),
        st["policy"]["hash"].as_str().unwrap().to_string(),
        st["policy_error"].clone(),
    )
}

/// Pushes a bundle; returns each node's answer, which every node must give (an empty or partial
/// answer would make the callers' per-node checks pass vacuously).
fn push(s: &Shared, bundle: &Value) -> Vec<Value> {
    let (st, v) = s.cluster.api.post("/v1/policy", bundle).unwrap();
    assert_eq!(st, 200, "{v}");
    let nodes = v["nodes"]
        .as_object()
        .unwrap_or_else(|| panic!("no nodes: {v}"));
    let answered: Vec<&String> = nodes.keys().collect();
    assert_eq!(
        answered,
        s.cluster.layout.nodes.iter().collect::<Vec<_>>(),
        "{v}"
    );
    nodes.values().cloned().collect()
}

/// Restarts node `i`, then waits (bounded) until its reported status satisfies `fresh`: the
/// coordinator keeps a node's last status across a restart, so only a status that could not
/// have been sent before the restart shows that the restarted node reported.
fn restart(s: &mut Shared, i: usize, fresh: impl Fn(&Value) -> bool, what: &str) {
    s.cluster.restart_node(i).unwrap();
    let node = s.cluster.layout.nodes[i].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = statuses(s)[node.as_str()]["status"].clone();
        if fresh(&st) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{node} after its restart: {what}; its status: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn policy_bundles_tampered_undersigned_or_rolled_back_are_refused_and_upgrades_apply() {
    let mut s = exclusive();
    let gov = Governance::at(&s.cluster.layout.dir);
    let (v0, h0, _) = policy_of(&s, "node-2");

    // A tampered file on one node: the node refuses it and keeps running its stored policy.
    let cfg = s.cluster.layout.dir.join("node-2/node.toml");
    let original_cfg = std::fs::read_to_string(&cfg).unwrap();
    let mut bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(gov.bundle_file()).unwrap()).unwrap();
    let toml = bundle["policy_toml"].as_str().unwrap().to_string();
    bundle["policy_toml"] = json!(toml.replace("per_tx = 5000", "per_tx = 5000000"));
    let tampered = s.cluster.layout.dir.join("node-2/tampered.bundle.json");
    std::fs::write(&tampered, bundle.to_string()).unwrap();
    let bundle_line = original_cfg
        .lines()
        .find(|l| l.starts_with("bundle = "))
        .unwrap();
    let new_cfg =
        original_cfg.replace(bundle_line, &format!("bundle = \"{}\"", tampered.display()));
    std::fs::write(&cfg, new_cfg).unwrap();
    // The refusal names the tampered policy's hash, which no status before this restart held.
    let tampered_hash = policy::Policy::from_toml(bundle["policy_toml"].as_str().unwrap(), "t")
        .unwrap()
        .hash()
        .to_string();
    restart(
        &mut s,
        1,
        |st| {
            st["policy_error"]
                .as_str()
                .is_some_and(|e| e.contains(&tampered_hash))
        },
        "reports the refused file",
    );
    let (v, h, err) = policy_of(&s, "node-2");
    assert_eq!(
        (v, h.as_str()),
        (v0, h0.as_str()),
        "node-2 must keep its policy"
    );
    assert!(
        err.as_str().unwrap().contains("pinned officers signed"),
        "{err}"
    );
    std::fs::write(&cfg, original_cfg).unwrap();
    restart(
        &mut s,
        1,
        |st| st["policy_error"].is_null() && st["policy"]["hash"] == json!(h0),
        "runs its policy again without an error",
    );

    // Pushed through the coordinator: tampered, then signed by one officer only.
    for n in push(&s, &bundle) {
        assert!(
            n["policy_error"]
                .as_str()
                .unwrap()
                .contains("pinned officers signed"),
            "{n}"
        );
        assert_eq!(n["policy"]["hash"], json!(h0), "{n}");
    }
    let next = gov.policy_toml(v0 + 1).unwrap();
    let one = serde_json::to_value(gov.bundle(&next, &OFFICERS[..1]).unwrap()).unwrap();
    for n in push(&s, &one) {
        assert!(
            n["policy_error"]
                .as_str()
                .unwrap()
                .contains("only 1 of the required 2"),
            "{n}"
        );
    }

    // Properly signed upgrade: every node runs it.
    let two = gov.bundle(&next, &OFFICERS[1..]).unwrap();
    let new_hash = two.policy().unwrap().hash().to_string();
    for n in push(&s, &serde_json::to_value(&two).unwrap()) {
        assert_eq!(n["policy"]["hash"], json!(new_hash), "{n}");
        assert_eq!(n["policy"]["version"], json!(v0 + 1), "{n}");
        assert_eq!(n["policy_error"], Value::Null, "{n}");
    }
    let (_, metrics) = s.cluster.api.get("/metrics").unwrap();
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(&format!("hash=\"{new_hash}\"}} {}", v0 + 1)),
        "{metrics}"
    );

    // Rollback to the older (validly signed) version is refused.
    let old = serde_json::to_value(gov.bundle(&toml, &OFFICERS[..2]).unwrap()).unwrap();
    for n in push(&s, &old) {
        assert!(
            n["policy_error"]
                .as_str()
                .unwrap()
                .contains("rollback refused"),
            "{n}"
        );
        assert_eq!(n["policy"]["hash"], json!(new_hash), "{n}");
    }
}

fn audit(exe: &std::path::Path, bin: &str, args: &[&str]) -> std::process::Output {
    Command::new(exe)
        .arg(bin)
        .arg("audit")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn audit_log_verifies_on_a_real_run_and_a_one_byte_edit_is_detected() {
    let mut s = exclusive();
    crate::signing::sign_transfer(&s, 7);
    // Copies are taken with the writer stopped: a copy of a file being appended to may end in
    // a torn line, which `verify` rightly reports.
    let dir = scratch("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit.jsonl");
    s.cluster.kill_node(0).unwrap();
    std::fs::copy(s.cluster.layout.dir.join("node-1/audit.jsonl"), &file).unwrap();
    s.cluster.kill_coordinator();
    let coord_copy = dir.join("coordinator-audit.jsonl");
    std::fs::copy(
        s.cluster.layout.dir.join("coordinator/audit.jsonl"),
        &coord_copy,
    )
    .unwrap();
    s.cluster.start_coordinator().unwrap();
    s.cluster.start_node_and_wait(0).unwrap();
    let exe = s.cluster.layout.exe.clone();
    let f = file.to_str().unwrap();
    let ok = audit(&exe, "signer-node", &["verify", "--file", f]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(report["records"].as_u64().unwrap() > 3, "{report}");
    let out = dir.join("export.jsonl");
    let exported = audit(
        &exe,
        "signer-node",
        &["export", "--file", f, "--out", out.to_str().unwrap()],
    );
    assert!(exported.status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("\"kind\":\"request.evaluated\"") && text.contains("\"kind\":\"signature\"")
    );

    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'1' { b'2' } else { b'1' };
    std::fs::write(&file, &bytes).unwrap();
    let bad = audit(&exe, "signer-node", &["verify", "--file", f]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("broken at line"),
        "{bad:?}"
    );

    // The coordinator's log verifies with the same command.
    let ok = audit(
        &exe,
        "coordinator",
        &["verify", "--file", coord_copy.to_str().unwrap()],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(report["records"].as_u64().unwrap() > 0, "{report}");
}
