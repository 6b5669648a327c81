//! The cluster CA and its certificates for a test or devnet cluster, made with the same code as
//! `coordinator pki`: the coordinator's server certificate (`localhost`, `127.0.0.1` and the
//! coordinator's host), one client certificate per node (`<node_id>.node`) and an API client
//! certificate (`exchange.client`).

use std::path::Path;

use coordinator::pki::{create_ca, issue, Leaf, LEAF_DAYS};

/// The API client certificate's name (listed in `api_client_cert_names`).
pub const API_CLIENT: &str = "exchange.client";

/// Writes `ca.pem`/`.key`, `coordinator.pem`/`.key`, `<node>.pem`/`.key` and
/// `exchange.client.pem`/`.key` into `dir`, unless the last of them exists.
pub fn ensure_pki(dir: &Path, nodes: &[String], coordinator_host: &str) -> anyhow::Result<()> {
    if dir.join(format!("{API_CLIENT}.pem")).exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?; // a half-made PKI from an interrupted run
    }
    create_ca(dir, "custody cluster CA")?;
    let mut server_names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !server_names.iter().any(|n| n == coordinator_host) {
        server_names.push(coordinator_host.to_string());
    }
    issue(dir, dir, &Leaf::Server(server_names), None, LEAF_DAYS)?;
    for n in nodes {
        issue(dir, dir, &Leaf::Node(n.clone()), None, LEAF_DAYS)?;
    }
    issue(
        dir,
        dir,
        &Leaf::ApiClient(API_CLIENT.into()),
        None,
        LEAF_DAYS,
    )?;
    Ok(())
}

/// Writes a file readable only by its owner (0600).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(coordinator::pki::write_private(path, bytes)?)
}
