//! The HTTP side of errors: every error is `{ "code", "message" }` with a stable code and an
//! HTTP status; internal error text never reaches a client. Domain refusals
//! ([`DomainError`]) are mapped to a status here, and only here.

use axum::{
    body::Bytes,
    extract::rejection::BytesRejection,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use proto::api::ApiError;

use crate::{
    error::{DomainError, ErrorKind},
    store::api_error,
};

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

/// The HTTP status of each kind of domain refusal.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Malformed => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Locked => StatusCode::LOCKED,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<DomainError> for ApiFail {
    fn from(e: DomainError) -> Self {
        Self(status(e.kind), e.error)
    }
}

/// An internal failure: logged with its details; the client sees `internal` only.
pub(crate) fn internal(e: impl std::fmt::Display) -> ApiFail {
    DomainError::internal(e).into()
}

/// `key.not_found`.
pub(crate) fn no_key(key_id: &str) -> ApiFail {
    DomainError::no_key(key_id).into()
}

/// The body as JSON (`413 request.too_large`, `400 request.unreadable`,
/// `400 request.malformed_json`).
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

/// A JSON value as the body type `T` (`422 request.invalid`).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiFail> {
    serde_json::from_value(v).map_err(|e| {
        ApiFail::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "request.invalid",
            format!("invalid request body: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_kinds_keep_their_statuses() {
        let cases = [
            (ErrorKind::Malformed, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Locked, 423),
            (ErrorKind::Invalid, 422),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, code) in cases {
            let fail = ApiFail::from(DomainError::new(kind, "x.y", "m"));
            assert_eq!(fail.0.as_u16(), code, "{kind:?}");
            assert_eq!(fail.1.code, "x.y");
        }
    }
}
