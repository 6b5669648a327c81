//! A guardian's signer node.
//!
//! It holds one share of each t-of-n key, sealed in its own redb store; it decodes every
//! settlement transaction itself and computes every digest itself; it signs and encrypts every
//! MPC message end to end; and it dials out to the coordinator, which it does not trust.

pub mod accounts;
pub mod backup;
pub mod cli;
pub mod config;
pub mod control;
pub mod envelope;
pub mod guard;
pub mod health;
pub mod hygiene;
pub mod identity;
pub mod init;
pub mod ledger;
pub mod link;
pub mod mpc;
pub mod plan;
pub mod policy_book;
pub mod presig;
pub mod prune;
pub mod reshare;
pub mod seal;
pub mod secret;
pub mod session;
pub mod store;
pub mod sync;

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
    Tls(#[from] runtime::tls::TlsError),
    /// Inconsistent setup.
    #[error("{0}")]
    Setup(String),
    /// The audit log cannot be opened or is broken.
    #[error(transparent)]
    Audit(#[from] proto::audit::AuditError),
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
            Some("share") => match serde_json::from_slice::<mpc::KeyShare>(b) {
                Ok(share) => {
                    accounts::backfill_chain_code(&store, &name, &share)?;
                    true
                }
                Err(_) => false,
            },
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

/// Runs the node until `shutdown` resolves, then stops gracefully (see
/// [`session::NodeCore::drain`]). `health` is the bound health listener, if configured.
pub async fn run(
    cfg: config::NodeConfig,
    passphrase: secret::Passphrase,
    health: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    run_with_hook(cfg, passphrase, health, shutdown, None).await
}

/// [`run`] with an [`mpc::OutgoingHook`]: for adversarial tests that play a compromised
/// guardian. The `signer-node` binary never calls it.
pub async fn run_with_hook(
    cfg: config::NodeConfig,
    passphrase: secret::Passphrase,
    health: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
    hook: Option<mpc::OutgoingHook>,
) -> Result<(), NodeError> {
    run_adversarial(cfg, passphrase, health, shutdown, (hook, Vec::new())).await
}

/// [`run_with_hook`] that may also cheat as a dealer in redistributions, with the listed
/// [`reshare::ceremony::DealerFault`]s in turn: adversarial tests only.
pub async fn run_adversarial(
    cfg: config::NodeConfig,
    passphrase: secret::Passphrase,
    health: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
    (hook, faults): (
        Option<mpc::OutgoingHook>,
        Vec<reshare::ceremony::DealerFault>,
    ),
) -> Result<(), NodeError> {
    hygiene::harden_process().map_err(NodeError::Setup)?;
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
    let tls = runtime::tls::node_client_config(&cfg.ca_cert, &cfg.cert, &cfg.key)?;
    let server_name = rustls::pki_types::ServerName::try_from(cfg.coordinator_name.clone())
        .map_err(|_| {
            NodeError::Setup(format!(
                "invalid coordinator_name `{}`",
                cfg.coordinator_name
            ))
        })?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let store = Arc::new(store);
    let identity = Arc::new(identity);
    let guard = Arc::new(build_guard(&cfg, &store, &identity, &roster)?);
    let core = Arc::new(
        session::NodeCore::new(
            store,
            identity,
            tx,
            session::Timeouts {
                join: Duration::from_secs(cfg.limits.join_timeout_secs),
                protocol: Duration::from_secs(cfg.limits.protocol_timeout_secs),
                round: Duration::from_secs(cfg.limits.round_timeout_secs),
                ceremony_round: Duration::from_secs(cfg.limits.ceremony_round_timeout_secs),
            },
            cfg.limits.max_parallel_sessions,
            guard,
        )
        .with_hook(hook)
        .with_dealer_faults(faults)
        .with_pool(
            cfg.limits.max_presignatures,
            cfg.limits.max_presign_sessions,
        ),
    );
    let link = link::LinkConfig {
        addr: cfg.coordinator_addr.clone(),
        server_name,
        tls: Arc::new(tls),
    };
    tracing::info!(node = %cfg.node_id, "signer node started");
    let connected = Arc::new(AtomicBool::new(false));
    let link = tokio::spawn(link::maintain(core.clone(), link, rx, connected.clone()));
    let pruner = tokio::spawn(prune::run(core.clone(), cfg.limits.retention_secs));
    if let Some(listener) = health {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(%addr, "health endpoints on http://{addr}/healthz and /readyz");
        let h = health::Health {
            core: core.clone(),
            connected,
        };
        tokio::spawn(health::serve(listener, h));
    }
    shutdown.await;
    let grace = Duration::from_secs(cfg.limits.shutdown_grace_secs);
    tracing::info!(
        running = core.live_sessions(),
        ?grace,
        "stopping: letting running sessions finish"
    );
    let aborted = core.drain(grace).await;
    // Let the link send the last reports before it closes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    link.abort();
    pruner.abort();
    tracing::info!(aborted, "signer node stopped");
    Ok(())
}

/// File name of the node's audit log inside its data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// State key of the audit log's head, rewritten after every append: a log cut at a line
/// boundary (whose chain still verifies) is then caught at the next start.
pub const AUDIT_ANCHOR: &str = "audit_head";

/// Opens the node's audit log, checked against the head anchored in its store: a log shorter
/// than the anchor (`audit.truncated`) or rewritten (`audit.diverged`) stops the node here.
pub fn open_audit(
    cfg: &config::NodeConfig,
    store: &Store,
) -> Result<runtime::audit::AuditLog, NodeError> {
    let anchor = store.state_get::<proto::audit::Anchor>(AUDIT_ANCHOR)?;
    let path = cfg.data_dir.join(AUDIT_FILE);
    Ok(runtime::audit::AuditLog::open_anchored(
        &path,
        anchor.as_ref(),
    )?)
}

/// The policy guard: pinned keys from the configuration, the stored policy, the audit log, and
/// the configured bundle offered once at start.
fn build_guard(
    cfg: &config::NodeConfig,
    store: &Arc<Store>,
    identity: &Arc<NodeIdentity>,
    roster: &Roster,
) -> Result<guard::Guard, NodeError> {
    let officers = cfg.policy.officer_keys().map_err(NodeError::Setup)?;
    let guardians = cfg.policy.guardian_keys().map_err(NodeError::Setup)?;
    if !officers.is_empty() && (cfg.policy.threshold == 0 || cfg.policy.threshold > officers.len())
    {
        return Err(NodeError::Setup(format!(
            "`policy.threshold` {} does not fit {} pinned officers",
            cfg.policy.threshold,
            officers.len()
        )));
    }
    let pinned = policy_book::Pinned {
        officers: officers.clone(),
        threshold: cfg.policy.threshold,
        activation_delay: cfg.policy.activation_delay_secs,
    };
    let book = policy_book::PolicyBook::load(store, pinned)?;
    let log = open_audit(cfg, store)?;
    if log.torn_bytes() > 0 {
        tracing::warn!(
            bytes = log.torn_bytes(),
            "dropped a torn final audit record left by a crash"
        );
    }
    let anchor_store = store.clone();
    let sink: proto::audit::AnchorSink = Box::new(move |a: &proto::audit::Anchor| {
        let value = store::json_bytes(a).map_err(|e| e.to_string())?;
        anchor_store
            .state_write(&[(AUDIT_ANCHOR.to_string(), Some(value))])
            .map_err(|e| e.to_string())
    });
    // Anchor the head found now (a log from before anchors existed, or one record ahead after
    // a crash), so that cutting it before the next append is caught too.
    let opened = proto::audit::Anchor {
        count: log.len(),
        hash: log.head().to_owned(),
    };
    sink(&opened).map_err(|reason| proto::audit::AuditError::Anchor {
        path: log.path().display().to_string(),
        reason,
    })?;
    let guard = guard::Guard::new(
        store.clone(),
        identity.clone(),
        roster.clone(),
        cfg.scope.clone(),
        guard::Authorities {
            officers,
            threshold: cfg.policy.threshold,
            guardians,
        },
        cfg.clock_offset_secs,
        book,
        runtime::audit::SharedAudit::with_anchor(log, sink),
    )
    .with_gap_timeout(cfg.limits.ledger_gap_timeout_secs);
    if let Some(path) = &cfg.policy.bundle {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                guard.offer_policy(&text, &path.display().to_string());
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the policy bundle")
            }
        }
    }
    match guard.status() {
        Ok(st) => match st.policy {
            Some(p) => tracing::info!(version = p.version, hash = %p.hash, "running policy"),
            None => tracing::warn!(
                "no valid signed policy: this node will sign nothing until one is installed"
            ),
        },
        Err(e) => return Err(e.into()),
    }
    Ok(guard)
}
