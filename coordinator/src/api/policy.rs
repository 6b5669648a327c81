//! Policy bundles: relayed to every node, which verifies the officers' signatures itself.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::StatusCode,
    Json,
};
use proto::{api::ApiError, authz::OfficerSignature};
use serde_json::{json, Value};

use super::{
    error::{internal, parse_json, ApiFail},
    orders::{no_nodes, ORDER_TIMEOUT},
    ApiState,
};

/// A signed policy bundle, exactly as `policy sign` writes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Bundle {
    /// The policy, TOML.
    policy_toml: String,
    /// The officers' signatures over it.
    signatures: Vec<OfficerSignature>,
}

/// Last pushed bundle and every node's policy status
#[utoipa::path(
    get,
    path = "/v1/policy",
    tag = "policy",
    responses(
        (status = 200, description = "`{\"bundle\": <last bundle pushed or null>, \"nodes\": {<node>: <status>}}`.", body = Object),
    )
)]
pub(crate) async fn get_policy(State(st): State<ApiState>) -> Result<Json<Value>, ApiFail> {
    let bundle: Option<String> = st
        .orch
        .store
        .meta(crate::control::POLICY_BUNDLE)
        .map_err(internal)?;
    let bundle: Option<Value> = bundle.and_then(|b| serde_json::from_str(&b).ok());
    Ok(Json(
        json!({"bundle": bundle, "nodes": st.orch.control.statuses()}),
    ))
}

/// Relay a signed policy bundle; each node verifies it against its pinned officers
///
/// Stores the bundle, relays it to every connected node (and later to nodes that connect) and
/// answers each node's status after it verified the bundle. A node that refuses keeps its
/// policy and reports `policy_error`.
#[utoipa::path(
    post,
    path = "/v1/policy",
    tag = "policy",
    request_body = Bundle,
    responses(
        (status = 200, description = "Each node's status after verifying: `{\"nodes\": {<node>: <status>}}`.", body = Object),
        (status = 422, description = "`policy.malformed_bundle`.", body = ApiError),
        (status = 503, description = "`nodes.unavailable`: no node is connected.", body = ApiError),
    )
)]
pub(crate) async fn push_policy(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiFail> {
    let value = parse_json(body)?;
    let ok_shape = value.get("policy_toml").is_some_and(Value::is_string)
        && value.get("signatures").is_some_and(Value::is_array);
    if !ok_shape {
        return Err(ApiFail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy.malformed_bundle",
            "a bundle is `{\"policy_toml\": \"…\", \"signatures\": […]}` as `policy sign` writes it",
        ));
    }
    let nodes = st
        .orch
        .control
        .push_policy(&value.to_string(), ORDER_TIMEOUT)
        .await;
    if nodes.is_empty() {
        return Err(no_nodes());
    }
    Ok(Json(json!({ "nodes": nodes })))
}
