//! The REST API. Every error is `{ "code", "message" }` with a stable code and an HTTP status;
//! internal error text never reaches a client.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Extension, Json, Router,
};
use proto::{
    api::{
        self, ApiError, CreateKeyRequest, KeyInfo, KeyStatus, RequestStatus, SignRequestBody,
        SignRequestView,
    },
    payload::{PayloadError, SignPayload},
};

use crate::{
    auth::Outcome,
    orchestrator::Orchestrator,
    store::{api_error, KeyRecord, RequestRecord},
};

/// Field names that mean "sign this hash for me". Refused outright: nodes sign only what they decode.
const DIGEST_FIELDS: &[&str] = &[
    "digest",
    "hash",
    "message_hash",
    "sighash",
    "signing_hash",
    "msg_hash",
];

/// An API error response.
#[derive(Debug)]
pub struct ApiFail(pub StatusCode, pub ApiError);

impl ApiFail {
    pub(crate) fn new(status: StatusCode, code: &str, msg: impl Into<String>) -> Self {
        Self(status, api_error(code, msg))
    }
}

impl IntoResponse for ApiFail {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// Shared API state.
#[derive(Clone)]
pub struct ApiState {
    /// Orchestrator.
    pub orch: Arc<Orchestrator>,
    /// Credentials, scopes and rates.
    pub auth: Arc<crate::auth::Authenticator>,
}

/// Name of a verified API client certificate on this connection, if any.
#[derive(Clone, Debug, Default)]
pub struct ClientCert(pub Option<String>);

/// Builds the router.
pub fn router(state: ApiState, max_body: usize) -> Router {
    let authed = Router::new()
        .route("/v1/keys", post(create_key))
        .route("/v1/keys/{key_id}", get(get_key))
        .route("/v1/nodes", get(crate::api_control::list_nodes))
        .route(
            "/v1/policy",
            get(crate::api_control::get_policy).post(crate::api_control::push_policy),
        )
        .route("/v1/keys/{key_id}/freeze", post(crate::api_control::freeze))
        .route("/v1/keys/{key_id}/unlock", post(crate::api_control::unlock))
        .route(
            "/v1/keys/{key_id}/presignatures",
            get(crate::api_control::get_pool).put(crate::api_control::set_pool_depth),
        )
        .route(
            "/v1/keys/{key_id}/unfreeze",
            post(crate::api_control::unfreeze),
        )
        .route(
            "/v1/sign-requests/{request_id}/approvals",
            post(crate::api_control::add_approvals),
        )
        .route(
            "/v1/sign-requests/{request_id}/cancel",
            post(crate::api_control::cancel),
        )
        .route("/metrics", get(crate::api_control::metrics))
        .route(
            "/v1/keys/{key_id}/accounts",
            post(crate::accounts::create).get(crate::accounts::list),
        )
        .route(
            "/v1/keys/{key_id}/accounts/{account}",
            get(crate::accounts::get),
        )
        .route("/v1/keys/{key_id}/reserves", post(crate::reserves::create))
        .route(
            "/v1/keys/{key_id}/reserves/{report_id}",
            get(crate::reserves::get),
        )
        .route("/v1/sign-requests", post(create_sign_request))
        .route("/v1/sign-requests/{request_id}", get(get_sign_request))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crate::api_control::readyz))
        .route("/v1/openapi.json", get(openapi))
        .merge(authed)
        .fallback(|| async {
            ApiFail::new(StatusCode::NOT_FOUND, "route.not_found", "no such endpoint")
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(
            move |req: axum::extract::Request, next: Next| {
                refuse_declared_oversize(req, next, max_body)
            },
        ))
        .with_state(state)
}

/// Answers 413 from the `Content-Length` header alone, before reading (or allocating) the body.
async fn refuse_declared_oversize(req: axum::extract::Request, next: Next, max: usize) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let msg = format!("request body is over the {max}-byte limit");
        let mut resp =
            ApiFail::new(StatusCode::PAYLOAD_TOO_LARGE, "request.too_large", msg).into_response();
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return resp;
    }
    next.run(req).await
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../docs/openapi.json"),
    )
}

