//! API access control (issue 6): scoped credentials created and revoked with the CLI while the
//! coordinator runs, 401 without a valid credential, 403 outside its scope (audited), and 429
//! with `Retry-After` over its rate.

use std::process::Command;

use custody_tests::sample;
use serde_json::json;

use crate::common::{rid, shared, Shared, KEY};

fn credential(s: &Shared, args: &[&str]) -> String {
    let file = s.cluster.layout.dir.join("coordinator/credentials.json");
    let out = Command::new(&s.cluster.layout.exe)
        .args(["coordinator", "credential"])
        .args(&args[..1])
        .arg("--file")
        .arg(&file)
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn scoped_credentials_401_403_and_revocation_apply_without_restart() {
    let s = shared();
    let reader = credential(&s, &["add", "--id", "it-reader", "--scope", "read"]);
    let api = s.cluster.api.with_token(Some(&reader));
    let (st, v) = api.get(&format!("/v1/keys/{KEY}")).unwrap();
    assert_eq!(st, 200, "{v}");
    let body = json!({"request_id": rid("scope"), "key_id": KEY, "chain": "ethereum",
        "unsigned_tx": sample::eth_transfer(1, [0x42; 20], 1)});
    let (st, v) = api.post("/v1/sign-requests", &body).unwrap();
    assert_eq!((st, v["code"].as_str()), (403, Some("auth.scope")), "{v}");
    let (st, v) = api.post("/v1/policy", &json!({})).unwrap();
    assert_eq!((st, v["code"].as_str()), (403, Some("auth.scope")), "{v}");

    let submitter = credential(&s, &["add", "--id", "it-submitter", "--scope", "submit"]);
    let sub = s.cluster.api.with_token(Some(&submitter));
    let (st, v) = sub.post("/v1/sign-requests", &body).unwrap();
    assert_eq!(st, 202, "{v}");
    let (st, v) = sub.get(&format!("/v1/keys/{KEY}")).unwrap();
    assert_eq!((st, v["code"].as_str()), (403, Some("auth.scope")), "{v}");
    let (st, v) = sub
        .post("/v1/keys/it-key/freeze", &json!({"epoch": 0}))
        .unwrap();
    assert_eq!((st, v["code"].as_str()), (403, Some("auth.scope")), "{v}");

    credential(&s, &["revoke", "--id", "it-reader"]);
    let (st, v) = api.get(&format!("/v1/keys/{KEY}")).unwrap();
    assert_eq!((st, v["code"].as_str()), (401, Some("auth.invalid")), "{v}");
    let (st, v) = s.cluster.api.with_token(None).get("/v1/nodes").unwrap();
    assert_eq!((st, v["code"].as_str()), (401, Some("auth.missing")), "{v}");

    let listed = credential(&s, &["list"]);
    assert!(
        listed.contains("it-submitter\tsubmit") && !listed.contains("it-reader"),
        "{listed}"
    );
    let stored =
        std::fs::read_to_string(s.cluster.layout.dir.join("coordinator/credentials.json")).unwrap();
    assert!(
        !stored.contains(&submitter),
        "tokens are stored only as hashes"
    );
    let audit =
        std::fs::read_to_string(s.cluster.layout.dir.join("coordinator/audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"auth.denied\"") && audit.contains("it-reader"),
        "denials are audited"
    );
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let s = shared();
    let token = credential(
        &s,
        &["add", "--id", "it-slow", "--scope", "read", "--rate", "2"],
    );
    let api = s.cluster.api.with_token(Some(&token));
    let answers: Vec<(u16, Option<String>)> = (0..6)
        .map(|_| api.get_retry_after("/v1/nodes").unwrap())
        .collect();
    assert_eq!(answers[0].0, 200, "{answers:?}");
    let limited = answers.iter().find(|(st, _)| *st == 429).expect("no 429");
    let retry: u64 = limited.1.as_deref().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{answers:?}");
    // Another credential is not affected.
    let (st, _) = s.cluster.api.get("/v1/nodes").unwrap();
    assert_eq!(st, 200);
}
