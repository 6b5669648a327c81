//! Keys: create one (distributed key generation) and read it.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    http::StatusCode,
    Json,
};
use proto::api::{self, ApiError, CreateKeyRequest, KeyInfo, KeyStatus};

use super::{
    error::{internal, no_key, parse_json, typed, ApiFail},
    ApiState,
};
use crate::store::KeyRecord;

/// Start distributed key generation for a key
///
/// Starts distributed key generation (HD-capable) and, if the node group has none yet, the
/// aux-info ceremony. Every listed node must be connected.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    request_body(
        content = CreateKeyRequest,
        example = json!({"key_id": "treasury-1", "threshold": 2, "nodes": ["node-1", "node-2", "node-3"]})
    ),
    responses(
        (status = 202, description = "Ceremony started: the key, `generating`.", body = KeyInfo),
        (status = 409, description = "`key.exists`: the key id is taken.", body = ApiError),
        (status = 422, description = "`request.invalid`, `key.invalid_id`, `threshold.invalid`, `nodes.duplicate`.", body = ApiError),
        (status = 503, description = "`nodes.unavailable`: a listed node is not connected.", body = ApiError),
    )
)]
pub(crate) async fn create_key(
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
            epoch: 0,
            ceremony: None,
            refresh: None,
        },
        presign_depth: None,
        activation: None,
        chain_code: None,
        epoch_since: None,
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

/// A key: status, public key, chain code, addresses, freeze state, lock
///
/// `status` is `generating`, `ready` or `failed` (then `error` says why). A ready key also has
/// its master `chain_code`, its Ethereum address and `bitcoin`: its P2WPKH address per network.
/// `freeze` is the key's freeze state on each node; `locked` is set after a security incident.
#[utoipa::path(
    get,
    path = "/v1/keys/{key_id}",
    tag = "keys",
    params(("key_id" = String, Path, description = "Key id.")),
    responses(
        (status = 200, description = "The key.", body = KeyInfo,
         example = json!({"key_id": "treasury-1", "status": "ready", "threshold": 2,
                          "nodes": ["node-1", "node-2", "node-3"], "public_key": "03…",
                          "chain_code": "9f…", "ethereum_address": "0x…",
                          "bitcoin": {"mainnet": "bc1q…", "regtest": "bcrt1q…"},
                          "freeze": {"node-1": {"frozen": false, "epoch": 0}}})),
        (status = 404, description = "`key.not_found`.", body = ApiError),
    )
)]
pub(crate) async fn get_key(
    State(st): State<ApiState>,
    Path(key_id): Path<String>,
) -> Result<Json<KeyInfo>, ApiFail> {
    st.orch
        .store
        .key(&key_id)
        .map_err(internal)?
        .map(|k| {
            let policy = crate::lifecycle::schedule::relayed_policy(&st.orch.store);
            let now = crate::control::unix_now();
            let refresh = crate::lifecycle::schedule::schedule(&k, policy.as_ref(), now);
            let mut info = with_addresses(k.info);
            info.chain_code = k.chain_code;
            info.refresh = refresh;
            Json(with_freeze(&st, info))
        })
        .ok_or_else(|| no_key(&key_id))
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

/// Adds each node's freeze state for the key.
fn with_freeze(st: &ApiState, mut info: KeyInfo) -> KeyInfo {
    for (node, status) in st.orch.control.statuses() {
        if let Some(f) = status.freezes.get(&info.key_id) {
            info.freeze.insert(node, *f);
        }
    }
    info
}
