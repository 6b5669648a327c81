//! Sign requests: submit one, read it (with an optional long poll).

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use proto::api::{ApiError, SignRequestBody, SignRequestView};

use super::{
    error::{internal, parse_json, typed, ApiFail},
    ApiState,
};
use crate::intake::{submit, Submitted};

/// Field names that mean "sign this hash for me". Refused outright: nodes sign only what they decode.
const DIGEST_FIELDS: &[&str] = &[
    "digest",
    "hash",
    "message_hash",
    "sighash",
    "signing_hash",
    "msg_hash",
];

/// Ask the cluster to sign a settlement transaction or an attestation message
///
/// Exactly one of `unsigned_tx` (Ethereum EIP-1559), `psbt` (Bitcoin, P2WPKH inputs with
/// `witness_utxo` and `non_witness_utxo`) or `message` (a proof-of-reserves attestation text).
/// Every signer node decodes the payload and computes the signing hash itself; a bare hash is
/// refused (`request.bare_digest`). `request_id` is the client's idempotency key: the same body
/// again returns the stored request (`200`), a different body under the same id is `409`.
#[utoipa::path(
    post,
    path = "/v1/sign-requests",
    tag = "sign-requests",
    request_body(
        content = SignRequestBody,
        example = json!({"request_id": "wd-2026-11-24-0001", "key_id": "treasury-1",
                         "chain": "ethereum", "unsigned_tx": "0x02f8…"})
    ),
    responses(
        (status = 202, description = "Accepted: a new request, now driven.", body = SignRequestView),
        (status = 200, description = "The same request id and body again: the stored request.", body = SignRequestView),
        (status = 400, description = "`request.malformed_json`, `tx.malformed_hex`, `psbt.malformed_base64`.", body = ApiError),
        (status = 404, description = "`key.not_found`, `account.not_found`.", body = ApiError),
        (status = 409, description = "`request.id_conflict` (the id was used for another body), `key.not_ready`, `account.not_ready`.", body = ApiError),
        (status = 422, description = "`request.bare_digest`, `request.invalid`, `request.invalid_id`, `chain.unsupported`, an undecodable transaction or PSBT (`tx.*`, `psbt.*`), `message.format`, `account.*`.", body = ApiError),
        (status = 423, description = "`key.locked`: the key is locked after a security incident.", body = ApiError),
    )
)]
pub(crate) async fn create_sign_request(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SignRequestView>), ApiFail> {
    let value = parse_json(body)?;
    if let Some(obj) = value.as_object() {
        if let Some(f) = DIGEST_FIELDS.iter().find(|f| obj.contains_key(**f)) {
            return Err(ApiFail::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "request.bare_digest",
                format!("field `{f}`: nodes never sign a hash handed to them; send `unsigned_tx`"),
            ));
        }
    }
    let body: SignRequestBody = typed(value)?;
    Ok(match submit(&st.orch, body)? {
        Submitted::New(view) => (StatusCode::ACCEPTED, Json(view)),
        Submitted::Again(view) => (StatusCode::OK, Json(view)),
    })
}

/// Query of `GET /v1/sign-requests/{id}`.
#[derive(serde::Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// Long poll: answer as soon as the request is final, or after this many milliseconds
    /// (at most 30 000) with its current state.
    #[serde(default)]
    #[param(minimum = 0, maximum = 30000)]
    wait_ms: u64,
}

/// A sign request: status, verdicts, signatures
///
/// `status`: `pending` → (`deferred` ⇄) `signing` → `signed`, or `denied`, `cancelled` (vetoed)
/// or `failed` (see `error`). `verdicts` holds each node's latest verdict with every rule's
/// verdict. `signed_tx` is ready to broadcast.
#[utoipa::path(
    get,
    path = "/v1/sign-requests/{request_id}",
    tag = "sign-requests",
    params(("request_id" = String, Path, description = "The client's request id."), WaitQuery),
    responses(
        (status = 200, description = "The request.", body = SignRequestView,
         example = json!({"request_id": "wd-2026-11-24-0001", "key_id": "treasury-1",
                          "chain": "ethereum", "status": "signed", "signers": ["node-1", "node-3"],
                          "signature": {"r": "0x…", "s": "0x…", "v": 1, "y_parity": 1},
                          "signed_tx": "0x02f8…", "approvals": 0})),
        (status = 400, description = "`query.invalid`: a query parameter that does not parse.", body = ApiError),
        (status = 404, description = "`request.not_found`.", body = ApiError),
    )
)]
pub(crate) async fn get_sign_request(
    State(st): State<ApiState>,
    Path(request_id): Path<String>,
    query: Result<axum::extract::Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SignRequestView>, ApiFail> {
    let wait = query
        .map_err(|e| ApiFail::new(StatusCode::BAD_REQUEST, "query.invalid", e.body_text()))?
        .0
        .wait_ms
        .min(30_000);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait);
    loop {
        let finished = st.orch.finished.notified();
        let view = st
            .orch
            .store
            .request(&request_id)
            .map_err(internal)?
            .map(|r| r.view)
            .ok_or_else(|| not_found(&request_id))?;
        if view.status.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(view));
        }
        let _ = tokio::time::timeout_at(deadline, finished).await;
    }
}

/// `request.not_found`.
pub(crate) fn not_found(request_id: &str) -> ApiFail {
    ApiFail::new(
        StatusCode::NOT_FOUND,
        "request.not_found",
        format!("no sign request `{request_id}`"),
    )
}