async fn auth(
    State(st): State<ApiState>,
    cert: Option<Extension<ClientCert>>,
    headers: HeaderMap,
    mut req: axum::extract::Request,
    next: Next,
) -> Response {
    let need = crate::auth::required_scope(req.method(), req.uri().path());
    let cert_name = cert.and_then(|c| c.0 .0.clone());
    let token = headers.get(header::AUTHORIZATION).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
    });
    let path = req.uri().path().to_string();
    let denied = |status: StatusCode, code: &str, msg: String, who: Option<&str>| {
        st.orch.control.record(
            "auth.denied",
            serde_json::json!({"path": path, "code": code, "credential": who}),
        );
        ApiFail::new(status, code, msg).into_response()
    };
    match st.auth.check(token, cert_name.as_deref(), need) {
        Outcome::Allowed(id) => {
            req.extensions_mut().insert(crate::auth::CredentialId(id));
            next.run(req).await
        }
        Outcome::Missing => denied(
            StatusCode::UNAUTHORIZED,
            "auth.missing",
            "missing `Authorization: Bearer <token>` header".into(),
            None,
        ),
        Outcome::Invalid => denied(
            StatusCode::UNAUTHORIZED,
            "auth.invalid",
            "the API token is not valid".into(),
            None,
        ),
        Outcome::Forbidden { id, scope } => denied(
            StatusCode::FORBIDDEN,
            "auth.scope",
            format!("credential `{id}` lacks the `{}` scope", scope.as_str()),
            Some(&id),
        ),
        Outcome::Limited { id, retry_after } => {
            tracing::warn!(credential = %id, "rate limited");
            let mut resp = ApiFail::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate.limited",
                format!("credential `{id}` is over its rate; retry in {retry_after} s"),
            )
            .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

pub(crate) fn parse_json(
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Value, ApiFail> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiFail::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request.too_large",
                "request body is over the size limit",
            )
        } else {
            ApiFail::new(
                StatusCode::BAD_REQUEST,
                "request.unreadable",
                "request body could not be read",
            )
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiFail::new(
            StatusCode::BAD_REQUEST,
            "request.malformed_json",
            format!("body is not valid JSON: {e}"),
        )
    })
}

pub(crate) fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiFail> {
    serde_json::from_value(v).map_err(|e| {
        ApiFail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "request.invalid",
            format!("invalid request body: {e}"),
        )
    })
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiFail {
    tracing::error!(error = %e, "internal error");
    ApiFail::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

async fn create_key(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<KeyInfo>), ApiFail> {
    let req: CreateKeyRequest = typed(parse_json(body)?)?;
    let unprocessable =
        |code: &str, msg: String| ApiFail::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg);
    if !api::valid_key_id(&req.key_id) {
        return Err(unprocessable(
            "key.invalid_id",
            format!(
                "key id `{}` must be 1-64 characters of [A-Za-z0-9._-]",
                req.key_id
            ),
        ));
    }
    let n = req.nodes.len();
    if n < 2 || req.threshold < 2 || req.threshold as usize > n {
        return Err(unprocessable(
            "threshold.invalid",
            format!("threshold {} of {n} nodes: need 2 <= t <= n", req.threshold),
        ));
    }
    let mut uniq = req.nodes.clone();
    uniq.sort();
    uniq.dedup();
    if uniq.len() != n {
        return Err(unprocessable(
            "nodes.duplicate",
            "a node is listed twice".into(),
        ));
    }
    let offline: Vec<&String> = req
        .nodes
        .iter()
        .filter(|n| !st.orch.registry.is_connected(n))
        .collect();
    if !offline.is_empty() {
        return Err(ApiFail::new(StatusCode::SERVICE_UNAVAILABLE, "nodes.unavailable", format!("nodes not connected: {offline:?}; every share holder must take part in key generation")));
    }
    let rec = KeyRecord {
        info: KeyInfo {
            key_id: req.key_id.clone(),
            status: KeyStatus::Generating,
            threshold: req.threshold,
            nodes: req.nodes.clone(),
            public_key: None,
            chain_code: None,
            ethereum_address: None,
            bitcoin: None,
            error: None,
            freeze: Default::default(),
            locked: None,
        },
        presign_depth: None,
        chain_code: None,
    };
    if !st.orch.store.insert_key(&rec).map_err(internal)? {
        return Err(ApiFail::new(
            StatusCode::CONFLICT,
            "key.exists",
            format!("key `{}` already exists", req.key_id),
        ));
    }
    tokio::spawn(st.orch.clone().create_key(rec.clone()));
    Ok((StatusCode::ACCEPTED, Json(rec.info)))
}

async fn get_key(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
) -> Result<Json<KeyInfo>, ApiFail> {
    st.orch
        .store
        .key(&key_id)
        .map_err(internal)?
        .map(|k| {
            let mut info = with_addresses(k.info);
            info.chain_code = k.chain_code;
            Json(crate::api_control::with_freeze(&st, info))
        })
        .ok_or_else(|| {
            ApiFail::new(
                StatusCode::NOT_FOUND,
                "key.not_found",
                format!("no key `{key_id}`"),
            )
        })
}

/// Addresses are derived from the public key on every read, so they are never stale.
fn with_addresses(mut info: KeyInfo) -> KeyInfo {
    let pk: Option<[u8; 33]> = info
        .public_key
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|v| v.try_into().ok());
    if let Some(pk) = pk {
        info.ethereum_address = proto::eth::address_from_pubkey(&pk).ok();
        info.bitcoin = Some(crate::orchestrator::bitcoin_addresses(&pk));
    }
    info
}

async fn create_sign_request(
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
    submit(&st, body).map(|(status, view)| (status, Json(view)))
}

