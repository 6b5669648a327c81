//! The README's main command, from scratch: `devnet` generates fresh primes, certificates and a
//! 2-of-3 key, then signs its sample transaction (`--smoke` exits after that).
//!
//! In CI the three nodes are initialised beforehand with the TEST-ONLY committed primes (the
//! devnet keeps a node it finds initialised): fresh prime generation costs minutes of a core
//! and is the soak's part. The soak command ([`crate::common::SOAK_ENV`]) runs it with fresh
//! primes on every node, through `signer-node init` as a process, as the README does.

use std::process::Command;

use custody_tests::cluster::{free_port, Layout, PrimeSource};

#[test]
fn devnet_from_scratch_signs_its_sample_transaction() {
    let dir = std::env::temp_dir().join(format!("custody-devnet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (api_port, node_port) = (free_port().unwrap(), free_port().unwrap());
    if std::env::var_os(crate::common::SOAK_ENV).is_none() {
        let exe = env!("CARGO_BIN_EXE_devnet").into();
        Layout::loopback(dir.clone(), 3, exe, api_port, node_port)
            .init_nodes(3, PrimeSource::TestFixture)
            .unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .arg("--dir")
        .arg(&dir)
        .args(["--api-port", &api_port.to_string()])
        .args(["--node-port", &node_port.to_string()])
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
    // The README's sample settlement call: every node decoded it as the vault's `settle`.
    assert!(stdout.contains("settle call signed"), "{stdout}");
    assert_eq!(
        stdout.matches("decoded: vault.settle(batch=0x0b0b").count(),
        3,
        "{stdout}"
    );
    // And the sample EIP-2612 permit (typed data).
    assert!(stdout.contains("permit signed"), "{stdout}");
    assert!(
        stdout.contains("account smoke-client (m/0): withdrawal signed"),
        "{stdout}"
    );
    // In the soak, node-3 generated its own primes through `signer-node init` (the progress
    // line); in CI every node kept its committed primes and none generated any.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let generated =
        stderr.contains("initialising node-3 (3/3): generating its Paillier safe primes");
    assert_eq!(
        generated,
        std::env::var_os(crate::common::SOAK_ENV).is_some(),
        "{stderr}"
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
