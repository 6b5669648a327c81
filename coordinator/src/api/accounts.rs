//! Segregated accounts of a key (the work is in [`crate::accounts`]).

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use proto::api::{AccountView, ApiError, CreateAccountBody};

use super::{
    error::{parse_json, typed, ApiFail},
    ApiState,
};
use crate::accounts::{self, Created};

/// Create a segregated account; every node registers it and derives its keys
///
/// The coordinator numbers the account, asks every share holder to register it and derive its
/// keys, and keeps the keys once t nodes report the same ones (and they equal its own
/// derivation). Repeating the call with the same name returns the account, and retries its
/// registration while it is pending.
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/accounts",
    tag = "accounts",
    params(("key_id" = String, Path, description = "Key id.")),
    request_body(content = CreateAccountBody, example = json!({"name": "client-a"})),
    responses(
        (status = 201, description = "Created.", body = AccountView),
        (status = 200, description = "It existed: the account.", body = AccountView),
        (status = 404, description = "`key.not_found`.", body = ApiError),
        (status = 409, description = "`account.conflict`, `account.disagreement`, `account.not_hd`, `key.not_ready`.", body = ApiError),
        (status = 422, description = "`account.invalid`, `request.invalid`.", body = ApiError),
        (status = 503, description = "`nodes.unavailable`: fewer than t nodes registered it (it stays pending: call again).", body = ApiError),
    )
)]
pub(crate) async fn create(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AccountView>), ApiFail> {
    let req: CreateAccountBody = typed(parse_json(body)?)?;
    let (created, view) = accounts::create(&st.orch, &key_id, &req.name).await?;
    let status = match created {
        Created::New => StatusCode::CREATED,
        Created::Existing => StatusCode::OK,
    };
    Ok((status, Json(view)))
}

/// One account: path, xpub, addresses
#[utoipa::path(
    get,
    path = "/v1/keys/{key_id}/accounts/{account}",
    tag = "accounts",
    params(
        ("key_id" = String, Path, description = "Key id."),
        ("account" = String, Path, description = "Account name."),
    ),
    responses(
        (status = 200, description = "The account.", body = AccountView,
         example = json!({"key_id": "treasury-1", "name": "client-a", "index": 0, "path": "m/0", "status": "ready",
                          "public_key": "03…", "chain_code": "9f…", "ethereum_address": "0x…",
                          "addresses": [{"index": 0, "path": "m/0/0", "public_key": "02…", "ethereum_address": "0x…",
                                         "bitcoin": {"mainnet": "bc1q…", "regtest": "bcrt1q…"}}],
                          "nodes": ["node-1", "node-2", "node-3"], "created_at": 1795000000})),
        (status = 404, description = "`account.not_found`.", body = ApiError),
    )
)]
pub(crate) async fn get(
    State(st): State<ApiState>,
    Path((key_id, name)): Path<(String, String)>,
) -> Result<Json<AccountView>, ApiFail> {
    Ok(Json(accounts::get(&st.orch, &key_id, &name)?))
}

/// The key's accounts
#[utoipa::path(
    get,
    path = "/v1/keys/{key_id}/accounts",
    tag = "accounts",
    params(("key_id" = String, Path, description = "Key id.")),
    responses((status = 200, description = "Its accounts.", body = Vec<AccountView>)),
)]
pub(crate) async fn list(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
) -> Result<Json<Vec<AccountView>>, ApiFail> {
    Ok(Json(accounts::list(&st.orch, &key_id)?))
}
