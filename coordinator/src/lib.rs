//! The coordinator: runs ceremonies and signing rounds across signer nodes, relays their sealed
//! envelopes, and serves the REST API. It holds no key material: compromising it yields only the
//! ability to *ask* nodes to sign, and each node decides for itself.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod error;
pub mod faults;
pub mod intake;
pub mod lifecycle;
pub mod metrics;
pub mod orchestrator;
pub mod pki;
pub mod pool;
pub mod registry;
pub mod requests;
pub mod reserves;
pub mod store;

use std::{future::Future, sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Why the coordinator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// Store.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] runtime::tls::TlsError),
    /// The audit log cannot be opened or is broken.
    #[error(transparent)]
    Audit(#[from] proto::audit::AuditError),
}

/// File name of the coordinator's audit log inside its data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Runs the coordinator on already-bound listeners until `shutdown` resolves.
pub async fn run(
    cfg: config::CoordConfig,
    api_listener: TcpListener,
    node_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordError> {
    let store = Arc::new(store::Store::open(&cfg.data_dir)?);
    let registry = Arc::new(registry::Registry::default());
    let events = registry.subscribe();
    let audit = runtime::audit::AuditLog::open(&cfg.data_dir.join(AUDIT_FILE))?;
    let control = Arc::new(control::Control::new(
        store.clone(),
        registry.clone(),
        runtime::audit::SharedAudit::new(audit),
    ));
    tokio::spawn(control.clone().run(events));
    let orch = Arc::new(
        orchestrator::Orchestrator::new(store, registry.clone(), cfg.limits, control)
            .with_presign(cfg.presign),
    );
    let node_tls = Arc::new(runtime::tls::node_server_config(
        &cfg.ca_cert,
        &cfg.cert,
        &cfg.key,
    )?);
    let api_tls = Arc::new(runtime::tls::api_server_config(
        &cfg.ca_cert,
        &cfg.cert,
        &cfg.key,
        cfg.api_allow_tls12,
    )?);
    let token_hashes = cfg
        .api_token_sha256
        .iter()
        .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect();
    let state = api::ApiState {
        orch: orch.clone(),
        auth: Arc::new(auth::Authenticator::new(
            token_hashes,
            cfg.api_client_cert_names.clone(),
            cfg.credentials_file.clone(),
            cfg.limits.api_rate_per_sec,
        )),
    };
    let router = api::router(state, cfg.limits.max_body_bytes);
    orch.resume();
    tokio::spawn(pool::refill_loop(orch.clone()));
    tokio::spawn(orch.clone().run_refresh_schedule());
    tracing::info!(
        api = %api_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        nodes = %node_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "coordinator started"
    );
    let nodes = registry::serve_nodes(registry.clone(), node_listener, node_tls);
    tokio::pin!(nodes);
    let api = serve_api(
        api_listener,
        api_tls,
        router,
        Arc::new(cfg.api_client_cert_names.clone()),
    );
    tokio::select! {
        _ = &mut nodes => return Ok(()),
        _ = api => {}
        _ = shutdown => {}
    }
    // Graceful stop: the API no longer accepts connections and no new session starts; running
    // sessions get `shutdown_grace_secs` to finish (the node links stay up meanwhile), the rest
    // are aborted. Unfinished requests are in the store and resume at the next start.
    orch.begin_stop();
    let grace = Duration::from_secs(cfg.limits.shutdown_grace_secs);
    tracing::info!(
        sessions = registry.open_routes(),
        ?grace,
        "stopping: letting running sessions finish"
    );
    let deadline = tokio::time::Instant::now() + grace;
    while registry.open_routes() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = &mut nodes => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let aborted = registry.abort_all("coordinator.stopping");
    tokio::select! {
        _ = &mut nodes => {}
        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    tracing::info!(aborted, "coordinator stopped");
    Ok(())
}

async fn serve_api(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    cert_names: Arc<Vec<String>>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let cert_names = cert_names.clone();
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let client = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| {
                    cert_names
                        .iter()
                        .find(|n| runtime::tls::cert_has_dns_name(c, n))
                        .cloned()
                });
            let svc = router.layer(axum::Extension(api::ClientCert(client)));
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tls), svc);
            let _ = conn.await;
        });
    }
}
