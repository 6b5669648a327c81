//! `GET /metrics`: the Prometheus exposition ([`crate::metrics`]).

use axum::{extract::State, http::header, response::IntoResponse};

use super::{error::ApiFail, ApiState};

/// Prometheus metrics (text format 0.0.4)
///
/// Nodes: `custody_node_connected`, `custody_node_policy_version{node,hash}`,
/// `custody_node_policy_error`, `custody_node_ledger_gaps`; requests: `custody_requests{status}`;
/// faults: `custody_session_blame_total{node,code}`, `custody_incidents_total{key}`,
/// `custody_signature_reports_total{node}`, `custody_key_locked{key}`; the presignature pool:
/// `custody_presig_available{key,subset}`, `custody_presig_oldest_age_seconds{key}`,
/// `custody_presig_refilled_last_minute`, `custody_presig_made_total`,
/// `custody_presig_used_total`, `custody_presig_failed_total`; and `custody_audit_records`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text format, version 0.0.4.", body = String, content_type = "text/plain; version=0.0.4"),
    )
)]
pub(crate) async fn metrics(State(st): State<ApiState>) -> Result<impl IntoResponse, ApiFail> {
    let text = crate::metrics::scrape(&st.orch)?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text))
}
