//! Relaying signed orders (freezes, unfreezes, vetoes) to every node and reporting what each
//! node answered: nodes verify, the coordinator does not.

use std::collections::BTreeMap;

use axum::{http::StatusCode, Json};
use proto::wire::SessionFailure;
use serde_json::{json, Value};

use super::error::ApiFail;

/// How long an order waits for the nodes' answers.
pub(crate) const ORDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Each node's answer to an order.
pub(crate) type Results = BTreeMap<String, Result<(), SessionFailure>>;

/// `503 nodes.unavailable`: no node is connected.
pub(crate) fn no_nodes() -> ApiFail {
    ApiFail::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "nodes.unavailable",
        "no signer node is connected; the order is stored and delivered when nodes connect",
    )
}

fn results_json(results: &Results) -> Value {
    let per_node: BTreeMap<&String, Value> = results
        .iter()
        .map(|(n, r)| {
            let v = match r {
                Ok(()) => json!("applied"),
                Err(f) => json!({"code": f.code, "message": f.message}),
            };
            (n, v)
        })
        .collect();
    json!({ "results": per_node })
}

/// 200 if any node applied the order; otherwise the first node's refusal.
pub(crate) fn order_outcome(results: &Results) -> Result<Json<Value>, ApiFail> {
    if results.is_empty() {
        return Err(no_nodes());
    }
    if results.values().any(Result::is_ok) {
        return Ok(Json(results_json(results)));
    }
    let (node, f) = results
        .iter()
        .find_map(|(n, r)| r.as_ref().err().map(|f| (n, f)))
        .ok_or_else(no_nodes)?;
    Err(ApiFail::new(
        StatusCode::FORBIDDEN,
        &f.code,
        format!("refused by every node (`{node}`: {})", f.message),
    ))
}

/// What each node did with an order (the answer of freeze and unfreeze).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"results": {"node-1": "applied", "node-2": {"code": "freeze.stale", "message": "…"}}}))]
#[allow(dead_code)]
pub(crate) struct OrderResults {
    /// Node → `"applied"`, or its refusal `{"code", "message"}`.
    results: BTreeMap<String, Value>,
}
