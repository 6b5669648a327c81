//! People acting on keys: a guardian's freeze, the officers' unfreeze, an operator's unlock
//! after a security incident.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use proto::{
    api::{ApiError, KeyLock},
    authz::{self, hex32, hex64, OfficerSignature, Order},
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error::{internal, no_key, parse_json, typed, ApiFail},
    orders::{order_outcome, OrderResults, ORDER_TIMEOUT},
    ApiState,
};

/// Body of `POST /v1/keys/{key_id}/freeze`, as `policy freeze` writes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FreezeBody {
    /// The key's freeze epoch (unfreezes so far).
    epoch: u64,
    /// The guardian's Ed25519 public key, hex.
    #[serde(with = "hex32")]
    #[schema(value_type = String)]
    guardian: [u8; 32],
    /// The guardian's signature over the freeze digest, hex.
    #[serde(with = "hex64")]
    #[schema(value_type = String)]
    signature: [u8; 64],
}

/// Body of `POST /v1/keys/{key_id}/unfreeze`, as `policy unfreeze` writes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnfreezeBody {
    /// The epoch being ended.
    epoch: u64,
    /// The officers' signatures over the unfreeze digest.
    signatures: Vec<OfficerSignature>,
}

async fn key_exists(st: &ApiState, key_id: &str) -> Result<(), ApiFail> {
    match st.orch.store.key(key_id).map_err(internal)? {
        Some(_) => Ok(()),
        None => Err(no_key(key_id)),
    }
}

/// One guardian's signature stops signing with the key on every node
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/freeze",
    tag = "keys",
    params(("key_id" = String, Path, description = "Key id.")),
    request_body = FreezeBody,
    responses(
        (status = 200, description = "What each node did (at least one applied it).", body = OrderResults),
        (status = 403, description = "Every node refused: the first refusal's code (`freeze.invalid`, `freeze.stale`).", body = ApiError),
        (status = 404, description = "`key.not_found`.", body = ApiError),
        (status = 422, description = "`request.invalid`.", body = ApiError),
        (status = 503, description = "`nodes.unavailable`: no node is connected (the order is stored and delivered when nodes connect).", body = ApiError),
    )
)]
pub(crate) async fn freeze(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiFail> {
    let b: FreezeBody = typed(parse_json(body)?)?;
    key_exists(&st, &key_id).await?;
    let order = Order::Freeze(authz::Freeze {
        key_id,
        epoch: b.epoch,
        guardian: b.guardian,
        signature: b.signature,
    });
    order_outcome(&st.orch.control.push_order(&order, ORDER_TIMEOUT).await)
}

/// The officer quorum unfreezes the key
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/unfreeze",
    tag = "keys",
    params(("key_id" = String, Path, description = "Key id.")),
    request_body = UnfreezeBody,
    responses(
        (status = 200, description = "What each node did (at least one applied it).", body = OrderResults),
        (status = 403, description = "Every node refused: the first refusal's code (`unfreeze.quorum`, `unfreeze.stale`).", body = ApiError),
        (status = 404, description = "`key.not_found`.", body = ApiError),
        (status = 422, description = "`request.invalid`.", body = ApiError),
        (status = 503, description = "`nodes.unavailable`: no node is connected.", body = ApiError),
    )
)]
pub(crate) async fn unfreeze(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiFail> {
    let b: UnfreezeBody = typed(parse_json(body)?)?;
    key_exists(&st, &key_id).await?;
    let order = Order::Unfreeze(authz::Unfreeze {
        key_id,
        epoch: b.epoch,
        signatures: b.signatures,
    });
    order_outcome(&st.orch.control.push_order(&order, ORDER_TIMEOUT).await)
}

/// Body of `POST /v1/keys/{key_id}/unlock`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnlockBody {
    /// Why the operator unlocks (audited).
    #[serde(default)]
    reason: String,
}

/// Answer of `POST /v1/keys/{key_id}/unlock`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Unlocked {
    /// The key.
    key_id: String,
    /// Always true.
    unlocked: bool,
    /// The lock that was cleared.
    lock: KeyLock,
}

/// An operator unlocks a key locked by a security incident
///
/// Clears the lock a security incident put on the key, after the operator has investigated
/// it. The optional body's `reason` is audited (`key.unlocked`, with the credential id).
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/unlock",
    tag = "keys",
    params(("key_id" = String, Path, description = "Key id.")),
    request_body(content = Option<UnlockBody>, description = "Optional.", example = json!({"reason": "partial signature tampering traced to node-3, replaced"})),
    responses(
        (status = 200, description = "Unlocked: the cleared lock.", body = Unlocked),
        (status = 404, description = "`key.not_found`.", body = ApiError),
        (status = 409, description = "`key.not_locked`.", body = ApiError),
        (status = 422, description = "`request.invalid`.", body = ApiError),
    )
)]
pub(crate) async fn unlock(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    auth: Option<axum::Extension<crate::auth::CredentialId>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiFail> {
    let b: UnlockBody = match body {
        Ok(bytes) if bytes.is_empty() => UnlockBody::default(),
        other => typed(parse_json(other)?)?,
    };
    key_exists(&st, &key_id).await?;
    let cleared = crate::faults::unlock(&st.orch.store, &key_id).map_err(internal)?;
    st.orch.faults.clear_reports(&key_id);
    let Some(lock) = cleared else {
        return Err(ApiFail::new(
            StatusCode::CONFLICT,
            "key.not_locked",
            format!("key `{key_id}` is not locked"),
        ));
    };
    let by = auth.map(|a| a.0 .0.clone()).unwrap_or_default();
    tracing::warn!(key = %key_id, by = %by, reason = %b.reason, "key unlocked by an operator");
    st.orch.control.record(
        "key.unlocked",
        json!({"key_id": key_id, "by": by, "reason": b.reason, "lock": lock}),
    );
    Ok(Json(
        json!({"key_id": key_id, "unlocked": true, "lock": lock}),
    ))
}
