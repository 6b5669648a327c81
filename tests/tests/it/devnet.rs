//! The README's main command, from scratch: `devnet` generates fresh primes, certificates and a
//! 2-of-3 key, then signs its sample transaction (`--smoke` exits after that).

use std::process::Command;

use custody_tests::cluster::free_port;

#[test]
fn devnet_from_scratch_signs_its_sample_transaction() {
    let dir = std::env::temp_dir().join(format!("custody-devnet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .arg("--dir")
        .arg(&dir)
        .args(["--api-port", &free_port().unwrap().to_string()])
        .args(["--node-port", &free_port().unwrap().to_string()])
        .arg("--smoke")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "devnet failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"status\": \"signed\""), "{stdout}");
    assert!(
        stdout.contains("account smoke-client (m/0): withdrawal signed"),
        "{stdout}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("devnet.json")).unwrap()).unwrap();
    for field in [
        "api_url",
        "ca_cert",
        "api_token",
        "key_id",
        "ethereum_address",
    ] {
        assert!(info[field].is_string(), "devnet.json lacks {field}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
