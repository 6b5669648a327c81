//! `coordinator.toml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The coordinator's configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoordConfig {
    /// Directory holding `coordinator.redb`.
    pub data_dir: PathBuf,
    /// REST API listen address.
    pub api_listen: String,
    /// Node link listen address (mutual TLS 1.3).
    pub node_listen: String,
    /// Cluster CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// Server certificate (PEM), used on both listeners.
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// SHA-256 (hex) of each accepted API bearer token. Tokens themselves are never stored.
    #[serde(default)]
    pub api_token_sha256: Vec<String>,
    /// Scoped credentials managed with `coordinator credential …`; re-read when it changes.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Client-certificate names (DNS SAN, issued by the cluster CA) accepted instead of a token.
    #[serde(default)]
    pub api_client_cert_names: Vec<String>,
    /// Also accept TLS 1.2 (modern suites only) on the public API.
    #[serde(default)]
    pub api_allow_tls12: bool,
    /// Deadlines and limits.
    #[serde(default)]
    pub limits: Limits,
    /// Presignature pool.
    #[serde(default)]
    pub presign: PresignConfig,
}

/// The presignature pool: kept per key and signer subset, refilled when signing is idle.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresignConfig {
    /// Unused presignatures kept per key and signer subset, for keys without their own depth
    /// (`PUT /v1/keys/{id}/presignatures`). 0: sign every request fully interactively.
    pub default_depth: u32,
    /// Refill (presign) sessions at once across the cluster.
    pub max_parallel: usize,
    /// Milliseconds without any online signing session before a refill starts: a refill never
    /// competes with a signing that is already running.
    pub idle_ms: u64,
    /// Seconds a refill session may take.
    pub timeout_secs: u64,
}

impl Default for PresignConfig {
    fn default() -> Self {
        Self {
            default_depth: 4,
            max_parallel: 1,
            idle_ms: 200,
            timeout_secs: 60,
        }
    }
}

/// Deadlines and limits.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds for a DKG session.
    pub keygen_timeout_secs: u64,
    /// Seconds for an aux-info session (may include prime generation on nodes).
    pub aux_timeout_secs: u64,
    /// Seconds for one signing attempt.
    pub sign_timeout_secs: u64,
    /// Seconds a request waits for enough signer nodes to be connected.
    pub wait_for_signers_secs: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Requests per second per credential (also the burst), unless the credential sets its own.
    pub api_rate_per_sec: u32,
    /// Signing sessions run at once; further requests queue in arrival order.
    pub max_concurrent_sessions: usize,
    /// Signing sessions one node takes part in at once: set it to the nodes'
    /// `max_parallel_sessions`, so that no node waits for a compute slot mid-protocol.
    pub max_sessions_per_node: usize,
    /// Seconds a stopping coordinator (SIGTERM) lets running sessions finish.
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            keygen_timeout_secs: 120,
            aux_timeout_secs: 900,
            sign_timeout_secs: 60,
            wait_for_signers_secs: 30,
            max_body_bytes: 256 * 1024,
            api_rate_per_sec: 100,
            max_concurrent_sessions: 8,
            max_sessions_per_node: 2,
            shutdown_grace_secs: 20,
        }
    }
}

pub use runtime::config::ConfigError;

impl CoordConfig {
    /// Reads a config file; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg = runtime::config::load_toml(path, |c: &mut CoordConfig| {
            vec![&mut c.data_dir, &mut c.ca_cert, &mut c.cert, &mut c.key]
                .into_iter()
                .chain(c.credentials_file.as_mut())
                .collect()
        })?;
        for h in &cfg.api_token_sha256 {
            if h.len() != 64 || hex::decode(h).is_err() {
                return Err(ConfigError::new(
                    path,
                    format!("api_token_sha256 entry `{h}` is not 64 hex characters"),
                ));
            }
        }
        Ok(cfg)
    }
}
