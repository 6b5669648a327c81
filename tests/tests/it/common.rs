use std::{
    sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::Duration,
};

use custody_tests::cluster::{free_port, Cluster, Layout, PrimeSource};
use proto::api::KeyInfo;

pub const KEY: &str = "it-key";

pub struct Shared {
    pub cluster: Cluster,
    pub key: KeyInfo,
}

static SHARED: OnceLock<Result<RwLock<Shared>, String>> = OnceLock::new();

fn init() -> Result<RwLock<Shared>, String> {
    // Set up once; a failure is remembered so that every test reports it instead of retrying.
    try_init().map_err(|e| format!("{e:#}"))
}

fn try_init() -> anyhow::Result<RwLock<Shared>> {
    let dir = std::env::temp_dir().join(format!("custody-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let layout = Layout::loopback(
        dir,
        3,
        env!("CARGO_BIN_EXE_devnet").into(),
        free_port()?,
        free_port()?,
    );
    layout.ensure(PrimeSource::TestFixture)?;
    let cluster = Cluster::start(layout)?;
    let key = cluster.ensure_key(KEY, 2, Duration::from_secs(300))?;
    for k in [
        "gate-key", "vel-key", "frz-key", "inc-key", "pool-key", "acct-key",
    ] {
        cluster.ensure_key(k, 2, Duration::from_secs(120))?;
    }
    Ok(RwLock::new(Shared { cluster, key }))
}

fn get() -> &'static RwLock<Shared> {
    match SHARED.get_or_init(init) {
        Ok(s) => s,
        Err(e) => panic!("cluster setup failed: {e}"),
    }
}

/// Shared cluster, read access (all nodes up).
pub fn shared() -> RwLockReadGuard<'static, Shared> {
    get().read().unwrap_or_else(|p| p.into_inner())
}

/// Shared cluster, exclusive access (may stop and restart nodes; must leave all nodes up).
pub fn exclusive() -> RwLockWriteGuard<'static, Shared> {
    get().write().unwrap_or_else(|p| p.into_inner())
}

/// Environment variable that runs the fault and load loops at full length (the README's soak
/// command); without it CI runs shorter versions of the same loops.
pub const SOAK_ENV: &str = "CUSTODY_SOAK";

/// How many rounds a loop runs: `ci` by default, `soak` when [`SOAK_ENV`] is set.
pub fn rounds(ci: usize, soak: usize) -> usize {
    match std::env::var_os(SOAK_ENV) {
        Some(_) => soak,
        None => ci,
    }
}

