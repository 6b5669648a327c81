//! API endpoints for people acting on requests and keys: approvals, guardian vetoes and freezes,
//! officer unfreezes, policy bundles; plus node status and metrics. The coordinator relays each
//! signed order to every node and reports what each node answered: nodes verify, it does not.

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use proto::{
    api::{KeyInfo, KeyStatus, RequestStatus, SignRequestView},
    authz::{self, hex32, hex64, Approval, OfficerSignature, Order},
    wire::SessionFailure,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    api::{internal, parse_json, typed, ApiFail, ApiState},
    requests::vetoed,
};

/// Approvals kept per request; more are refused (each costs every node a signature check).
pub const MAX_APPROVALS: usize = 32;
const ORDER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Adds each node's freeze state for the key.
pub(crate) fn with_freeze(st: &ApiState, mut info: KeyInfo) -> KeyInfo {
    for (node, status) in st.orch.control.statuses() {
        if let Some(f) = status.freezes.get(&info.key_id) {
            info.freeze.insert(node, *f);
        }
    }
    info
}

/// `GET /v1/nodes`: connectivity and each node's policy, freeze and ledger state.
pub async fn list_nodes(State(st): State<ApiState>) -> Json<Value> {
    let connected = st.orch.registry.connected();
    let statuses = st.orch.control.statuses();
    let nodes: BTreeMap<String, Value> = statuses
        .into_iter()
        .map(|(n, s)| {
            let up = connected.contains(&n);
            (n, json!({"connected": up, "status": s}))
        })
        .collect();
    Json(json!({ "connected": connected, "nodes": nodes }))
}

/// `GET /v1/policy`: the last bundle pushed and the policy each node runs.
pub async fn get_policy(State(st): State<ApiState>) -> Result<Json<Value>, ApiFail> {
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

/// `POST /v1/policy`: relays a signed bundle; each node verifies it against its pinned officers.
pub async fn push_policy(
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

fn no_nodes() -> ApiFail {
    ApiFail::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "nodes.unavailable",
        "no signer node is connected; the order is stored and delivered when nodes connect",
    )
}

/// Body of `POST /v1/keys/{key_id}/freeze`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeBody {
    epoch: u64,
    #[serde(with = "hex32")]
    guardian: [u8; 32],
    #[serde(with = "hex64")]
    signature: [u8; 64],
}

/// Body of `POST /v1/keys/{key_id}/unfreeze`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnfreezeBody {
    epoch: u64,
    signatures: Vec<OfficerSignature>,
}

/// Body of `POST /v1/sign-requests/{id}/cancel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(with = "hex32")]
    guardian: [u8; 32],
    #[serde(with = "hex64")]
    signature: [u8; 64],
}

