//! `node.toml`: where the node's store is, how to reach the coordinator, whom to trust.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The node's configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Who may sign policies, vetoes and freezes. Without it the node signs nothing.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Added to the system clock, in seconds. For drills and tests of time-locks only: time-locks
    /// run from when *this* node first saw a request, by this clock.
    #[serde(default)]
    pub clock_offset_secs: i64,
    /// Local address of the `/healthz` and `/readyz` endpoints (plain HTTP; keep it on
    /// loopback or a private network). Off when unset.
    #[serde(default)]
    pub health_listen: Option<String>,
}

/// Keys pinned in the node's own configuration, never taken from a policy or the coordinator.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Security officers' Ed25519 public keys (hex): they sign policy bundles and unfreezes.
    pub officers: Vec<String>,
    /// Distinct officer signatures a bundle or an unfreeze needs.
    pub threshold: usize,
    /// Guardians' Ed25519 public keys (hex): any one may veto a request or freeze a key.
    pub guardians: Vec<String>,
    /// A bundle file offered at every start (installed if newer than the stored policy).
    pub bundle: Option<PathBuf>,
    /// Seconds a newly received policy version waits before it becomes active (0: at once).
    /// The very first policy a node receives is active at once.
    pub activation_delay_secs: u64,
}

impl PolicyConfig {
    /// Parses the pinned officer keys.
    pub fn officer_keys(&self) -> Result<Vec<[u8; 32]>, String> {
        parse_keys(&self.officers, "policy.officers")
    }

    /// Parses the pinned guardian keys.
    pub fn guardian_keys(&self) -> Result<Vec<[u8; 32]>, String> {
        parse_keys(&self.guardians, "policy.guardians")
    }
}

fn parse_keys(keys: &[String], field: &str) -> Result<Vec<[u8; 32]>, String> {
    keys.iter()
        .map(|k| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(k.trim(), &mut out).map_err(|_| {
                format!("`{field}`: `{k}` is not an Ed25519 public key (64 hex digits)")
            })?;
            Ok(out)
        })
        .collect()
}

/// What a node signs at all, before any policy rule. Everything is off unless listed: a node
/// with an empty scope signs nothing, and an arbitrary message is never signed by accident.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    /// EIP-155 chain ids this node signs Ethereum transactions for (`node.scope.chain`).
    pub ethereum_chain_ids: Vec<u64>,
    /// Bitcoin networks this node signs for: `mainnet`, `testnet`, `signet`, `regtest`.
    pub bitcoin_networks: Vec<String>,
    /// Sign EIP-191 / BIP-322 messages (`node.scope.message`).
    pub messages: bool,
    /// Sign Ethereum calls other than plain and ERC-20 transfers, and EIP-712 typed data
    /// (`node.scope.contract_call`).
    pub contract_calls: bool,
}

impl Scope {
    /// Checks a decoded intent against the node's scope; `Err` carries the stable code.
    pub fn check(
        &self,
        intent: &proto::intent::WithdrawalIntent,
    ) -> Result<(), (&'static str, String)> {
        use proto::intent::{ChainRef, IntentKind};
        if intent.kind == IntentKind::Message {
            return match self.messages {
                true => Ok(()),
                false => Err((
                    "node.scope.message",
                    "this node does not sign messages (`[scope] messages` is off)".into(),
                )),
            };
        }
        let call = matches!(
            intent.kind,
            IntentKind::ContractCall | IntentKind::TypedData
        );
        if call && !self.contract_calls {
            return Err((
                "node.scope.contract_call",
                "this node does not sign contract calls or typed data (`[scope] contract_calls` is off)".into(),
            ));
        }
        let allowed = match &intent.chain {
            ChainRef::Ethereum { chain_id } => self.ethereum_chain_ids.contains(chain_id),
            ChainRef::Bitcoin { network } => self.bitcoin_networks.contains(network),
        };
        match allowed {
            true => Ok(()),
            false => Err((
                "node.scope.chain",
                format!("{:?} is outside this node's scope", intent.chain),
            )),
        }
    }
}

