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
//!
//! The key is locked only on evidence one node cannot make up alone: the coordinator's own
//! check failed (it combined the partial signatures of a presigned session itself), or at least
//! t distinct nodes of the key (and never fewer than 2) reported a failed check. A single node's
//! report is audited (`incident.reported`), counted in `custody_signature_reports_total` and
//! shown in the node listing, and fails that request, but does not lock the key: otherwise one
//! lying node could lock every key it holds a share of.
//!
//! Metric labels hold only escaped values ([`label`]); values a node supplies (failure codes,
//! policy hashes) are also cut to [`MAX_LABEL_LEN`] characters, and a family keeps at most
//! [`MAX_SERIES`] series, counting the rest under `code="other"`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use proto::{api::KeyLock, wire::SessionFailure};
use serde_json::json;

use crate::{
    control::unix_now,
    control::Control,
    metrics::{clean, node_value, Family},
    store::Store,
};

/// Codes that mean a signature failed verification.
pub const INCIDENT_CODES: &[&str] = &["signature.invalid", "signature.mismatch"];

/// Start of the message of a failure found by the coordinator's own check (it combined the
/// partial signatures itself), as opposed to a node's report.
pub(crate) const OWN_CHECK: &str = "coordinator check: ";

/// Longest label value taken from what a node sent (longer ones are cut).
pub const MAX_LABEL_LEN: usize = 64;

/// Most series one counter family keeps; further `(node, code)` pairs count as `other`.
pub const MAX_SERIES: usize = 256;

/// A label value as the Prometheus text format shows it: backslash, double quote and line feed
/// escaped (the format's three escapes), other control characters replaced by `_`. The
/// exposition gives [`crate::metrics::clean`] values to the encoder, which writes exactly this.
pub fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

/// [`label`] of a value a node supplied, cut to [`MAX_LABEL_LEN`] characters first (what
/// [`crate::metrics::node_value`] is exposed as).
pub fn node_label(value: &str) -> String {
    let cut: String = value.chars().take(MAX_LABEL_LEN).collect();
    label(&cut)
}

/// A failure code as a label: codes look like `area.reason`; anything else is `invalid`.
fn code_label(code: &str) -> &str {
    let well_formed = !code.is_empty()
        && code.len() <= 48
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    match well_formed {
        true => code,
        false => "invalid",
    }
}

/// Who vouches for a failed signature check.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// The coordinator's own check of a signature it combined itself.
    Own,
    /// One node's word (its report, or a signature only it returned).
    Report(String),
}

/// Where a failure with an incident code came from. Node reports carry the prefix
/// "node `X`" the coordinator put on them; its own checks start with [`OWN_CHECK`].
pub(crate) fn evidence(f: &SessionFailure) -> Evidence {
    if f.message.starts_with(OWN_CHECK) {
        return Evidence::Own;
    }
    let node = f.message.split('`').nth(1).unwrap_or_default();
    Evidence::Report(node.to_string())
}

