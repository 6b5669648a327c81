//! A key's presignature pool: read it, set its depth.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use proto::api::{ApiError, PresigDepthBody, PresigPoolView};
use serde_json::json;

use super::{
    error::{internal, no_key, parse_json, typed, ApiFail},
    ApiState,
};

/// Deepest pool a key may ask for per subset.
const MAX_POOL_DEPTH: u32 = 64;

/// The key's presignature pool
///
/// Depth, what is ready per signer subset, the oldest's age, the refill rate.
#[utoipa::path(
    get,
    path = "/v1/keys/{key_id}/presignatures",
    tag = "presignatures",
    params(("key_id" = String, Path, description = "Key id.")),
    responses(
        (status = 200, description = "The pool.", body = PresigPoolView,
         example = json!({"key_id": "treasury-1", "depth": 4, "available": 11, "oldest_age_secs": 312,
                          "refilled_last_minute": 3, "made_total": 40, "used_total": 29, "failed_total": 0,
                          "subsets": [{"parties": ["node-1", "node-2"], "available": 4, "oldest_age_secs": 312}]})),
        (status = 404, description = "`key.not_found`.", body = ApiError),
    )
)]
pub(crate) async fn get_pool(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
) -> Result<Json<PresigPoolView>, ApiFail> {
    let key = pool_key(&st, &key_id)?;
    Ok(Json(crate::pool::view(&st.orch, &key)))
}

/// Set the key's pool depth per signer subset
///
/// 0 turns the pool off (unused presignatures stay until used); at most 64.
#[utoipa::path(
    put,
    path = "/v1/keys/{key_id}/presignatures",
    tag = "presignatures",
    params(("key_id" = String, Path, description = "Key id.")),
    request_body(content = PresigDepthBody, example = json!({"depth": 4})),
    responses(
        (status = 200, description = "The pool.", body = PresigPoolView),
        (status = 400, description = "`presign.depth_invalid`: over 64.", body = ApiError),
        (status = 404, description = "`key.not_found`.", body = ApiError),
        (status = 422, description = "`request.invalid`.", body = ApiError),
    )
)]
pub(crate) async fn set_pool_depth(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PresigPoolView>, ApiFail> {
    let b: PresigDepthBody = typed(parse_json(body)?)?;
    if b.depth > MAX_POOL_DEPTH {
        return Err(ApiFail::new(
            StatusCode::BAD_REQUEST,
            "presign.depth_invalid",
            format!(
                "depth {} is over {MAX_POOL_DEPTH} (each node keeps at most its own `max_presignatures`)",
                b.depth
            ),
        ));
    }
    pool_key(&st, &key_id)?;
    let key = st
        .orch
        .store
        .update_key(&key_id, |k| k.presign_depth = Some(b.depth))
        .map_err(internal)?
        .ok_or_else(|| no_key(&key_id))?;
    st.orch
        .control
        .record("presign.depth", json!({"key_id": key_id, "depth": b.depth}));
    Ok(Json(crate::pool::view(&st.orch, &key)))
}

fn pool_key(st: &ApiState, key_id: &str) -> Result<crate::store::KeyRecord, ApiFail> {
    st.orch
        .store
        .key(key_id)
        .map_err(internal)?
        .ok_or_else(|| no_key(key_id))
}
