//! Row 29 of the security matrix, and encrypted backups: a node backed up to an offline age
//! recovery key, then lost, is restored under a new passphrase and signs with the cluster again.
//! A backup does not open with any other recovery identity.

use crate::common::{exclusive, ok, scratch, Shared};

fn node_cli(s: &Shared, args: &[&str]) -> std::process::Output {
    crate::common::node_cli(&s.cluster.layout.exe, args)
}

#[test]
fn row29_lost_node_is_restored_from_an_encrypted_backup_and_signs_again() {
    let mut s = exclusive();
    let dir = scratch("backup");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let recipient = ok(&node_cli(
        &s,
        &["recovery-keygen", "--out", &p("recovery.key")],
    ));
    assert!(recipient.starts_with("age1"), "{recipient}");
    let other = ok(&node_cli(
        &s,
        &["recovery-keygen", "--out", &p("other.key")],
    ));
    assert!(other.starts_with("age1"));

    let nd = s.cluster.layout.dir.join("node-3");
    let n = |f: &str| nd.join(f).to_str().unwrap().to_string();
    s.cluster.kill_node(2).unwrap();
    let out = node_cli(
        &s,
        &[
            "backup",
            "--config",
            &n("node.toml"),
            "--passphrase-file",
            &n("passphrase"),
            "--recipient",
            &recipient,
            "--out",
            &p("node-3.backup"),
        ],
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("share/it-key"));
    let sealed = std::fs::read(p("node-3.backup")).unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1"));
    assert!(
        !sealed.windows(7).any(|w| w == b"share/i"),
        "record names are encrypted too"
    );

    // The node is lost: its store and identity file are gone, and so is its passphrase.
    std::fs::remove_file(nd.join(signer_node::store::DB_FILE)).unwrap();
    std::fs::remove_file(nd.join(signer_node::init::IDENTITY_FILE)).unwrap();
    std::fs::write(nd.join("passphrase"), "a new passphrase after the loss").unwrap();

    let wrong = node_cli(
        &s,
        &[
            "restore",
            "--backup",
            &p("node-3.backup"),
            "--identity",
            &p("other.key"),
            "--data-dir",
            &n(""),
            "--passphrase-file",
            &n("passphrase"),
        ],
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("does not decrypt"));
    ok(&node_cli(
        &s,
        &[
            "restore",
            "--backup",
            &p("node-3.backup"),
            "--identity",
            &p("recovery.key"),
            "--data-dir",
            &n(""),
            "--passphrase-file",
            &n("passphrase"),
        ],
    ));

    // The restored node-3 must take part: node-1 is down, so only {node-2, node-3} can sign.
    s.cluster.start_node_and_wait(2).unwrap();
    s.cluster.kill_node(0).unwrap();
    let r = crate::signing::sign_transfer(&s, 77);
    crate::signing::assert_valid_signature(&s, &r);
    assert!(r.signers.contains(&"node-3".to_string()), "{r:?}");
    s.cluster.start_node_and_wait(0).unwrap();
}
