//! What every handler shares.

use std::sync::Arc;

use crate::{auth::Authenticator, orchestrator::Orchestrator};

/// Shared API state.
#[derive(Clone)]
pub struct ApiState {
    /// Orchestrator.
    pub orch: Arc<Orchestrator>,
    /// Credentials, scopes and rates.
    pub auth: Arc<Authenticator>,
}

/// Name of a verified API client certificate on this connection, if any.
#[derive(Clone, Debug, Default)]
pub struct ClientCert(pub Option<String>);
