//! People acting on a sign request: approvals, and a guardian's veto (cancel). The coordinator
//! stores and relays them; each node verifies them against its own policy.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use proto::{
    api::{ApiError, RequestStatus, SignRequestView},
    authz::{self, hex32, hex64, Approval, Order},
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error::{internal, parse_json, typed, ApiFail},
    orders::{order_outcome, ORDER_TIMEOUT},
    sign_requests::not_found,
    ApiState,
};
use crate::requests::vetoed;

/// Approvals kept per request; more are refused (each costs every node a signature check).
/// The nodes refuse more than the same number themselves.
pub const MAX_APPROVALS: usize = proto::api::MAX_APPROVALS_PER_REQUEST;

/// Body of `POST /v1/sign-requests/{id}/cancel`, as `policy veto` writes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// The guardian's Ed25519 public key, hex.
    #[serde(with = "hex32")]
    #[schema(value_type = String)]
    guardian: [u8; 32],
    /// The guardian's signature over the veto digest, hex.
    #[serde(with = "hex64")]
    #[schema(value_type = String)]
    signature: [u8; 64],
}

/// One approval or an array of them, as `policy approve` writes them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum Approvals {
    /// One approval.
    One(Approval),
    /// Several.
    Many(Vec<Approval>),
}

/// A guardian's veto, relayed to every node
///
/// If a node accepts it the request is `cancelled` for good (`error.code` `veto`).
#[utoipa::path(
    post,
    path = "/v1/sign-requests/{request_id}/cancel",
    tag = "sign-requests",
    params(("request_id" = String, Path, description = "The client's request id.")),
    request_body = CancelBody,
    responses(
        (status = 200, description = "Cancelled (or already cancelled).", body = SignRequestView),
        (status = 403, description = "Every node refused the veto (`veto.invalid`).", body = ApiError),
        (status = 404, description = "`request.not_found`.", body = ApiError),
        (status = 409, description = "`request.final`: already signed, denied or failed.", body = ApiError),
        (status = 422, description = "`request.invalid`.", body = ApiError),
        (status = 503, description = "`nodes.unavailable`: no node is connected.", body = ApiError),
    )
)]
pub(crate) async fn cancel(
    State(st): State<ApiState>,
    Path(request_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SignRequestView>, ApiFail> {
    let b: CancelBody = typed(parse_json(body)?)?;
    let rec = st
        .orch
        .store
        .request(&request_id)
        .map_err(internal)?
        .ok_or_else(|| not_found(&request_id))?;
    match rec.view.status {
        RequestStatus::Cancelled => return Ok(Json(rec.view)),
        s if s.is_final() => {
            return Err(ApiFail::new(
                StatusCode::CONFLICT,
                "request.final",
                format!("request `{request_id}` is already {s:?}; a veto cannot undo it"),
            ))
        }
        _ => {}
    }
    let order = Order::Veto(authz::Veto {
        request_id: request_id.clone(),
        guardian: b.guardian,
        signature: b.signature,
    });
    let results = st.orch.control.push_order(&order, ORDER_TIMEOUT).await;
    let _applied = order_outcome(&results)?;
    let guardian = hex::encode(b.guardian);
    let rec = st
        .orch
        .store
        .update_request(&request_id, |r| {
            if !r.view.status.is_final() {
                r.view.status = RequestStatus::Cancelled;
                r.view.error = Some(vetoed(&guardian));
                r.view.not_before = None;
                r.view.missing_approvals.clear();
            }
        })
        .map_err(internal)?
        .ok_or_else(|| not_found(&request_id))?;
    st.orch.control.wake(&request_id);
    st.orch.finished.notify_waiters();
    Ok(Json(rec.view))
}

/// Add approvals (nodes verify them)
///
/// The coordinator stores them (at most 32 per request; exact duplicates are dropped) and
/// re-evaluates at once. Each node counts only approvals from keys in its policy's approver
/// groups, with a valid signature over the approval digest of its own decoded intent.
#[utoipa::path(
    post,
    path = "/v1/sign-requests/{request_id}/approvals",
    tag = "sign-requests",
    params(("request_id" = String, Path, description = "The client's request id.")),
    request_body(content = Approvals, example = json!({"approver": "<hex>", "signature": "<hex>", "expires_at": 1764003600})),
    responses(
        (status = 202, description = "Stored; re-evaluation started.", body = SignRequestView),
        (status = 404, description = "`request.not_found`.", body = ApiError),
        (status = 409, description = "`request.final`.", body = ApiError),
        (status = 422, description = "`request.invalid`, `approvals.too_many`.", body = ApiError),
    )
)]
pub(crate) async fn add_approvals(
    State(st): State<ApiState>,
    Path(request_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SignRequestView>), ApiFail> {
    let value = parse_json(body)?;
    let new: Vec<Approval> = match value {
        Value::Array(_) => typed(value)?,
        other => vec![typed(other)?],
    };
    let mut refusal = None;
    let rec = st
        .orch
        .store
        .update_request(&request_id, |r| {
            if r.view.status.is_final() {
                refusal = Some(ApiFail::new(
                    StatusCode::CONFLICT,
                    "request.final",
                    format!("request `{request_id}` is already final"),
                ));
                return;
            }
            let mut all = r.approvals.clone();
            for a in &new {
                if !all.contains(a) {
                    all.push(a.clone());
                }
            }
            if all.len() > MAX_APPROVALS {
                refusal = Some(ApiFail::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "approvals.too_many",
                    format!("a request holds at most {MAX_APPROVALS} approvals"),
                ));
                return;
            }
            r.approvals = all;
            r.view.approvals = r.approvals.len() as u32;
        })
        .map_err(internal)?
        .ok_or_else(|| not_found(&request_id))?;
    if let Some(f) = refusal {
        return Err(f);
    }
    st.orch.control.record(
        "approval.received",
        json!({"request_id": request_id, "approvals": new}),
    );
    st.orch.control.wake(&request_id);
    Ok((StatusCode::ACCEPTED, Json(rec.view)))
}
