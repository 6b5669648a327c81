//! The officers' membership orders: refresh a key's shares, or reshare it to new guardians
//! and/or a new threshold (`docs/lifecycle.md`). The coordinator checks what it can (the key,
//! its epoch and guardians, the order's shape) so that a stale order fails fast; every node
//! checks the officers' signatures and everything else itself.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use proto::{
    api::{ApiError, KeyInfo},
    lifecycle::{MembershipKind, SignedMembershipOrder},
};

use crate::lifecycle::ClaimError;

use super::{
    error::{internal, no_key, parse_json, typed, ApiFail},
    ApiState,
};

async fn start(
    st: ApiState,
    key_id: String,
    kind: MembershipKind,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<KeyInfo>), ApiFail> {
    let order: SignedMembershipOrder = typed(parse_json(body)?)?;
    let o = &order.order;
    let unprocessable =
        |code: &str, msg: String| ApiFail::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg);
    if o.key_id != key_id {
        return Err(unprocessable(
            "reshare.order_set",
            format!("the order names key `{}`, not `{key_id}`", o.key_id),
        ));
    }
    if o.kind != kind {
        return Err(unprocessable(
            "reshare.order_kind",
            format!(
                "this route takes a {kind:?} order; the order is a {:?}",
                o.kind
            )
            .to_lowercase(),
        ));
    }
    o.check_shape()
        .map_err(|e| unprocessable(e.code(), e.to_string()))?;
    if o.scheduled {
        // No officer signs it: only a plain refresh may be posted, and the nodes judge whether
        // their policy schedules it and whether it is due.
        order
            .check_authority(&[], 0)
            .map_err(|e| unprocessable(e.code(), e.to_string()))?;
    }
    let rec = st.orch.claim_ceremony(&order).map_err(|e| match e {
        ClaimError::Conflict { code, message } => ApiFail::new(StatusCode::CONFLICT, code, message),
        ClaimError::Set(message) => unprocessable("reshare.order_set", message),
        ClaimError::NoKey => no_key(&key_id),
        ClaimError::Store(e) => internal(e),
    })?;
    st.orch.control.record(
        "reshare.ordered",
        serde_json::json!({"key_id": key_id, "kind": o.kind, "epoch": o.epoch,
            "guardians": o.new_set, "threshold": o.new_threshold, "order": hex::encode(o.digest())}),
    );
    tokio::spawn(st.orch.clone().change_membership(order));
    Ok((StatusCode::ACCEPTED, Json(rec.info)))
}

/// Refresh a key's shares (same guardians, same threshold)
///
/// Every guardian gets a fresh share of the same key: the public key, chain code, accounts
/// and addresses do not change. The body is the officers' order as `policy reshare-order`
/// writes it; every node checks the signatures against its own pinned officers. Follow the
/// ceremony in `GET /v1/keys/{key_id}` (`ceremony`, then `epoch`).
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/refresh",
    tag = "keys",
    params(("key_id" = String, Path, description = "Key id.")),
    request_body = SignedMembershipOrder,
    responses(
        (status = 202, description = "Ceremony started; the key with `ceremony.phase` `dealing`.", body = KeyInfo),
        (status = 400, description = "`request.malformed`: the body is not JSON.", body = ApiError),
        (status = 404, description = "`key.not_found`.", body = ApiError),
        (status = 409, description = "`key.not_ready`, `reshare.in_progress`, `reshare.order_epoch` (a stale order).", body = ApiError),
        (status = 422, description = "`request.invalid`, `reshare.order_kind`, `reshare.order_set` (malformed, or not the key's guardians), `reshare.order_threshold`, `reshare.order_identity`.", body = ApiError),
    )
)]
pub(crate) async fn refresh(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<KeyInfo>), ApiFail> {
    start(st, key_id, MembershipKind::Refresh, body).await
}

/// Reshare a key to new guardians and/or a new threshold
///
/// From (t, n) to (t', n') with the same public key, chain code and addresses. New guardians
/// ran `signer-node init` and are named with their identity keys in the order. The old epoch
/// keeps signing until every new guardian confirmed its share; then every node activates the
/// new epoch and deletes its old share and presignatures.
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/reshare",
    tag = "keys",
    params(("key_id" = String, Path, description = "Key id.")),
    request_body = SignedMembershipOrder,
    responses(
        (status = 202, description = "Ceremony started; the key with `ceremony.phase` `dealing`.", body = KeyInfo),
        (status = 400, description = "`request.malformed`: the body is not JSON.", body = ApiError),
        (status = 404, description = "`key.not_found`.", body = ApiError),
        (status = 409, description = "`key.not_ready`, `reshare.in_progress`, `reshare.order_epoch` (a stale order).", body = ApiError),
        (status = 422, description = "`request.invalid`, `reshare.order_kind`, `reshare.order_set` (malformed, or not the key's guardians), `reshare.order_threshold`, `reshare.order_identity`.", body = ApiError),
    )
)]
pub(crate) async fn reshare(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<KeyInfo>), ApiFail> {
    start(st, key_id, MembershipKind::Reshare, body).await
}
