//! Proof-of-reserves reports (the work is in [`crate::reserves`]).

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use proto::api::{ApiError, ReservesBody, ReservesView};

use super::{
    error::{parse_json, typed, ApiFail},
    ApiState,
};

/// Start a proof-of-reserves report for accounts
///
/// One message sign request per address: EIP-191 for each account's Ethereum address and
/// BIP-322 simple for its first `bitcoin_addresses` P2WPKH addresses. Every request is checked
/// before the report is stored. The same body again returns the report (and submits any of its
/// requests a crash left unsubmitted).
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/reserves",
    tag = "reserves",
    params(("key_id" = String, Path, description = "Key id.")),
    request_body(
        content = ReservesBody,
        example = json!({"report_id": "por-2026-11", "accounts": ["client-a", "client-b"],
                         "statement": "as of block 871000, auditor nonce 5e1f",
                         "bitcoin_network": "mainnet", "bitcoin_addresses": 8})
    ),
    responses(
        (status = 202, description = "Started.", body = ReservesView),
        (status = 200, description = "The same report again.", body = ReservesView),
        (status = 404, description = "`key.not_found`, `account.not_found`.", body = ApiError),
        (status = 409, description = "`reserves.id_conflict`, `account.not_ready`, `key.not_ready`, `account.not_hd`.", body = ApiError),
        (status = 422, description = "`reserves.invalid`, `request.invalid`, or a sign request the nodes would refuse (`message.format`, …).", body = ApiError),
        (status = 423, description = "`key.locked`.", body = ApiError),
    )
)]
pub(crate) async fn create(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ReservesView>), ApiFail> {
    let b: ReservesBody = typed(parse_json(body)?)?;
    let (new, view) = crate::reserves::start(&st.orch, &key_id, b)?;
    let status = match new {
        true => StatusCode::ACCEPTED,
        false => StatusCode::OK,
    };
    Ok((status, Json(view)))
}

/// A report's progress, and the report once complete
///
/// Verify a complete report offline with `policy reserves-verify`.
#[utoipa::path(
    get,
    path = "/v1/keys/{key_id}/reserves/{report_id}",
    tag = "reserves",
    params(
        ("key_id" = String, Path, description = "Key id."),
        ("report_id" = String, Path, description = "Report id."),
    ),
    responses(
        (status = 200, description = "The report's state.", body = ReservesView),
        (status = 404, description = "`reserves.not_found`.", body = ApiError),
    )
)]
pub(crate) async fn get(
    State(st): State<ApiState>,
    Path((key_id, report_id)): Path<(String, String)>,
) -> Result<Json<ReservesView>, ApiFail> {
    Ok(Json(crate::reserves::get(&st.orch, &key_id, &report_id)?))
}