type Results = BTreeMap<String, Result<(), SessionFailure>>;

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
fn order_outcome(results: &Results) -> Result<Json<Value>, ApiFail> {
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

async fn key_exists(st: &ApiState, key_id: &str) -> Result<(), ApiFail> {
    match st.orch.store.key(key_id).map_err(internal)? {
        Some(_) => Ok(()),
        None => Err(ApiFail::new(
            StatusCode::NOT_FOUND,
            "key.not_found",
            format!("no key `{key_id}`"),
        )),
    }
}

/// `POST /v1/keys/{key_id}/freeze`: one guardian's signature stops signing on every node.
pub async fn freeze(
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

/// Body of `POST /v1/keys/{key_id}/unlock`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UnlockBody {
    /// Why the operator unlocks (audited).
    #[serde(default)]
    reason: String,
}

/// `POST /v1/keys/{key_id}/unlock` (scope `operate`): clears the lock set by a security
/// incident, after the operator has investigated it.
pub async fn unlock(
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

/// `GET /readyz`: 200 while the store is readable and every ready key has at least t of its
/// nodes connected; otherwise 503, naming what is missing. No credential needed.
pub async fn readyz(State(st): State<ApiState>) -> (StatusCode, Json<Value>) {
    let store = st.orch.clone();
    let keys = tokio::task::spawn_blocking(move || store.store.keys()).await;
    let connected = st.orch.registry.connected();
    let mut problems = Vec::new();
    let store_ok = match keys {
        Ok(Ok(keys)) => {
            for k in keys.iter().filter(|k| k.info.status == KeyStatus::Ready) {
                let up = k
                    .info
                    .nodes
                    .iter()
                    .filter(|n| connected.contains(n))
                    .count();
                if up < k.info.threshold as usize {
                    problems.push(format!(
                        "key `{}`: {up} of {} nodes connected, {} needed",
                        k.info.key_id,
                        k.info.nodes.len(),
                        k.info.threshold
                    ));
                }
            }
            true
        }
        _ => {
            problems.push("store unreadable".to_string());
            false
        }
    };
    let ready = problems.is_empty();
    let body = json!({
        "ready": ready,
        "checks": {"store": if store_ok { "ok" } else { "unreadable" },
                   "nodes_connected": connected},
        "problems": problems,
    });
    let code = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(body))
}

/// `POST /v1/keys/{key_id}/unfreeze`: needs the officer quorum.
pub async fn unfreeze(
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

fn not_found(request_id: &str) -> ApiFail {
    ApiFail::new(
        StatusCode::NOT_FOUND,
        "request.not_found",
        format!("no sign request `{request_id}`"),
    )
}

/// `POST /v1/sign-requests/{id}/cancel`: a guardian's veto, relayed to every node.
pub async fn cancel(
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

/// `POST /v1/sign-requests/{id}/approvals`: one approval object or an array of them.
pub async fn add_approvals(
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

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<ApiState>) -> Result<impl IntoResponse, ApiFail> {
    let connected = st.orch.registry.connected();
    let mut out = String::new();
    out.push_str("# TYPE custody_node_connected gauge\n");
    let statuses = st.orch.control.statuses();
    for n in statuses.keys() {
        let up = u8::from(connected.contains(n));
        out.push_str(&format!("custody_node_connected{{node=\"{n}\"}} {up}\n"));
    }
    out.push_str("# TYPE custody_node_policy_version gauge\n");
    for (n, s) in &statuses {
        if let Some(p) = &s.policy {
            out.push_str(&format!(
                "custody_node_policy_version{{node=\"{n}\",hash=\"{}\"}} {}\n",
                p.hash, p.version
            ));
        }
    }
    out.push_str("# TYPE custody_node_policy_error gauge\n");
    for (n, s) in &statuses {
        let e = u8::from(s.policy_error.is_some());
        out.push_str(&format!("custody_node_policy_error{{node=\"{n}\"}} {e}\n"));
    }
    out.push_str("# TYPE custody_node_ledger_gaps gauge\n");
    for (n, s) in &statuses {
        let g = s.ledger_gaps.len();
        out.push_str(&format!("custody_node_ledger_gaps{{node=\"{n}\"}} {g}\n"));
    }
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for r in st.orch.store.requests().map_err(internal)? {
        let name = serde_json::to_value(r.view.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *by_status.entry(name).or_default() += 1;
    }
    out.push_str("# TYPE custody_requests gauge\n");
    for (s, c) in by_status {
        out.push_str(&format!("custody_requests{{status=\"{s}\"}} {c}\n"));
    }
    st.orch.faults.metrics(&st.orch.store, &mut out);
    out.push_str(&crate::pool::metrics(&st.orch));
    out.push_str("# TYPE custody_audit_records counter\n");
    out.push_str(&format!(
        "custody_audit_records {}\n",
        st.orch.control.audit.len()
    ));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

/// `GET /v1/keys/{key_id}/presignatures`: the key's pool (depth, what is ready per subset,
/// the oldest's age, the refill rate).
pub async fn get_pool(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
) -> Result<Json<proto::api::PresigPoolView>, ApiFail> {
    let key = pool_key(&st, &key_id)?;
    Ok(Json(crate::pool::view(&st.orch, &key)))
}

/// `PUT /v1/keys/{key_id}/presignatures` (scope `operate`): sets the key's pool depth per
/// signer subset (0 turns the pool off; unused presignatures stay until used).
pub async fn set_pool_depth(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<proto::api::PresigPoolView>, ApiFail> {
    let b: proto::api::PresigDepthBody = typed(parse_json(body)?)?;
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
        .ok_or_else(|| {
            ApiFail::new(
                StatusCode::NOT_FOUND,
                "key.not_found",
                format!("no key `{key_id}`"),
            )
        })?;
    st.orch
        .control
        .record("presign.depth", json!({"key_id": key_id, "depth": b.depth}));
    Ok(Json(crate::pool::view(&st.orch, &key)))
}

/// Deepest pool a key may ask for per subset.
const MAX_POOL_DEPTH: u32 = 64;

fn pool_key(st: &ApiState, key_id: &str) -> Result<crate::store::KeyRecord, ApiFail> {
    st.orch.store.key(key_id).map_err(internal)?.ok_or_else(|| {
        ApiFail::new(
            StatusCode::NOT_FOUND,
            "key.not_found",
            format!("no key `{key_id}`"),
        )
    })
}
