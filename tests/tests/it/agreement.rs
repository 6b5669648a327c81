//! Agreement before signing: a coordinator that shows node A one transaction and node B another
//! gets `session.intent_mismatch` from both, and no signature exists. The coordinator here is a
//! rogue one written in the test, speaking the real protocol to real node processes.

use std::{
    process::{Child, Stdio},
    time::Duration,
};

use custody_tests::{cluster::EXIT_WITH_PARENT, rogue::Rogue, sample};
use proto::{
    payload::SignPayload,
    wire::{CoordFrame, SessionKind, SessionStart},
};

use crate::common::{copy_node, exclusive, scratch, KEY};

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn equivocating_coordinator_gets_intent_mismatch_and_no_signature() {
    let mut s = exclusive();
    let rogue = Rogue::start(&s.cluster.layout.dir.join("pki")).unwrap();
    let mut children = Kill(vec![]);
    for (i, id) in ["node-1", "node-2"].into_iter().enumerate() {
        let dst = scratch(&format!("rogue-{id}"));
        copy_node(&mut s, i, &dst);
        let cfg: String = std::fs::read_to_string(dst.join("node.toml"))
            .unwrap()
            .lines()
            .map(|l| match l.starts_with("coordinator_addr") {
                true => format!("coordinator_addr = \"127.0.0.1:{}\"\n", rogue.port),
                false => format!("{l}\n"),
            })
            .collect();
        std::fs::write(dst.join("node.toml"), cfg).unwrap();
        let child = std::process::Command::new(&s.cluster.layout.exe)
            .args(["signer-node", "run", "--config"])
            .arg(dst.join("node.toml"))
            .arg("--passphrase-file")
            .arg(dst.join("passphrase"))
            .env(EXIT_WITH_PARENT, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.0.push(child);
    }
    rogue
        .wait_nodes(&["node-1", "node-2"], Duration::from_secs(30))
        .unwrap();
    let sid: [u8; 32] = rand::random();
    let parties = vec!["node-1".to_string(), "node-2".to_string()];
    rogue.route(sid, parties.clone());
    for (node, dest) in [("node-1", [0x11u8; 20]), ("node-2", [0x66u8; 20])] {
        let tx = hex::decode(sample::eth_transfer(1, dest, 5).trim_start_matches("0x")).unwrap();
        let start = SessionStart {
            session_id: sid,
            key_id: KEY.into(),
            parties: parties.clone(),
            kind: SessionKind::Sign {
                request_id: "equivocation".into(),
                payload: SignPayload::EthTx(tx),
                part: 0,
                approvals: vec![],
            },
        };
        assert!(rogue.send(node, CoordFrame::Start(start)));
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (node, rsid, result) = rogue
            .next_report(Duration::from_secs(60))
            .expect("a report from each node");
        assert_eq!(rsid, sid);
        let failure = result.expect_err("no node may produce a signature");
        assert_eq!(failure.code, "session.intent_mismatch", "{failure:?}");
        assert!(
            failure.message.contains("node-1") && failure.message.contains("node-2"),
            "{}",
            failure.message
        );
        seen.push(node);
    }
    seen.sort();
    assert_eq!(seen, ["node-1", "node-2"]);
}
