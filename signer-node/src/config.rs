//! `node.toml`: where the node's store is, how to reach the coordinator, whom to trust.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The node's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Must match the id recorded at init and the client certificate.
    pub node_id: String,
    /// Directory holding `node.redb`.
    pub data_dir: PathBuf,
    /// `host:port` of the coordinator's node listener.
    pub coordinator_addr: String,
    /// TLS server name of the coordinator certificate.
    #[serde(default = "default_server_name")]
    pub coordinator_name: String,
    /// Cluster CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This node's client certificate (PEM).
    pub cert: PathBuf,
    /// This node's TLS private key (PEM).
    pub key: PathBuf,
    /// JSON array of every node's public identity, exchanged out of band.
    pub roster: PathBuf,
    /// Deadlines and limits.
    #[serde(default)]
    pub limits: Limits,
    /// What this node agrees to sign at all, before any policy rule.
    #[serde(default)]
    pub scope: Scope,
}

/// What a node signs at all. Message signing (proof of reserves) is off unless enabled, so an
/// arbitrary message can never be signed by accident.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    /// Sign EIP-191 / BIP-322 messages (`scope.message`).
    pub messages: bool,
}

/// Deadlines and limits.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds to wait for every party's join message.
    pub join_timeout_secs: u64,
    /// Seconds a whole protocol run may take (aux-info with prime generation is the slowest).
    pub protocol_timeout_secs: u64,
    /// MPC sessions computed at once.
    pub max_parallel_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            join_timeout_secs: 30,
            protocol_timeout_secs: 600,
            max_parallel_sessions: 2,
        }
    }
}

fn default_server_name() -> String {
    "localhost".to_string()
}

/// Config errors.
#[derive(Debug, thiserror::Error)]
#[error("config `{path}`: {msg}")]
pub struct ConfigError {
    path: String,
    msg: String,
}

impl NodeConfig {
    /// Reads and parses a config file; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |msg: String| ConfigError {
            path: path.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.data_dir,
            &mut cfg.ca_cert,
            &mut cfg.cert,
            &mut cfg.key,
            &mut cfg.roster,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }
}
