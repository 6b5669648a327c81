//! `/healthz` and `/readyz` on the node's optional local health port (`health_listen`, plain
//! HTTP meant for loopback or a pod network; it exposes no key material and accepts no input).
//!
//! `/healthz` answers while the process runs its event loop. `/readyz` answers 200 only while
//! the store is readable, the link to the coordinator is up, the node has caught up with the
//! coordinator's replay on that link (`sync`), a signed policy is active and the node is not
//! stopping; otherwise 503, naming each check.

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
    let status =
        tokio::task::spawn_blocking(move || (core.guard.status(), core.check_synced())).await;
    let (store_ok, policy, sync) = match status {
        Ok((Ok(st), synced)) => (
            true,
            st.policy.map(|p| p.version),
            synced.map_err(|f| f.message),
        ),
        _ => (false, None, Err("unknown".to_string())),
    };
    let connected = h.connected.load(Ordering::SeqCst);
    let stopping = h.core.is_stopping();
    let ready = store_ok && connected && sync.is_ok() && policy.is_some() && !stopping;
    let body = json!({
        "ready": ready,
        "node_id": h.core.identity.node_id,
        "checks": {
            "store": if store_ok { "ok" } else { "unreadable" },
            "coordinator": if connected { "connected" } else { "disconnected" },
            "sync": match &sync { Ok(()) => "ok".to_string(), Err(why) => why.clone() },
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
