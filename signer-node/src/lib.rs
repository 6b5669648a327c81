//! A guardian's signer node.
//!
//! It holds one share of each t-of-n key, sealed in its own redb store; it decodes every
//! settlement transaction itself and computes every digest itself; it signs and encrypts every
//! MPC message end to end; and it dials out to the coordinator, which it does not trust.

pub mod cli;
pub mod config;
pub mod envelope;
pub mod identity;
pub mod init;
pub mod link;
pub mod mpc;
pub mod plan;
pub mod seal;
pub mod secret;
pub mod session;
pub mod store;

use std::{
    future::Future,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use identity::{NodeIdentity, Roster, IDENTITY_RECORD};
use store::{Store, StoreError};

/// Why a node refuses to start. Every message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Store cannot be opened, wrong passphrase, corrupted record.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Config file.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Roster or identity.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] proto::tls::TlsError),
    /// Inconsistent setup.
    #[error("{0}")]
    Setup(String),
}

/// Opens the store and checks every sealed record: a corrupt share or a wrong passphrase stops
/// the node here, with an error naming the record, instead of failing later mid-ceremony.
pub fn open_and_validate(
    cfg: &config::NodeConfig,
    passphrase: &secret::Passphrase,
) -> Result<(Store, NodeIdentity), NodeError> {
    let store = Store::open(&cfg.data_dir, passphrase)?;
    if store.node_id() != cfg.node_id {
        return Err(NodeError::Setup(format!(
            "config says node `{}` but the store at `{}` belongs to `{}`",
            cfg.node_id,
            cfg.data_dir.display(),
            store.node_id()
        )));
    }
    for name in store.secret_names()? {
        let bytes = store
            .get_secret(&name)?
            .ok_or_else(|| StoreError::Missing(name.clone()))?;
        let b = bytes.expose_secret();
        let ok = match name.split('/').next() {
            Some("share") => serde_json::from_slice::<mpc::KeyShare>(b).is_ok(),
            Some("incomplete") => serde_json::from_slice::<mpc::IncompleteKeyShare>(b).is_ok(),
            Some("aux") => serde_json::from_slice::<mpc::AuxInfo>(b).is_ok(),
            Some("primes") => serde_json::from_slice::<mpc::Primes>(b).is_ok(),
            _ => true,
        };
        if !ok {
            return Err(StoreError::Corrupt(name).into());
        }
    }
    let id_bytes = store
        .get_secret(IDENTITY_RECORD)?
        .ok_or_else(|| StoreError::Missing(IDENTITY_RECORD.into()))?;
    let identity = NodeIdentity::from_secret_bytes(&cfg.node_id, id_bytes.expose_secret())?;
    Ok((store, identity))
}

/// Runs the node until `shutdown` resolves.
pub async fn run(
    cfg: config::NodeConfig,
    passphrase: secret::Passphrase,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let (store, identity) = open_and_validate(&cfg, &passphrase)?;
    drop(passphrase);
    let roster = Roster::load(&cfg.roster)?;
    let me = identity.public();
    let pinned = roster.get(&cfg.node_id).ok_or_else(|| {
        NodeError::Setup(format!("node `{}` is missing from the roster", cfg.node_id))
    })?;
    if hex::encode(pinned.sign.as_bytes()) != me.sign_key {
        return Err(NodeError::Setup(
            "the roster's key for this node differs from the node's own identity".into(),
        ));
    }
    let tls = proto::tls::node_client_config(&cfg.ca_cert, &cfg.cert, &cfg.key)?;
    let server_name = rustls::pki_types::ServerName::try_from(cfg.coordinator_name.clone())
        .map_err(|_| {
            NodeError::Setup(format!(
                "invalid coordinator_name `{}`",
                cfg.coordinator_name
            ))
        })?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let core = Arc::new(session::NodeCore::new(
        Arc::new(store),
        Arc::new(identity),
        roster,
        tx,
        session::Timeouts {
            join: Duration::from_secs(cfg.limits.join_timeout_secs),
            protocol: Duration::from_secs(cfg.limits.protocol_timeout_secs),
        },
        cfg.limits.max_parallel_sessions,
        cfg.scope,
    ));
    let link = link::LinkConfig {
        addr: cfg.coordinator_addr.clone(),
        server_name,
        tls: Arc::new(tls),
    };
    tracing::info!(node = %cfg.node_id, "signer node started");
    let connected = Arc::new(AtomicBool::new(false));
    tokio::select! {
        _ = link::maintain(core, link, rx, connected) => {}
        _ = shutdown => tracing::info!("shutting down"),
    }
    Ok(())
}
