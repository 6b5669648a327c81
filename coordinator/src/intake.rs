//! Accepting a sign request (the API's, or one a proof-of-reserves report makes): checked as
//! every node will check it, stored idempotently per request id, then driven in the background
//! ([`crate::requests`]).

use std::sync::Arc;

use proto::{
    api::{self, KeyStatus, RequestStatus, SignRequestBody, SignRequestView},
    payload::{PayloadError, SignPayload},
};

use crate::{
    error::{DomainError, ErrorKind},
    orchestrator::Orchestrator,
    store::RequestRecord,
};

/// How [`submit`] took a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A new request, stored and now driven.
    New(SignRequestView),
    /// The same request again: its stored state (no new session).
    Again(SignRequestView),
}

/// Accepts a sign request: idempotent per request id, validated as every node will, then
/// driven in the background.
pub fn submit(orch: &Arc<Orchestrator>, body: SignRequestBody) -> Result<Submitted, DomainError> {
    // A resent request gets its stored result (and no new session) even if the key has been
    // locked or its policy changed since.
    if let Some(existing) = orch
        .store
        .request(&body.request_id)
        .map_err(DomainError::internal)?
    {
        return match existing.body == body {
            true => Ok(Submitted::Again(existing.view)),
            false => Err(id_conflict(&body.request_id)),
        };
    }
    validate(orch, &body)?;
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
    match orch
        .store
        .insert_request(&rec)
        .map_err(DomainError::internal)?
    {
        Some(existing) if existing.body == body => Ok(Submitted::Again(existing.view)),
        Some(_) => Err(id_conflict(&body.request_id)),
        None => {
            orch.control.record(
                "request.received",
                serde_json::json!({"request_id": body.request_id, "body": body}),
            );
            tokio::spawn(orch.clone().sign_request(body.request_id.clone()));
            Ok(Submitted::New(rec.view))
        }
    }
}

fn id_conflict(request_id: &str) -> DomainError {
    DomainError::new(
        ErrorKind::Conflict,
        "request.id_conflict",
        format!("request id `{request_id}` was already used for a different request"),
    )
}

/// Checks a sign request as every node will (shape, key, account, decoding).
pub fn validate(orch: &Orchestrator, body: &SignRequestBody) -> Result<(), DomainError> {
    let invalid = |code: &str, msg: String| DomainError::new(ErrorKind::Invalid, code, msg);
    if !api::valid_request_id(&body.request_id) {
        return Err(invalid(
            "request.invalid_id",
            format!(
                "`request_id` must be 1-{} characters of [A-Za-z0-9._:-]",
                api::MAX_REQUEST_ID_LEN
            ),
        ));
    }
    if !proto::SUPPORTED_CHAINS.contains(&body.chain.as_str()) {
        return Err(invalid(
            "chain.unsupported",
            format!(
                "chain `{}` is not supported (supported: {:?})",
                body.chain,
                proto::SUPPORTED_CHAINS
            ),
        ));
    }
    let payload = SignPayload::from_body(body).map_err(payload_error)?;
    let key = orch
        .store
        .key(&body.key_id)
        .map_err(DomainError::internal)?;
    let Some(key) = key else {
        return Err(DomainError::no_key(&body.key_id));
    };
    if key.info.status != KeyStatus::Ready || key.info.public_key.is_none() {
        return Err(DomainError::new(
            ErrorKind::Conflict,
            "key.not_ready",
            format!("key `{}` is not ready", body.key_id),
        ));
    }
    if let Some(lock) = &key.info.locked {
        return Err(DomainError::new(
            ErrorKind::Locked,
            "key.locked",
            format!(
                "key `{}` is locked after a security incident ({}: {}); an operator must unlock it",
                body.key_id, lock.code, lock.message
            ),
        ));
    }
    let spend =
        crate::accounts::spend_keys(&orch.store, &key, body.account.as_deref()).map_err(|f| {
            let kind = match f.code.as_str() {
                "account.not_found" => ErrorKind::NotFound,
                "account.not_ready" => ErrorKind::Conflict,
                "internal" => return DomainError::internal(f.message),
                _ => ErrorKind::Invalid,
            };
            DomainError::new(kind, &f.code, f.message)
        })?;
    let decoded = payload.decode_for(&spend).map_err(payload_error)?;
    decoded.intent(&body.key_id).map_err(payload_error)?;
    Ok(())
}

fn payload_error(e: PayloadError) -> DomainError {
    let kind = match e.code() {
        "tx.malformed_hex" | "psbt.malformed_base64" => ErrorKind::Malformed,
        "internal" => ErrorKind::Internal,
        _ => ErrorKind::Invalid,
    };
    DomainError::new(kind, e.code(), e.to_string())
}
