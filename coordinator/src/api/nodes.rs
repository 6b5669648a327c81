//! The signer nodes as the coordinator sees them.

use std::collections::BTreeMap;

use axum::{extract::State, Json};
use proto::authz::{AuditHead, NodeStatus};
use serde_json::{json, Value};

use super::ApiState;

/// One node in `GET /v1/nodes`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct NodeView {
    /// Its link to the coordinator is up.
    connected: bool,
    /// What it last reported: policy, freezes, ledger, suspects, presignatures, syncing.
    status: NodeStatus,
    /// Its audit-log head as it last reported it.
    audit_head: Option<AuditHead>,
    /// Failed-signature-check reports it sent (one node's report locks nothing).
    signature_reports: u64,
}

/// Answer of `GET /v1/nodes`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct NodesView {
    /// Connected node ids.
    connected: Vec<String>,
    /// Every node that ever reported, by id.
    nodes: BTreeMap<String, NodeView>,
}

/// Connectivity and each node's policy, freeze and ledger state
#[utoipa::path(
    get,
    path = "/v1/nodes",
    tag = "nodes",
    responses(
        (status = 200, description = "Every node's last report.", body = NodesView),
    )
)]
pub(crate) async fn list_nodes(State(st): State<ApiState>) -> Json<Value> {
    let connected = st.orch.registry.connected();
    let statuses = st.orch.control.statuses();
    let reports = st.orch.faults.reports();
    let nodes: BTreeMap<String, Value> = statuses
        .into_iter()
        .map(|(n, s)| {
            let up = connected.contains(&n);
            // Failed-signature reports this node sent (one node's word locks nothing: suspect).
            let sig_reports = reports.get(&n).copied().unwrap_or(0);
            let audit_head = s.audit_head.clone();
            let v = json!({"connected": up, "status": s, "audit_head": audit_head,
                           "signature_reports": sig_reports});
            (n, v)
        })
        .collect();
    Json(json!({ "connected": connected, "nodes": nodes }))
}
