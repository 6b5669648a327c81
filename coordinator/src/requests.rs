//! Driving a sign request: ask every node for its verdict, sign only with t nodes at allow,
//! wait (durably `deferred`) while time-locks run or approvals are missing, and stop for good on
//! a denial or a guardian's veto.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use proto::{
    api::{ApiError, KeyStatus, RequestStatus, SignatureView},
    authz::{NodeVerdict, VerdictKind},
    payload::{Finalized, SignPayload},
    sig::VerifiedSignature,
    wire::{EvaluateRequest, SessionFailure, SessionKind},
};
use serde_json::json;

use crate::{
    control::unix_now,
    faults::INCIDENT_CODES,
    orchestrator::{
        agreed_signature, failure_to_api, internal, key_pk, payload_failure, plain_failure,
        retryable, signature_view, subsets, Orchestrator, STOPPING,
    },
    store::{api_error, KeyRecord, RequestRecord},
};

/// How a request ended.
enum End {
    Signed(Vec<VerifiedSignature>, Finalized),
    /// Final status other than signed, with the reason.
    Stopped(RequestStatus, SessionFailure),
    /// Someone else (a veto) already finalised the record.
    AlreadyFinal,
    /// The coordinator is stopping: the request stays as stored and resumes at the next start.
    Suspended,
}

/// Failures that say "not yet" rather than "this attempt failed": they do not use up a
/// request's attempts.
const TRANSIENT: &[&str] = &[
    "request.in_progress",
    "request.already_signed",
    "ledger.behind",
    "node.busy",
    "node.stopping",
];

/// What the verdicts of one round allow.
enum Round {
    Sign(Vec<String>),
    Deny(SessionFailure),
    Wait {
        not_before: Option<u64>,
        missing: BTreeMap<String, u32>,
    },
}

/// The verdict round's outcome: sign with the allowing nodes, deny if t allows can no longer
/// happen, otherwise wait.
fn tally(key: &KeyRecord, verdicts: &BTreeMap<String, NodeVerdict>) -> Round {
    let t = key.info.threshold as usize;
    let n = key.info.nodes.len();
    let of = |k: VerdictKind| verdicts.iter().filter(move |(_, v)| v.kind == k);
    let allow: Vec<String> = of(VerdictKind::Allow).map(|(n, _)| n.clone()).collect();
    if allow.len() >= t {
        return Round::Sign(allow);
    }
    let denies: Vec<(&String, &NodeVerdict)> = of(VerdictKind::Deny).collect();
    if n - denies.len() < t {
        let code = denies
            .iter()
            .find_map(|(_, v)| v.code.clone())
            .unwrap_or_else(|| "policy.denied".into());
        let detail: Vec<String> = denies
            .iter()
            .map(|(node, v)| format!("{node}: {}", v.message))
            .collect();
        return Round::Deny(SessionFailure {
            code,
            message: format!(
                "refused by {} of {n} nodes ({})",
                denies.len(),
                detail.join("; ")
            ),
            blame: vec![],
        });
    }
    let defers: Vec<&NodeVerdict> = of(VerdictKind::Defer).map(|(_, v)| v).collect();
    let not_before = defers.iter().filter_map(|v| v.not_before).min();
    let mut missing = BTreeMap::new();
    for v in &defers {
        for (g, c) in &v.missing_approvals {
            let e = missing.entry(g.clone()).or_insert(0);
            *e = (*e).max(*c);
        }
    }
    Round::Wait {
        not_before,
        missing,
    }
}