/// Counters behind the fault metrics.
#[derive(Default)]
pub struct FaultBook {
    /// (node, code) → sessions blamed on that node.
    blame: Mutex<BTreeMap<(String, String), u64>>,
    /// key → incidents.
    incidents: Mutex<BTreeMap<String, u64>>,
    /// key → the distinct nodes that reported a failed signature check since its last unlock.
    reporters: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// node → failed-check reports it sent (suspect until explained).
    reports: Mutex<BTreeMap<String, u64>>,
    /// (kind, outcome) → refresh and reshare ceremonies that ended so.
    reshares: Mutex<BTreeMap<(String, String), u64>>,
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
        self.count_blame(f);
        tracing::warn!(session, key = key_id, code = %f.code, blame = ?f.blame, "session failed; blamed");
        control.record(
            "session.blame",
            json!({"session": session, "key_id": key_id, "nodes": f.blame,
                   "code": f.code, "message": f.message}),
        );
    }

    /// Counts a failure's blame per (node, code), within [`MAX_SERIES`] series.
    fn count_blame(&self, f: &SessionFailure) {
        let mut b = lock(&self.blame);
        for node in &f.blame {
            let mut series = (node.clone(), code_label(&f.code).to_string());
            if !b.contains_key(&series) && b.len() >= MAX_SERIES {
                series.1 = "other".into();
            }
            *b.entry(series).or_default() += 1;
        }
    }

    /// Notes `node`'s report of a failed check on `key_id`. Returns every reporter once
    /// `needed` distinct ones, all in `members`, have reported since the last unlock.
    pub(crate) fn note_report(
        &self,
        key_id: &str,
        node: &str,
        members: &[String],
        needed: usize,
    ) -> Option<Vec<String>> {
        *lock(&self.reports).entry(node.to_string()).or_default() += 1;
        let mut all = lock(&self.reporters);
        let set = all.entry(key_id.to_string()).or_default();
        if members.iter().any(|m| m == node) {
            set.insert(node.to_string());
        }
        (set.len() >= needed.max(2)).then(|| set.iter().cloned().collect())
    }

    /// Forgets the reports on a key (after an operator unlocked it).
    pub fn clear_reports(&self, key_id: &str) {
        lock(&self.reporters).remove(key_id);
    }

    /// Failed-check reports each node sent since the coordinator started.
    pub fn reports(&self) -> BTreeMap<String, u64> {
        lock(&self.reports).clone()
    }

    /// Handles a failed signature check: the coordinator's own failed check, or enough distinct
    /// nodes' reports, lock the key and raise the alert; a single node's report is audited and
    /// counted, and leaves the key usable.
    pub fn incident(
        &self,
        store: &Store,
        control: &Control,
        key_id: &str,
        request_id: &str,
        parties: &[String],
        f: &SessionFailure,
    ) {
        let reported_by = match evidence(f) {
            Evidence::Own => vec![],
            Evidence::Report(node) => {
                let key = store.key(key_id).ok().flatten();
                let (needed, members) = key
                    .map(|k| (k.info.threshold as usize, k.info.nodes))
                    .unwrap_or((usize::MAX, vec![]));
                let members: Vec<String> = members
                    .into_iter()
                    .filter(|m| parties.contains(m))
                    .collect();
                let reporters = self.note_report(key_id, &node, &members, needed);
                let Some(reporters) = reporters else {
                    tracing::warn!(
                        key = key_id, request = request_id, node = %node, code = %f.code,
                        detail = %f.message,
                        "one node reports a failed signature check: suspect; the key stays unlocked \
                         until the coordinator's own check fails or {} distinct nodes report it",
                        needed.max(2)
                    );
                    control.record(
                        "incident.reported",
                        json!({"key_id": key_id, "request_id": request_id, "node": node,
                               "parties": parties, "code": f.code, "detail": f.message,
                               "locked": false}),
                    );
                    return;
                };
                reporters
            }
        };
        self.lock_key(
            store,
            control,
            (key_id, request_id, parties),
            f,
            reported_by,
        );
    }

    fn lock_key(
        &self,
        store: &Store,
        control: &Control,
        (key_id, request_id, parties): (&str, &str, &[String]),
        f: &SessionFailure,
        reported_by: Vec<String>,
    ) {
        *lock(&self.incidents).entry(key_id.to_string()).or_default() += 1;
        let message = match reported_by.is_empty() {
            true => "the coordinator's own check of a combined signature failed (tampered partial signature)",
            false => "enough distinct nodes reported a combined signature that failed verification (tampered partial signature)",
        };
        let lock_rec = KeyLock {
            code: f.code.clone(),
            message: message.into(),
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

    /// The fault counters and key locks as metric families.
    pub fn families(&self, store: &Store) -> Vec<Family> {
        let mut out = self.counter_families();
        let mut locked = Family::gauge(
            "custody_key_locked",
            "Whether the key is locked after a security incident.",
        );
        let mut epoch = Family::gauge(
            "custody_key_epoch",
            "The key's active share epoch (0 from its DKG, one more after each refresh or reshare).",
        );
        for k in store.keys().unwrap_or_default() {
            locked.push(
                vec![("key", clean(&k.info.key_id))],
                u64::from(k.info.locked.is_some()),
            );
            epoch.push(vec![("key", clean(&k.info.key_id))], k.info.epoch);
        }
        out.push(locked);
        out.push(epoch);
        let mut overdue = Family::gauge(
            "custody_refresh_overdue",
            "Whether the key's scheduled refresh (policy `refresh_every`) is overdue; keys without a schedule are absent.",
        );
        for (key, view) in crate::lifecycle::schedule::schedules(store) {
            overdue.push(vec![("key", clean(&key))], u64::from(view.overdue));
        }
        out.push(overdue);
        out
    }

    /// Counts a refresh or reshare ceremony that ended (`outcome`: `activated` or `failed`).
    pub fn reshare_ended(&self, kind: proto::lifecycle::MembershipKind, outcome: &str) {
        let kind = match kind {
            proto::lifecycle::MembershipKind::Refresh => "refresh",
            proto::lifecycle::MembershipKind::Reshare => "reshare",
        };
        *lock(&self.reshares)
            .entry((kind.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    /// The in-memory counters (blame, incidents, failed-check reports).
    fn counter_families(&self) -> Vec<Family> {
        let mut blame = Family::counter(
            "custody_session_blame_total",
            "Sessions that failed because of the node, per failure code.",
        );
        for ((node, code), n) in lock(&self.blame).iter() {
            blame.push(
                vec![("node", node_value(node)), ("code", node_value(code))],
                *n,
            );
        }
        let mut incidents = Family::counter(
            "custody_incidents_total",
            "Security incidents (a combined signature failed verification) per key.",
        );
        for (key, n) in lock(&self.incidents).iter() {
            incidents.push(vec![("key", clean(key))], *n);
        }
        let mut reports = Family::counter(
            "custody_signature_reports_total",
            "Failed-signature-check reports the node sent.",
        );
        for (node, n) in lock(&self.reports).iter() {
            reports.push(vec![("node", node_value(node))], *n);
        }
        let mut reshares = Family::counter(
            "custody_reshare_total",
            "Refresh and reshare ceremonies since the coordinator started, per kind and outcome.",
        );
        for ((kind, outcome), n) in lock(&self.reshares).iter() {
            reshares.push(vec![("kind", clean(kind)), ("outcome", clean(outcome))], *n);
        }
        vec![blame, incidents, reports, reshares]
    }
}

/// Clears a key's lock; returns the lock that was cleared (`None`: not locked or no such key).
pub fn unlock(store: &Store, key_id: &str) -> Result<Option<KeyLock>, crate::store::StoreError> {
    let mut cleared = None;
    store.update_key(key_id, |k| cleared = k.info.locked.take())?;
    Ok(cleared)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn failure(code: &str, message: &str, blame: &[&str]) -> SessionFailure {
        SessionFailure {
            code: code.into(),
            message: message.into(),
            blame: blame.iter().map(|b| b.to_string()).collect(),
        }
    }

    /// Every sample line: `name{k="v",...} value`, each label value a valid escaped string.
    fn assert_exposition(text: &str) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let open = line.find('{').expect(line);
            let close = line.rfind('}').expect(line);
            let mut labels = &line[open + 1..close];
            while !labels.is_empty() {
                let eq = labels.find("=\"").expect(line);
                let mut rest = labels[eq + 2..].chars();
                let mut used = eq + 2;
                loop {
                    let c = rest.next().expect("unterminated label value");
                    used += c.len_utf8();
                    match c {
                        '\\' => {
                            let e = rest.next().unwrap();
                            assert!(matches!(e, '\\' | '"' | 'n'), "bad escape in {line}");
                            used += 1;
                        }
                        '"' => break,
                        c => assert!(!c.is_control(), "raw control character in {line}"),
                    }
                }
                labels = labels[used..].strip_prefix(',').unwrap_or(&labels[used..]);
            }
            let value = line[close + 1..].trim();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped_and_node_values_bounded() {
        assert_eq!(label("a\\b\"c\nd\re"), "a\\\\b\\\"c\\nd_e");
        let long = "x".repeat(10_000);
        assert_eq!(node_label(&long).len(), MAX_LABEL_LEN);
        assert_eq!(node_label("é\"").as_str(), "é\\\"");
    }

    #[test]
    fn hostile_failure_codes_make_valid_bounded_metrics() {
        let book = FaultBook::default();
        let hostile = "x\"} 1\ncustody_key_locked{key=\"it-key\"} 1\n# \\";
        book.count_blame(&failure(hostile, "m", &["node-1"]));
        for i in 0..10_000 {
            book.count_blame(&failure(&format!("code.{i}"), "m", &["node-2"]));
        }
        *lock(&book.incidents).entry("k\"ey\n".into()).or_default() += 1;
        book.note_report("k", "node\"\n3", &[], 2);
        let out = crate::metrics::render(book.counter_families());
        assert_exposition(&out);
        assert!(
            !out.contains("custody_key_locked"),
            "no injected series:\n{out}"
        );
        let series = out
            .lines()
            .filter(|l| l.starts_with("custody_session_blame_total{"));
        assert!(series.count() <= MAX_SERIES + 2, "bounded:\n{out}");
        assert!(
            out.contains("code=\"invalid\""),
            "a malformed code is not a label"
        );
        assert!(
            out.contains("code=\"other\""),
            "series beyond the cap are aggregated"
        );
        assert!(
            out.contains("custody_incidents_total{key=\"k\\\"ey\\n\"} 1"),
            "{out}"
        );
    }

    #[test]
    fn only_own_checks_or_enough_distinct_reports_lock() {
        let own = failure(
            "signature.invalid",
            &format!("{OWN_CHECK}combined signature rejected"),
            &[],
        );
        assert_eq!(evidence(&own), Evidence::Own);
        let report = failure(
            "signature.invalid",
            "node `node-1`: the combined signature does not verify: see `node-3`",
            &[],
        );
        assert_eq!(evidence(&report), Evidence::Report("node-1".into()));
        let forged = failure(
            "signature.invalid",
            "node `node-1`: coordinator check: forged",
            &[],
        );
        assert_eq!(evidence(&forged), Evidence::Report("node-1".into()));

        let book = FaultBook::default();
        let members: Vec<String> = ["node-1", "node-2", "node-3"].map(String::from).to_vec();
        assert_eq!(
            book.note_report("k", "node-1", &members, 2),
            None,
            "one report"
        );
        assert_eq!(
            book.note_report("k", "node-1", &members, 2),
            None,
            "the same node again"
        );
        assert_eq!(
            book.note_report("k", "node-9", &members, 2),
            None,
            "not a member"
        );
        assert_eq!(
            book.note_report("other", "node-2", &members, 2),
            None,
            "another key"
        );
        assert_eq!(
            book.note_report("k", "node-2", &members, 2),
            Some(vec!["node-1".to_string(), "node-2".to_string()])
        );
        book.clear_reports("k");
        assert_eq!(
            book.note_report("k", "node-3", &members, 2),
            None,
            "cleared on unlock"
        );
        assert_eq!(
            book.note_report("t1", "node-1", &members, 1),
            None,
            "never fewer than 2"
        );
        assert_eq!(book.reports()["node-1"], 3);
    }
}
