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

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `bytes` (no padding characters): the last group's bits past the data are zero.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..=c.len() {
            out.push(char::from(alphabet[(n >> (18 - 6 * k)) as usize & 63]));
        }
    }
    out
}

/// The base64 characters that `secret` fixes when it starts `offset` (0, 1 or 2) bytes into a
/// 3-byte group of a longer encoded stream: the characters that mix in a neighbouring byte (at
/// the start, or the end's partial group) are dropped, so this is a substring of the stream's
/// encoding whatever surrounds the secret.
fn base64_at(secret: &[u8], offset: usize, alphabet: &[u8; 64]) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(secret);
    let whole_groups = padded.len() / 3;
    let skip = (8 * offset).div_ceil(6);
    base64(&padded[..3 * whole_groups], alphabet)[skip..].to_string()
}

/// Every encoding a leak could take: hex in both cases (also as a number, without leading
/// zeros), base64 (standard and URL-safe alphabets) at each of the 3 byte alignments, and
/// decimal; plus a long prefix and suffix of each, for a partial leak.
fn encodings(secret: &[u8]) -> Vec<String> {
    let hex = hex::encode(secret);
    let mut out = vec![
        hex.clone(),
        hex.to_uppercase(),
        hex.trim_start_matches('0').to_string(),
        hex.trim_start_matches('0').to_uppercase(),
        decimal(secret),
    ];
    for offset in 0..3 {
        for alphabet in [STANDARD, URL_SAFE] {
            out.push(base64_at(secret, offset, alphabet));
        }
    }
    let parts: Vec<String> = out
        .iter()
        .flat_map(|e| {
            let chars: Vec<char> = e.chars().collect();
            let n = chars.len().min(24);
            [
                chars[..n].iter().collect::<String>(),
                chars[chars.len() - n..].iter().collect::<String>(),
            ]
        })
        .collect();
    out.extend(parts);
    out.sort();
    out.dedup();
    out
}

/// The first canary found in `text`, if any.
fn find<'a>(text: &str, canaries: &'a [String]) -> Option<&'a str> {
    canaries
        .iter()
        .map(String::as_str)
        .find(|c| text.contains(c))
}

/// A file searched for canaries: it must exist and hold something (a missing or empty log would
/// otherwise pass as clean).
fn haystack(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!bytes.is_empty(), "{} is empty", path.display());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Positive control of the search itself: files holding the secret deliberately, embedded in
/// other bytes at every alignment and in every encoding, are written to `dir`, read back as
/// the real haystacks are, and each must be found.
fn assert_search_finds_planted(dir: &std::path::Path, secret: &[u8], canaries: &[String]) {
    let mut planted = Vec::new();
    for offset in 0..3 {
        // Different bytes around the secret, so no alignment happens to match by luck.
        let mut stream: Vec<u8> = (0..offset as u8)
            .map(|b| b.wrapping_mul(77) ^ 0xa5)
            .collect();
        stream.extend_from_slice(secret);
        stream.extend_from_slice(&[0xc3, 0x5a, 0x0f][..offset + 1]);
        for alphabet in [STANDARD, URL_SAFE] {
            planted.push(format!("blob={}==", base64(&stream, alphabet)));
        }
        planted.push(format!("bytes=0x{}", hex::encode(&stream)));
        planted.push(format!("BYTES={}", hex::encode_upper(&stream)));
    }
    planted.push(format!("n={} end", decimal(secret)));
    // Only the first 20 bytes (a truncated leak), then only the last 20.
    planted.push(format!("head={}...", hex::encode(&secret[..20])));
    planted.push(format!(
        "tail=...{}",
        hex::encode(&secret[secret.len() - 20..])
    ));
    for (k, text) in planted.iter().enumerate() {
        let path = dir.join(format!("planted-{k}.log"));
        std::fs::write(&path, format!("2026-01-01T00:00:00Z INFO x: {text}\n")).unwrap();
        assert!(
            find(&haystack(&path), canaries).is_some(),
            "the search misses a planted canary: {text}"
        );
    }
}

fn secret_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => hex::decode(s.trim_start_matches("0x"))
            .unwrap_or_else(|e| panic!("a secret string that is not hex ({e}): unknown encoding")),
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
    // Positive controls: the store's own plaintext does contain the canaries, and so does every
    // file where they were written on purpose.
    let plain = share.to_string();
    assert!(
        plain.contains(&hex::encode(&x)) && plain.contains(hex::encode(&p).trim_start_matches('0'))
    );
    assert!(find(&plain, &canaries).is_some());
    assert_search_finds_planted(&dir, &x, &canaries);
    assert_search_finds_planted(&dir, &p, &canaries);

    let mut haystacks: Vec<(String, String)> = responses
        .into_iter()
        .enumerate()
        .map(|(i, r)| (format!("api response {i}"), r))
        .collect();
    // Every process's log and audit log by name (each must exist), and whatever else is in
    // the log directory.
    let logs = s.cluster.layout.dir.join("logs");
    let mut files = vec![backup];
    for n in ["node-1", "node-2", "node-3", "coordinator"] {
        files.push(logs.join(format!("{n}.log")));
        files.push(s.cluster.layout.dir.join(n).join("audit.jsonl"));
    }
    for f in &files {
        haystacks.push((f.display().to_string(), haystack(f)));
    }
    for entry in std::fs::read_dir(&logs).unwrap() {
        let f = entry.unwrap().path();
        if !files.contains(&f) {
            let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let text = String::from_utf8_lossy(&bytes).into_owned();
            haystacks.push((f.display().to_string(), text));
        }
    }
    assert!(haystacks.len() > 15);
    for (name, text) in &haystacks {
        // The canary itself is not printed: it is a secret.
        assert!(
            find(text, &canaries).is_none(),
            "secret canary found in {name}"
        );
    }
}