/// A fresh request id.
pub fn rid(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Copies node `i`'s data directory and config (to run it elsewhere, or to damage it). The node
/// is stopped (SIGKILL, which redb survives) while its store is copied, then restarted: copying a
/// store that is being written gives a torn snapshot that no crash could produce.
pub fn copy_node(s: &mut Shared, i: usize, dst: &std::path::Path) {
    settle_ledgers(s);
    s.cluster.kill_node(i).unwrap();
    copy_store(&s.cluster, i, dst);
    s.cluster.start_node_and_wait(i).unwrap();
}

/// Copies stopped node `i`'s store, audit log, identity and config to `dst`.
pub fn copy_store(c: &custody_tests::cluster::Cluster, i: usize, dst: &std::path::Path) {
    let src = c.layout.dir.join(&c.layout.nodes[i]);
    std::fs::create_dir_all(dst).unwrap();
    // The audit log goes with the store: the store anchors the log's head, and a node whose
    // log is shorter than its anchor refuses to start (`audit.truncated`).
    for f in [
        "node.redb",
        "audit.jsonl",
        "passphrase",
        "identity.json",
        "node.toml",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    // The copy runs next to the original: it must not claim the original's health port.
    let cfg = std::fs::read_to_string(dst.join("node.toml")).unwrap();
    let cfg: String = cfg
        .lines()
        .filter(|l| !l.starts_with("health_listen"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dst.join("node.toml"), cfg).unwrap();
}

/// Points the node copy in `dst` at a rogue coordinator on `port`, with short protocol
/// deadlines.
pub fn point_at_rogue(dst: &std::path::Path, port: u16) {
    point_at(
        dst,
        port,
        "join_timeout_secs = 8\nprotocol_timeout_secs = 8\nround_timeout_secs = 4\n",
    );
}

/// Points the node copy in `dst` at a coordinator on `port`, with `limits` (lines of its
/// `[limits]` section).
pub fn point_at(dst: &std::path::Path, port: u16, limits: &str) {
    let mut cfg: String = std::fs::read_to_string(dst.join("node.toml"))
        .unwrap()
        .lines()
        .map(|l| match l.starts_with("coordinator_addr") {
            true => format!("coordinator_addr = \"127.0.0.1:{port}\"\n"),
            false => format!("{l}\n"),
        })
        .collect();
    cfg.push_str("\n[limits]\n");
    cfg.push_str(limits);
    std::fs::write(dst.join("node.toml"), cfg).unwrap();
}

/// Runs `exe signer-node <args>` without the passphrase variable of the test's environment.
pub fn node_cli(exe: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(exe)
        .arg("signer-node")
        .args(args)
        .env_remove(signer_node::cli::PASSPHRASE_ENV)
        .output()
        .unwrap()
}

/// The trimmed stdout of a command that must have succeeded (else its stderr, as the panic).
pub fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A scratch directory unique to this test run.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("custody-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Rewrites node `i`'s `node.toml` with `edit` and restarts the node.
pub fn edit_node_config(s: &mut Shared, i: usize, edit: impl FnOnce(String) -> String) {
    let path = s
        .cluster
        .layout
        .dir
        .join(&s.cluster.layout.nodes[i])
        .join("node.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    s.cluster.restart_node(i).unwrap();
}

/// Waits (bounded) until every node reports the same ledger heads and no gap, so that a copy
/// taken now does not miss entries still being relayed by earlier tests (a copy moved to a
/// rogue coordinator could never fetch them, and its sessions would stop at `ledger.behind`).
fn settle_ledgers(s: &Shared) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok((200, v)) = s.cluster.api.get("/v1/nodes") {
            let statuses: Vec<&serde_json::Value> = v["nodes"]
                .as_object()
                .map(|m| m.values().map(|n| &n["status"]).collect())
                .unwrap_or_default();
            let same = statuses
                .windows(2)
                .all(|w| w[0]["ledger_heads"] == w[1]["ledger_heads"]);
            let no_gaps = statuses
                .iter()
                .all(|st| st["ledger_gaps"].as_array().is_some_and(|g| g.is_empty()));
            if statuses.len() == s.cluster.layout.nodes.len() && same && no_gaps {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `signer-node check` of node `i` (stopped), its JSON summary; fails the test if the check fails.
pub fn node_check(c: &custody_tests::cluster::Cluster, i: usize) -> serde_json::Value {
    let nd = c.layout.dir.join(&c.layout.nodes[i]);
    let out = std::process::Command::new(&c.layout.exe)
        .args(["signer-node", "check", "--config"])
        .arg(nd.join("node.toml"))
        .arg("--passphrase-file")
        .arg(nd.join("passphrase"))
        .env_remove(signer_node::cli::PASSPHRASE_ENV)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "signer-node check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The start of a full signing session (no presignature) of `tx`, an unsigned EIP-1559
/// transaction, by `parties` with the key's share epoch `epoch`: what a coordinator sends each
/// party (a rogue one may send each party another).
pub fn sign_start(
    key_id: &str,
    epoch: u64,
    parties: &[String],
    session_id: [u8; 32],
    request_id: &str,
    tx: Vec<u8>,
) -> proto::wire::SessionStart {
    proto::wire::SessionStart {
        epoch,
        session_id,
        key_id: key_id.into(),
        parties: parties.to_vec(),
        kind: proto::wire::SessionKind::Sign {
            request_id: request_id.into(),
            payload: proto::payload::SignPayload::EthTx(tx),
            part: 0,
            approvals: vec![],
            presignature: None,
            account: None,
        },
    }
}
