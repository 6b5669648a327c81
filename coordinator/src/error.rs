//! What the domain answers when it refuses or fails an operation: the stable code and message a
//! client sees ([`ApiError`]) and the kind of refusal. The HTTP edge (`api::error`) maps each
//! kind to a status; the domain knows nothing of HTTP.

use proto::api::ApiError;

use crate::store::api_error;

/// The kind of a refusal, which the API turns into an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input cannot be read at all (an encoding: hex, base64).
    Malformed,
    /// No such key, request, account or report.
    NotFound,
    /// The current state forbids it (exists already, not ready, final, id used for another body).
    Conflict,
    /// The key is locked after a security incident.
    Locked,
    /// The input reads but is not acceptable (ids, parameters, transaction content).
    Invalid,
    /// Not enough signer nodes are connected or answered.
    Unavailable,
    /// A store failure or a bug: the details are logged, never returned.
    Internal,
}

/// A refusal or failure of the domain, with the code and message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .error.code, .error.message)]
pub struct DomainError {
    /// What kind of refusal.
    pub kind: ErrorKind,
    /// Stable code and human message.
    pub error: ApiError,
}

impl DomainError {
    /// A refusal of `kind` with a stable `code`.
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            error: api_error(code, message),
        }
    }

    /// An internal failure: logged here with its details; the client sees `internal` only.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(ErrorKind::Internal, "internal", "internal error")
    }

    /// `key.not_found`.
    pub fn no_key(key_id: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "key.not_found",
            format!("no key `{key_id}`"),
        )
    }
}
