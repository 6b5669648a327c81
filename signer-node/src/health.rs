//! `/healthz` and `/readyz` on the node's optional local health port (`health_listen`, plain
//! HTTP meant for loopback or a pod network; it exposes no key material and accepts no input).
//!
//! `/healthz` answers while the process runs its event loop. `/readyz` answers 200 only while
//! the store is readable, the link to the coordinator is up, a signed policy is active and the
//! node is not stopping; otherwise 503, naming each check.

use std::sync::{atomic::Ordering, Arc};

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::session::NodeCore;

/// Shared state of the health endpoints.
#[derive(Clone)]
pub struct Health {
    /// The node.
    pub core: Arc<NodeCore>,
    /// Whether the coordinator link is up.
    pub connected: Arc<std::sync::atomic::AtomicBool>,
}

/// Serves the endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, health: Health) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "health endpoint stopped");
    }
}

async fn readyz(State(h): State<Health>) -> (StatusCode, Json<Value>) {
    let core = h.core.clone();
    let status = tokio::task::spawn_blocking(move || core.guard.status()).await;
    let (store_ok, policy) = match status {
        Ok(Ok(st)) => (true, st.policy.map(|p| p.version)),
        _ => (false, None),
    };
    let connected = h.connected.load(Ordering::SeqCst);
    let stopping = h.core.is_stopping();
    let ready = store_ok && connected && policy.is_some() && !stopping;
    let body = json!({
        "ready": ready,
        "node_id": h.core.identity.node_id,
        "checks": {
            "store": if store_ok { "ok" } else { "unreadable" },
            "coordinator": if connected { "connected" } else { "disconnected" },
            "policy": match policy { Some(v) => format!("version {v}"), None => "missing".into() },
            "stopping": stopping,
        },
        "sessions": h.core.live_sessions(),
    });
    let code = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(body))
}