/// Deadlines and limits.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds to wait for every party's join message.
    pub join_timeout_secs: u64,
    /// Seconds a whole protocol run may take (aux-info with prime generation is the slowest).
    pub protocol_timeout_secs: u64,
    /// MPC sessions computed at once.
    pub max_parallel_sessions: usize,
    /// Seconds a signing round may wait for one message before the session aborts, naming the
    /// parties that did not deliver.
    pub round_timeout_secs: u64,
    /// The same for key-generation and aux-info rounds (peers may be generating primes).
    pub ceremony_round_timeout_secs: u64,
    /// Seconds a stopping node (SIGTERM) lets running sessions finish before aborting them.
    pub shutdown_grace_secs: u64,
    /// Unused presignatures kept per key and signer subset; beyond it the oldest is deleted.
    pub max_presignatures: usize,
    /// Presign (pool refill) sessions computed at once, apart from the signing slots, so a
    /// refill never holds a slot an online signing needs.
    pub max_presign_sessions: usize,
    /// Seconds a ledger gap (entries a peer claims exist that never arrive) defers velocity-
    /// limited requests; after it the gap is reported and no longer waited for.
    pub ledger_gap_timeout_secs: u64,
    /// Seconds this node remembers requests and ledger entries that no policy window reaches
    /// any more (raised to at least 8 days, and to what the policy's windows, time-locks and
    /// approval lifetimes need; see `docs/limits/bounds.md`).
    pub retention_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            join_timeout_secs: 30,
            protocol_timeout_secs: 600,
            max_parallel_sessions: 2,
            round_timeout_secs: 30,
            ceremony_round_timeout_secs: 600,
            shutdown_grace_secs: 20,
            max_presignatures: 64,
            max_presign_sessions: 1,
            ledger_gap_timeout_secs: 3600,
            retention_secs: crate::prune::DEFAULT_RETENTION_SECS,
        }
    }
}

fn default_server_name() -> String {
    "localhost".to_string()
}

pub use runtime::config::ConfigError;

impl NodeConfig {
    /// Reads and parses a config file; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        runtime::config::load_toml(path, |c: &mut NodeConfig| {
            vec![
                &mut c.data_dir,
                &mut c.ca_cert,
                &mut c.cert,
                &mut c.key,
                &mut c.roster,
            ]
            .into_iter()
            .chain(c.policy.bundle.as_mut())
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use proto::intent::{Asset, ChainRef, IntentKind, Payment, WithdrawalIntent};

    use super::Scope;

    fn call(kind: IntentKind) -> WithdrawalIntent {
        WithdrawalIntent {
            key_id: "k".into(),
            account: None,
            chain: ChainRef::Ethereum { chain_id: 1 },
            kind,
            asset: Asset::Native,
            payments: vec![Payment {
                destination: "0x4444444444444444444444444444444444444444".into(),
                amount: 0,
            }],
            change: vec![],
            fee: 1,
            calldata: Some("0xdeadbeef".into()),
            typed_data: None,
        }
    }

    #[test]
    fn node_scope_contract_call_is_off_unless_listed() {
        let mut scope = Scope {
            ethereum_chain_ids: vec![1],
            ..Scope::default()
        };
        let refused = scope.check(&call(IntentKind::ContractCall)).unwrap_err();
        assert_eq!(refused.0, "node.scope.contract_call");
        assert!(scope.check(&call(IntentKind::Transfer)).is_ok());
        let typed = scope.check(&call(IntentKind::TypedData)).unwrap_err();
        assert_eq!(typed.0, "node.scope.contract_call");
        scope.contract_calls = true;
        assert!(scope.check(&call(IntentKind::ContractCall)).is_ok());
        assert!(scope.check(&call(IntentKind::TypedData)).is_ok());
    }
}
