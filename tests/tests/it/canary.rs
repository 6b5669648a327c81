//! Row 30 of the security matrix: secret canaries. After a scenario with signatures, refusals and
//! errors, node-2's real key share `x_i` and its Paillier prime `p` are looked for, in hex (both
//! cases), base64 and decimal, in every log, audit log, API response, metrics output and backup
//! file. None may contain them.

use std::process::Command;

use custody_tests::{governance::GATE_CHAIN, sample};
use serde_json::{json, Value};

use crate::common::{exclusive, rid, scratch, KEY};

/// Big-endian bytes as a decimal string.
fn decimal(bytes: &[u8]) -> String {
    let mut digits = vec![0u8]; // little-endian base-10 digits
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            let v = u32::from(*d) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..=c.len() {
            out.push(char::from(A[(n >> (18 - 6 * k)) as usize & 63]));
        }
    }
    out
}

/// Every encoding a leak could take, including a long prefix of each.
fn encodings(secret: &[u8]) -> Vec<String> {
    let hex = hex::encode(secret);
    let mut out = vec![
        hex.clone(),
        hex.to_uppercase(),
        base64(secret),
        decimal(secret),
    ];
    let prefixes: Vec<String> = out.iter().map(|e| e.chars().take(24).collect()).collect();
    out.extend(prefixes);
    out
}

fn secret_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => {
            hex::decode(s.trim_start_matches("0x")).unwrap_or_else(|_| s.clone().into_bytes())
        }
        Value::Array(a) => a.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
        // Big integers serialise as `{"radix": 16, "value": "<hex>"}`.
        Value::Object(o) if o.get("radix") == Some(&json!(16)) => {
            let h = o["value"].as_str().unwrap();
            let padded = if h.len() % 2 == 1 {
                format!("0{h}")
            } else {
                h.to_string()
            };
            hex::decode(padded).unwrap()
        }
        other => panic!("unexpected secret encoding: {other}"),
    }
}

#[test]
fn row30_key_share_and_prime_canaries_never_leak() {
    let mut s = exclusive();
    let api = &s.cluster.api;
    let mut responses = Vec::new();
    // A scenario with a signature, a policy refusal, client errors and reads of every view.
    let r = crate::signing::sign_transfer(&s, 91);
    responses.push(serde_json::to_string(&r).unwrap());
    let denied = json!({"request_id": rid("canary"), "key_id": "gate-key", "chain": "ethereum",
        "unsigned_tx": sample::eth_tx_on(GATE_CHAIN, 1, [0x5a; 20], 999_999, vec![])});
    responses.push(
        api.post("/v1/sign-requests", &denied)
            .unwrap()
            .1
            .to_string(),
    );
    for bad in [
        json!({"request_id": "x", "key_id": KEY, "chain": "ethereum", "unsigned_tx": "0x02ff"}),
        json!({"request_id": "y", "key_id": KEY, "digest": "ab".repeat(32)}),
    ] {
        responses.push(api.post("/v1/sign-requests", &bad).unwrap().1.to_string());
    }
    for path in [
        "/v1/keys/it-key",
        "/v1/nodes",
        "/v1/policy",
        "/metrics",
        "/v1/keys/nope",
    ] {
        responses.push(api.get(path).unwrap().1.to_string());
    }
    responses.push(
        api.with_token(Some("wrong"))
            .get("/v1/nodes")
            .unwrap()
            .1
            .to_string(),
    );

    // Node-2's secrets, read from its own store while it is stopped, then an encrypted backup.
    let nd = s.cluster.layout.dir.join("node-2");
    s.cluster.kill_node(1).unwrap();
    let pass = std::fs::read_to_string(nd.join("passphrase")).unwrap();
    let store =
        signer_node::store::Store::open(&nd, &signer_node::secret::Passphrase::new(pass)).unwrap();
    let share: Value = serde_json::from_slice(
        store
            .get_secret(&format!("share/{KEY}"))
            .unwrap()
            .unwrap()
            .expose_secret(),
    )
    .unwrap();
    drop(store);
    let dir = scratch("canary");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = &s.cluster.layout.exe;
    let key = dir.join("recovery.key");
    let out = Command::new(exe)
        .args(["signer-node", "recovery-keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    let recipient = String::from_utf8(out.stdout).unwrap();
    let backup = dir.join("node-2.backup");
    let st = Command::new(exe)
        .args(["signer-node", "backup", "--config"])
        .arg(nd.join("node.toml"))
        .arg("--passphrase-file")
        .arg(nd.join("passphrase"))
        .args(["--recipient", recipient.trim(), "--out"])
        .arg(&backup)
        .status()
        .unwrap();
    assert!(st.success());
    s.cluster.start_node_and_wait(1).unwrap();

    let x = secret_bytes(&share["core"]["x"]);
    let p = secret_bytes(&share["aux"]["p"]);
    assert!(
        x.len() >= 31 && p.len() > 100,
        "canaries found: {} / {} bytes",
        x.len(),
        p.len()
    );
    let canaries: Vec<String> = encodings(&x).into_iter().chain(encodings(&p)).collect();
    // Positive control: the store's own plaintext does contain the canaries.
    let plain = share.to_string();
    assert!(
        plain.contains(&hex::encode(&x)) && plain.contains(hex::encode(&p).trim_start_matches('0'))
    );

    let mut haystacks: Vec<(String, String)> = responses
        .into_iter()
        .enumerate()
        .map(|(i, r)| (format!("api response {i}"), r))
        .collect();
    let mut files = vec![backup];
    for entry in std::fs::read_dir(s.cluster.layout.dir.join("logs")).unwrap() {
        files.push(entry.unwrap().path());
    }
    for n in ["node-1", "node-2", "node-3", "coordinator"] {
        files.push(s.cluster.layout.dir.join(n).join("audit.jsonl"));
    }
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        haystacks.push((
            f.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    assert!(haystacks.len() > 15);
    for (name, text) in &haystacks {
        for c in &canaries {
            assert!(!text.contains(c.as_str()), "secret canary found in {name}");
        }
    }
}
