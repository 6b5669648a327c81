//! A node refuses to start, with a clear error, when its passphrase is wrong or a stored share
//! is corrupted. Runs the real `signer-node run` on a copy of a cluster node's data directory.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use redb::ReadableTable;

use crate::common::{copy_node, exclusive, scratch, KEY};

/// Runs the node to completion (bounded) and returns (exit success, stderr).
fn run_node(exe: &Path, dir: &Path, passphrase_file: &Path) -> (bool, String) {
    let mut child = Command::new(exe)
        .args(["signer-node", "run", "--config"])
        .arg(dir.join("node.toml"))
        .arg("--passphrase-file")
        .arg(passphrase_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (
                status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("node kept running although it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn row29_wrong_passphrase_refuses_to_start() {
    let mut s = exclusive();
    let dst = scratch("wrongpass");
    copy_node(&mut s, 0, &dst);
    let wrong = dst.join("wrong-passphrase");
    std::fs::write(&wrong, "not the passphrase").unwrap();
    let (ok, err) = run_node(&s.cluster.layout.exe, &dst, &wrong);
    assert!(!ok);
    assert!(err.contains("wrong passphrase"), "stderr: {err}");
    assert!(
        !err.contains("not the passphrase"),
        "the passphrase must never be echoed"
    );
}

#[test]
fn row29_corrupted_share_refuses_to_start() {
    let mut s = exclusive();
    let dst = scratch("corrupt");
    copy_node(&mut s, 1, &dst);
    let record = format!("share/{KEY}");
    {
        let db = redb::Database::create(dst.join("node.redb")).unwrap();
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("sealed");
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(table).unwrap();
            let mut v = t
                .get(record.as_str())
                .unwrap()
                .expect("share record")
                .value()
                .to_vec();
            let mid = v.len() / 2;
            v[mid] ^= 0x01;
            t.insert(record.as_str(), v.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let (ok, err) = run_node(&s.cluster.layout.exe, &dst, &dst.join("passphrase"));
    assert!(!ok);
    assert!(
        err.contains(&record) && err.contains("corrupted"),
        "stderr: {err}"
    );
}

#[test]
fn running_nodes_cannot_dump_core() {
    let s = crate::common::shared();
    for i in 0..s.cluster.layout.nodes.len() {
        let pid = s.cluster.node_pid(i).unwrap();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        let fields: Vec<&str> = core.split_whitespace().collect();
        assert_eq!(&fields[4..6], &["0", "0"], "{core}");
    }
}