/// Accepts a sign request (the API's, or one a proof-of-reserves report makes): idempotent per
/// request id, validated as every node will, then driven in the background.
pub(crate) fn submit(
    st: &ApiState,
    body: SignRequestBody,
) -> Result<(StatusCode, SignRequestView), ApiFail> {
    // A resent request gets its stored result (and no new session) even if the key has been
    // locked or its policy changed since.
    if let Some(existing) = st.orch.store.request(&body.request_id).map_err(internal)? {
        return match existing.body == body {
            true => Ok((StatusCode::OK, existing.view)),
            false => Err(id_conflict(&body.request_id)),
        };
    }
    validate_sign_body(st, &body)?;
    let rec = RequestRecord {
        body: body.clone(),
        view: SignRequestView {
            request_id: body.request_id.clone(),
            key_id: body.key_id.clone(),
            chain: body.chain.clone(),
            status: RequestStatus::Pending,
            signers: vec![],
            signature: None,
            signatures: vec![],
            bip322_signature: None,
            signed_tx: None,
            error: None,
            verdicts: Default::default(),
            not_before: None,
            missing_approvals: Default::default(),
            approvals: 0,
            presigned: 0,
        },
        approvals: vec![],
        presigs: Default::default(),
    };
    match st.orch.store.insert_request(&rec).map_err(internal)? {
        Some(existing) if existing.body == body => Ok((StatusCode::OK, existing.view)),
        Some(_) => Err(id_conflict(&body.request_id)),
        None => {
            st.orch.control.record(
                "request.received",
                serde_json::json!({"request_id": body.request_id, "body": body}),
            );
            tokio::spawn(st.orch.clone().sign_request(body.request_id.clone()));
            Ok((StatusCode::ACCEPTED, rec.view))
        }
    }
}

fn id_conflict(request_id: &str) -> ApiFail {
    ApiFail::new(
        StatusCode::CONFLICT,
        "request.id_conflict",
        format!("request id `{request_id}` was already used for a different request"),
    )
}

/// Checks a sign request as every node will (shape, key, account, decoding).
pub(crate) fn validate_sign_body(st: &ApiState, body: &SignRequestBody) -> Result<(), ApiFail> {
    let unprocessable =
        |code: &str, msg: String| ApiFail::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg);
    if !api::valid_request_id(&body.request_id) {
        return Err(unprocessable(
            "request.invalid_id",
            "`request_id` must be 1-128 characters of [A-Za-z0-9._:-]".into(),
        ));
    }
    if !proto::SUPPORTED_CHAINS.contains(&body.chain.as_str()) {
        return Err(unprocessable(
            "chain.unsupported",
            format!(
                "chain `{}` is not supported (supported: {:?})",
                body.chain,
                proto::SUPPORTED_CHAINS
            ),
        ));
    }
    let payload = SignPayload::from_body(body).map_err(payload_fail)?;
    let key = st.orch.store.key(&body.key_id).map_err(internal)?;
    let Some(key) = key else {
        return Err(ApiFail::new(
            StatusCode::NOT_FOUND,
            "key.not_found",
            format!("no key `{}`", body.key_id),
        ));
    };
    if key.info.status != KeyStatus::Ready || key.info.public_key.is_none() {
        return Err(ApiFail::new(
            StatusCode::CONFLICT,
            "key.not_ready",
            format!("key `{}` is not ready", body.key_id),
        ));
    }
    if let Some(lock) = &key.info.locked {
        return Err(ApiFail::new(
            StatusCode::LOCKED,
            "key.locked",
            format!(
                "key `{}` is locked after a security incident ({}: {}); an operator must unlock it",
                body.key_id, lock.code, lock.message
            ),
        ));
    }
    let spend = crate::accounts::spend_keys(&st.orch.store, &key, body.account.as_deref())
        .map_err(|f| {
            let status = match f.code.as_str() {
                "account.not_found" => StatusCode::NOT_FOUND,
                "account.not_ready" => StatusCode::CONFLICT,
                "internal" => return internal(f.message),
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            ApiFail::new(status, &f.code, f.message)
        })?;
    let decoded = payload.decode_for(&spend).map_err(payload_fail)?;
    decoded.intent(&body.key_id).map_err(payload_fail)?;
    Ok(())
}

fn payload_fail(e: PayloadError) -> ApiFail {
    let status = match e.code() {
        "tx.malformed_hex" | "psbt.malformed_base64" => StatusCode::BAD_REQUEST,
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiFail::new(status, e.code(), e.to_string())
}

/// Query of `GET /v1/sign-requests/{id}`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Long poll: answer as soon as the request is final, or after this many milliseconds
    /// (at most 30 000) with its current state.
    #[serde(default)]
    wait_ms: u64,
}

async fn get_sign_request(
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
            .ok_or_else(|| {
                ApiFail::new(
                    StatusCode::NOT_FOUND,
                    "request.not_found",
                    format!("no sign request `{request_id}`"),
                )
            })?;
        if view.status.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(view));
        }
        let _ = tokio::time::timeout_at(deadline, finished).await;
    }
}
