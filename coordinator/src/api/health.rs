//! Liveness and readiness, without credentials.

use axum::{extract::State, http::StatusCode, Json};
use proto::api::KeyStatus;
use serde_json::{json, Value};

use super::ApiState;

/// Liveness: `ok` while the process serves requests
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "`ok`.", body = String, content_type = "text/plain")),
)]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store is readable and t nodes of every ready key are connected
///
/// 200 while the store is readable and every ready key has at least t of its nodes connected;
/// otherwise 503, naming what is missing in `problems`. No credential needed.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = Object,
         example = json!({"ready": true, "checks": {"store": "ok", "nodes_connected": ["node-1", "node-2"]}, "problems": []})),
        (status = 503, description = "Not ready; `problems` says why.", body = Object,
         example = json!({"ready": false, "checks": {"store": "ok", "nodes_connected": ["node-1"]},
                          "problems": ["key `treasury-1`: 1 of 3 nodes connected, 2 needed"]})),
    )
)]
pub(crate) async fn readyz(State(st): State<ApiState>) -> (StatusCode, Json<Value>) {
    let store = st.orch.clone();
    let keys = tokio::task::spawn_blocking(move || store.store.keys()).await;
    let connected = st.orch.registry.connected();
    let mut problems = Vec::new();
    let store_ok = match keys {
        Ok(Ok(keys)) => {
            for k in keys.iter().filter(|k| k.info.status == KeyStatus::Ready) {
                let up = k
                    .info
                    .nodes
                    .iter()
                    .filter(|n| connected.contains(n))
                    .count();
                if up < k.info.threshold as usize {
                    problems.push(format!(
                        "key `{}`: {up} of {} nodes connected, {} needed",
                        k.info.key_id,
                        k.info.nodes.len(),
                        k.info.threshold
                    ));
                }
            }
            true
        }
        _ => {
            problems.push("store unreadable".to_string());
            false
        }
    };
    let ready = problems.is_empty();
    let body = json!({
        "ready": ready,
        "checks": {"store": if store_ok { "ok" } else { "unreadable" },
                   "nodes_connected": connected},
        "problems": problems,
    });
    let code = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(body))
}