impl Orchestrator {
    /// Drives a sign request to a final status. Survives restarts: `resume` calls it again.
    pub async fn sign_request(self: std::sync::Arc<Self>, request_id: String) {
        let end = match self.drive(&request_id).await {
            End::Stopped(_, f) if f.code == STOPPING => End::Suspended,
            End::Stopped(..) if self.is_stopping() => End::Suspended,
            end => end,
        };
        self.control.forget(&request_id);
        if matches!(end, End::Suspended) {
            tracing::info!(request = %request_id, "request suspended for the next start");
            return;
        }
        let now = unix_now();
        let update = |rec: &mut RequestRecord| {
            if rec.view.status.is_final() {
                return;
            }
            match &end {
                End::Signed(sigs, fin) => {
                    let eth = rec.body.chain == "ethereum";
                    let views: Vec<SignatureView> = sigs.iter().map(signature_view).collect();
                    rec.view.status = RequestStatus::Signed;
                    rec.view.signature = views.first().cloned();
                    rec.view.signatures = views;
                    rec.view.signed_tx = fin
                        .signed_tx
                        .as_ref()
                        .map(|t| format!("{}{}", if eth { "0x" } else { "" }, hex::encode(t)));
                    rec.view.bip322_signature = fin.bip322_signature.clone();
                    rec.view.error = None;
                }
                End::Stopped(status, f) => {
                    rec.view.status = *status;
                    rec.view.error = Some(failure_to_api(f));
                }
                End::AlreadyFinal | End::Suspended => {}
            }
            rec.view.not_before = None;
            rec.view.missing_approvals.clear();
        };
        match self.store.update_request(&request_id, update) {
            Ok(Some(rec)) => {
                tracing::info!(request = %request_id, status = ?rec.view.status, signers = ?rec.view.signers, "request finished");
                self.control.record(
                    "request.final",
                    json!({"request_id": request_id, "status": rec.view.status,
                           "signatures": rec.view.signatures, "error": rec.view.error, "at": now}),
                );
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot persist request"),
        }
    }

    fn set_view(
        &self,
        request_id: &str,
        f: impl FnOnce(&mut RequestRecord),
    ) -> Option<RequestRecord> {
        match self.store.update_request(request_id, f) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot persist request");
                None
            }
        }
    }

    async fn drive(&self, request_id: &str) -> End {
        let Ok(Some(rec)) = self.store.request(request_id) else {
            return End::AlreadyFinal;
        };
        let key = match self.store.key(&rec.body.key_id) {
            Ok(Some(k)) if k.info.status == KeyStatus::Ready => k,
            Ok(_) => {
                let f = plain_failure("key.not_ready", "the key is not ready");
                return End::Stopped(RequestStatus::Failed, f);
            }
            Err(e) => return End::Stopped(RequestStatus::Failed, internal(e.to_string())),
        };
        let job = match Job::new(&key, &rec) {
            Ok(j) => j,
            Err(f) => return End::Stopped(RequestStatus::Failed, f),
        };
        if rec.view.status == RequestStatus::Signing {
            // Interrupted mid-session (coordinator restart): the last signers may hold the
            // signature already, so hear from them before any new session.
            self.await_nodes(&rec.view.signers).await;
        }
        let waker = self.control.waker(request_id);
        let wait_until =
            tokio::time::Instant::now() + Duration::from_secs(self.limits.wait_for_signers_secs);
        let mut done: Vec<Option<VerifiedSignature>> = vec![None; job.digests.len()];
        let mut blamed: BTreeSet<String> = BTreeSet::new();
        let (mut sign_rounds, mut waits) = (0, 0);
        loop {
            let Ok(Some(rec)) = self.store.request(request_id) else {
                return End::AlreadyFinal;
            };
            if rec.view.status.is_final() {
                return End::AlreadyFinal;
            }
            if self.is_stopping() {
                return End::Suspended;
            }
            if let Some(f) = self.locked(&key.info.key_id) {
                return End::Stopped(RequestStatus::Failed, f);
            }
            let connected: Vec<String> = key
                .info
                .nodes
                .iter()
                .filter(|n| self.registry.is_connected(n))
                .cloned()
                .collect();
            let req = EvaluateRequest {
                request_id: request_id.to_string(),
                key_id: key.info.key_id.clone(),
                payload: job.payload.clone(),
                approvals: rec.approvals.clone(),
            };
            let verdicts = {
                let _slot = self.eval_slots.acquire().await;
                self.control
                    .evaluate(&req, &connected, Duration::from_secs(10))
                    .await
            };
            self.record_verdicts(request_id, &verdicts);
            job.harvest(&verdicts, &mut done);
            if done.iter().all(Option::is_some) {
                return job.finish(done);
            }
            let sleep_for = match tally(&key, &verdicts) {
                Round::Sign(allowed) => {
                    let result = self
                        .sign_with(&key, &job, &req, &allowed, &mut done, &mut blamed)
                        .await;
                    let f = match result {
                        Ok(()) => return job.finish(done),
                        Err(f) => f,
                    };
                    let again = retryable(&f) || f.code.starts_with("policy.");
                    if INCIDENT_CODES.contains(&f.code.as_str()) || !again {
                        return End::Stopped(RequestStatus::Failed, f);
                    }
                    // A node still winding down an aborted session (or catching up its ledger)
                    // is not a failed attempt: wait for it, within a bound.
                    let transient = TRANSIENT.contains(&f.code.as_str());
                    match transient {
                        true => waits += 1,
                        false => sign_rounds += 1,
                    }
                    if sign_rounds >= 2 * key.info.nodes.len().max(2) || waits >= 120 {
                        return End::Stopped(RequestStatus::Failed, f);
                    }
                    tracing::warn!(code = %f.code, message = %f.message, blamed = ?blamed, "signing round failed; re-evaluating");
                    match transient {
                        true => Duration::from_secs(1),
                        false => Duration::from_millis(300),
                    }
                }
                // Nodes deny a vetoed request with `veto`; whichever of this round and the
                // cancel call finishes first, the request ends `cancelled`.
                Round::Deny(f) if f.code == "veto" => {
                    return End::Stopped(RequestStatus::Cancelled, f)
                }
                Round::Deny(f) => return End::Stopped(RequestStatus::Denied, f),
                Round::Wait { .. } if connected.len() < key.info.threshold as usize => {
                    if tokio::time::Instant::now() >= wait_until {
                        let f = plain_failure(
                            "nodes.unavailable",
                            "not enough signer nodes are connected",
                        );
                        return End::Stopped(RequestStatus::Failed, f);
                    }
                    Duration::from_millis(250)
                }
                Round::Wait { .. } if verdicts.len() < connected.len() => {
                    // A connected node did not answer in time (busy): ask again soon.
                    Duration::from_secs(1)
                }
                Round::Wait {
                    not_before,
                    missing,
                } => {
                    self.set_view(request_id, |r| {
                        if !r.view.status.is_final() {
                            r.view.status = RequestStatus::Deferred;
                            r.view.not_before = not_before;
                            r.view.missing_approvals = missing.clone();
                        }
                    });
                    let secs = not_before
                        .map(|nb| nb.saturating_sub(unix_now()).clamp(1, 30))
                        .unwrap_or(
                            if verdicts
                                .values()
                                .any(|v| v.code.as_deref() == Some("ledger.behind"))
                            {
                                1
                            } else {
                                30
                            },
                        );
                    Duration::from_secs(secs)
                }
            };
            tokio::select! {
                _ = waker.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// Waits (bounded by `wait_for_signers_secs`) until every node in `nodes` is connected.
    async fn await_nodes(&self, nodes: &[String]) {
        let until =
            tokio::time::Instant::now() + Duration::from_secs(self.limits.wait_for_signers_secs);
        while !nodes.iter().all(|n| self.registry.is_connected(n))
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `Some(failure)` while the key is locked after an incident.
    fn locked(&self, key_id: &str) -> Option<SessionFailure> {
        let lock = self.store.key(key_id).ok()??.info.locked?;
        Some(plain_failure(
            "key.locked",
            &format!(
                "key `{key_id}` is locked after a security incident ({}); an operator must unlock it",
                lock.code
            ),
        ))
    }

    /// Shows the round's verdicts; a final request (e.g. vetoed meanwhile) keeps its status and
    /// error, so a late evaluation can never overwrite why it ended.
    fn record_verdicts(&self, request_id: &str, verdicts: &BTreeMap<String, NodeVerdict>) {
        let changed = self.set_view(request_id, |r| {
            r.view.verdicts = verdicts.clone();
        });
        if changed.is_some() {
            self.control.record(
                "request.verdicts",
                json!({"request_id": request_id, "verdicts": verdicts}),
            );
        }
    }

    /// Signs the parts still missing with t-subsets of the nodes that allowed, rotating subsets
    /// and skipping any subset with a blamed or disconnected node.
    async fn sign_with(
        &self,
        key: &KeyRecord,
        job: &Job,
        req: &EvaluateRequest,
        allowed: &[String],
        done: &mut [Option<VerifiedSignature>],
        blamed: &mut BTreeSet<String>,
    ) -> Result<(), SessionFailure> {
        let ordered: Vec<String> = key
            .info
            .nodes
            .iter()
            .filter(|n| allowed.contains(n))
            .cloned()
            .collect();
        let subsets = subsets(&ordered, key.info.threshold as usize);
        let offset = self
            .rotation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut last = None;
        for k in 0..subsets.len() {
            let signers = &subsets[(offset + k) % subsets.len()];
            if signers
                .iter()
                .any(|n| blamed.contains(n) || !self.registry.is_connected(n))
            {
                continue;
            }
            self.set_view(&req.request_id, |r| {
                if !r.view.status.is_final() {
                    r.view.status = RequestStatus::Signing;
                    r.view.signers = signers.clone();
                    r.view.not_before = None;
                    r.view.missing_approvals.clear();
                }
            });
            let pending: Vec<usize> = (0..done.len()).filter(|i| done[*i].is_none()).collect();
            let timeout = Duration::from_secs(self.limits.sign_timeout_secs);
            let runs = pending.iter().map(|&part| {
                let kind = SessionKind::Sign {
                    request_id: req.request_id.clone(),
                    payload: job.payload.clone(),
                    part: part as u32,
                    approvals: req.approvals.clone(),
                };
                async move {
                    self.run_session(&key.info.key_id, signers, kind, timeout)
                        .await
                }
            });
            let results = futures::future::join_all(runs).await;
            for (part, result) in pending.into_iter().zip(results) {
                let checked =
                    result.and_then(|outs| agreed_signature(&outs, &job.pk, &job.digests[part]));
                match checked {
                    Ok(sig) => done[part] = Some(sig),
                    Err(f) if INCIDENT_CODES.contains(&f.code.as_str()) => {
                        self.faults.incident(
                            &self.store,
                            &self.control,
                            &key.info.key_id,
                            &req.request_id,
                            signers,
                            &f,
                        );
                        return Err(f);
                    }
                    Err(f) if retryable(&f) => {
                        tracing::warn!(code = %f.code, blame = ?f.blame, part, "signing attempt failed; trying another subset");
                        blamed.extend(f.blame.iter().cloned());
                        last = Some(f);
                    }
                    Err(f) => return Err(f),
                }
            }
            if done.iter().all(Option::is_some) {
                return Ok(());
            }
            if let Some(f) = &last {
                if matches!(
                    f.code.as_str(),
                    "ledger.behind" | "request.already_signed" | "request.in_progress"
                ) {
                    return Err(f.clone());
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            let why = match blamed.is_empty() {
                true => String::new(),
                false => format!(
                    " (blamed: {})",
                    blamed.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            plain_failure(
                "nodes.unavailable",
                &format!("no subset of allowing nodes could sign{why}"),
            )
        }))
    }
}

/// A request decoded once by the coordinator: the digests it checks returned signatures
/// against (nodes compute their own).
struct Job {
    payload: SignPayload,
    decoded: proto::payload::Decoded,
    digests: Vec<[u8; 32]>,
    pk: [u8; 33],
}

impl Job {
    fn new(key: &KeyRecord, rec: &RequestRecord) -> Result<Self, SessionFailure> {
        let pk = key_pk(key)?;
        let payload = SignPayload::from_body(&rec.body).map_err(payload_failure)?;
        let decoded = payload.decode(&pk).map_err(payload_failure)?;
        let digests = (0..decoded.parts())
            .map(|i| decoded.preimage(i).map(|p| p.digest()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(payload_failure)?;
        Ok(Self {
            payload,
            decoded,
            digests,
            pk,
        })
    }

    /// Takes parts that nodes report as already signed (a session whose result the coordinator
    /// lost), each verified here before use.
    fn harvest(
        &self,
        verdicts: &BTreeMap<String, NodeVerdict>,
        done: &mut [Option<VerifiedSignature>],
    ) {
        for (node, v) in verdicts {
            for (part, sig) in &v.signed {
                let Some(slot) = done.get_mut(*part as usize) else {
                    continue;
                };
                if slot.is_some() {
                    continue;
                }
                match proto::sig::verify(&self.pk, &self.digests[*part as usize], &sig.r, &sig.s) {
                    Ok(ok) => {
                        tracing::info!(node, part, "using a signature the node made earlier");
                        *slot = Some(ok);
                    }
                    Err(e) => {
                        tracing::warn!(node, part, error = %e, "node reported a stored signature that does not verify")
                    }
                }
            }
        }
    }

    fn finish(&self, done: Vec<Option<VerifiedSignature>>) -> End {
        let sigs: Vec<VerifiedSignature> = done.into_iter().flatten().collect();
        let triples: Vec<_> = sigs.iter().map(|s| (s.r, s.s, s.recovery_id)).collect();
        match self.decoded.finalize(&triples) {
            Ok(fin) => End::Signed(sigs, fin),
            Err(e) => End::Stopped(RequestStatus::Failed, payload_failure(e)),
        }
    }
}

/// The API error for a veto.
pub fn vetoed(guardian: &str) -> ApiError {
    api_error("veto", format!("vetoed by guardian {guardian}"))
}
