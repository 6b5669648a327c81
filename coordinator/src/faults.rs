//! Faults: who failed which session and why (audit log and metrics), and security incidents.
//!
//! A session that fails names the parties to blame (a round deadline's laggards, a node that
//! disconnected, the culprits cggmp24 names). The blamed node and the reason are counted in
//! `custody_session_blame_total` and written to the audit log; the request is retried on a
//! signer subset without that node.
//!
//! A combined signature that fails verification (a tampered partial signature) is an incident:
//! the key is locked, so no automatic retry signs with it again, an error-level log line and an
//! audit record are written, and `custody_incidents_total` counts it. An operator unlocks the
//! key with `POST /v1/keys/{id}/unlock` or, with the coordinator stopped, `coordinator key unlock`.

use std::{collections::BTreeMap, sync::Mutex};

use proto::{api::KeyLock, wire::SessionFailure};
use serde_json::json;

use crate::{control::unix_now, control::Control, store::Store};

/// Codes that mean a signature failed verification.
pub const INCIDENT_CODES: &[&str] = &["signature.invalid", "signature.mismatch"];

/// Counters behind the fault metrics.
#[derive(Default)]
pub struct FaultBook {
    /// (node, code) → sessions blamed on that node.
    blame: Mutex<BTreeMap<(String, String), u64>>,
    /// key → incidents.
    incidents: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultBook {
    /// Counts and audits a failed session's blame.
    pub fn blame(&self, control: &Control, session: &str, key_id: &str, f: &SessionFailure) {
        if f.blame.is_empty() {
            return;
        }
        {
            let mut b = lock(&self.blame);
            for node in &f.blame {
                *b.entry((node.clone(), f.code.clone())).or_default() += 1;
            }
        }
        tracing::warn!(session, key = key_id, code = %f.code, blame = ?f.blame, "session failed; blamed");
        control.record(
            "session.blame",
            json!({"session": session, "key_id": key_id, "nodes": f.blame,
                   "code": f.code, "message": f.message}),
        );
    }

    /// Locks the key after a failed signature verification and raises the alert.
    pub fn incident(
        &self,
        store: &Store,
        control: &Control,
        key_id: &str,
        request_id: &str,
        parties: &[String],
        f: &SessionFailure,
    ) {
        *lock(&self.incidents).entry(key_id.to_string()).or_default() += 1;
        let reported_by = match f.message.split('`').nth(1) {
            Some(node) => vec![node.to_string()],
            None => vec![],
        };
        let lock_rec = KeyLock {
            code: f.code.clone(),
            message: "a combined signature failed verification (tampered partial signature)".into(),
            request_id: request_id.to_string(),
            parties: parties.to_vec(),
            reported_by,
            at: unix_now(),
        };
        tracing::error!(
            key = key_id, request = request_id, code = %f.code, parties = ?parties,
            detail = %f.message,
            "SECURITY INCIDENT: combined signature failed verification; key locked, no automatic retries"
        );
        if let Err(e) = store.update_key(key_id, |k| {
            if k.info.locked.is_none() {
                k.info.locked = Some(lock_rec.clone());
            }
        }) {
            tracing::error!(error = %e, key = key_id, "cannot persist the key lock");
        }
        control.record(
            "incident.key_locked",
            json!({"key_id": key_id, "lock": lock_rec, "detail": f.message}),
        );
    }

    /// Prometheus text for the fault counters and key locks.
    pub fn metrics(&self, store: &Store, out: &mut String) {
        out.push_str("# TYPE custody_session_blame_total counter\n");
        for ((node, code), n) in lock(&self.blame).iter() {
            out.push_str(&format!(
                "custody_session_blame_total{{node=\"{node}\",code=\"{code}\"}} {n}\n"
            ));
        }
        out.push_str("# TYPE custody_incidents_total counter\n");
        for (key, n) in lock(&self.incidents).iter() {
            out.push_str(&format!("custody_incidents_total{{key=\"{key}\"}} {n}\n"));
        }
        out.push_str("# TYPE custody_key_locked gauge\n");
        for k in store.keys().unwrap_or_default() {
            let locked = u8::from(k.info.locked.is_some());
            out.push_str(&format!(
                "custody_key_locked{{key=\"{}\"}} {locked}\n",
                k.info.key_id
            ));
        }
    }
}

/// Clears a key's lock; returns the lock that was cleared (`None`: not locked or no such key).
pub fn unlock(store: &Store, key_id: &str) -> Result<Option<KeyLock>, crate::store::StoreError> {
    let mut cleared = None;
    store.update_key(key_id, |k| cleared = k.info.locked.take())?;
    Ok(cleared)
}
