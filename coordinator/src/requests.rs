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
        agreed_signature, failure_to_api, internal, payload_failure, plain_failure, retryable,
        signature_view, subsets, Orchestrator, STOPPING,
    },
    store::{api_error, KeyRecord, PoolEntry, RequestRecord},
};

/// How a request ended.
enum End {
    /// Signatures, the finalized payload, and how many parts were signed from presignatures.
    Signed(Vec<VerifiedSignature>, Finalized, u32),
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
    "node.syncing",
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
    /// Fewer than t nodes allow and no policy defers: some nodes are still catching up with
    /// the coordinator (`node.syncing`, `ledger.behind`). The request keeps its status
    /// (`pending`, waiting for signers) and is asked again shortly.
    CatchingUp,
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
    // A node that is catching up has not judged the request yet: its defer is no policy's.
    let (catching_up, defers): (Vec<&NodeVerdict>, Vec<&NodeVerdict>) = of(VerdictKind::Defer)
        .map(|(_, v)| v)
        .partition(|v| matches!(v.code.as_deref(), Some("ledger.behind" | "node.syncing")));
    if defers.is_empty() && !catching_up.is_empty() {
        return Round::CatchingUp;
    }
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
                End::Signed(sigs, fin, presigned) => {
                    rec.view.presigned = *presigned;
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
        let stored = self.store.update_request(&request_id, update);
        self.finished.notify_waiters();
        match stored {
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
        let job = match Job::new(&self.store, &key, &rec) {
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
                account: job.account.clone(),
            };
            let t0 = std::time::Instant::now();
            let verdicts = {
                let _slot = self.eval_slots.acquire().await;
                self.control
                    .evaluate(&req, &connected, Duration::from_secs(10))
                    .await
            };
            tracing::debug!(request = %request_id, took = ?t0.elapsed(), "verdicts");
            job.harvest(&verdicts, &mut done);
            let round = tally(&key, &verdicts);
            // A signing round stores the verdicts with the `signing` status, in one write.
            match (&round, done.iter().all(Option::is_some)) {
                (Round::Sign(_), false) => self.audit_verdicts(request_id, &verdicts),
                _ => self.record_verdicts(request_id, &verdicts),
            }
            if done.iter().all(Option::is_some) {
                return job.finish(done);
            }
            let sleep_for = match round {
                Round::Sign(allowed) => {
                    let result = self
                        .sign_with(
                            &key,
                            &job,
                            (&req, &verdicts),
                            &allowed,
                            &mut done,
                            &mut blamed,
                        )
                        .await;
                    let f = match result {
                        Ok(()) => return job.finish(done),
                        Err(f) => f,
                    };
                    let again = retryable(&f)
                        || f.code.starts_with("policy.")
                        || f.code.starts_with("node.scope.");
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
                        // A peer's ledger entry is usually a few milliseconds behind its join
                        // (signings that finished concurrently): try again soon, then slower.
                        true if matches!(f.code.as_str(), "ledger.behind" | "node.syncing")
                            && waits <= 10 =>
                        {
                            Duration::from_millis(50)
                        }
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
                // Within the wait for signers the request stays `pending`; after it, it shows
                // `deferred` with the nodes' `node.syncing` verdicts, so nobody waits blind.
                Round::CatchingUp if tokio::time::Instant::now() < wait_until => {
                    Duration::from_millis(250)
                }
                Round::CatchingUp => {
                    self.set_view(request_id, |r| {
                        if !r.view.status.is_final() {
                            r.view.status = RequestStatus::Deferred;
                        }
                    });
                    Duration::from_secs(1)
                }
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
                            if verdicts.values().any(|v| {
                                matches!(v.code.as_deref(), Some("ledger.behind" | "node.syncing"))
                            }) {
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
            self.audit_verdicts(request_id, verdicts);
        }
    }

    fn audit_verdicts(&self, request_id: &str, verdicts: &BTreeMap<String, NodeVerdict>) {
        self.control.record(
            "request.verdicts",
            json!({"request_id": request_id, "verdicts": verdicts}),
        );
    }

    /// Signs the parts still missing with t-subsets of the nodes that allowed, rotating subsets
    /// and skipping any subset with a blamed or disconnected node.
    async fn sign_with(
        &self,
        key: &KeyRecord,
        job: &Job,
        (req, verdicts): (&EvaluateRequest, &BTreeMap<String, NodeVerdict>),
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
        let subsets = self.ordered_subsets(key, &ordered);
        let mut last = None;
        for signers in &subsets {
            if signers
                .iter()
                .any(|n| blamed.contains(n) || !self.registry.is_connected(n))
            {
                continue;
            }
            self.set_view(&req.request_id, |r| {
                if !r.view.status.is_final() {
                    r.view.verdicts = verdicts.clone();
                    r.view.status = RequestStatus::Signing;
                    r.view.signers = signers.clone();
                    r.view.not_before = None;
                    r.view.missing_approvals.clear();
                }
            });
            let usable: BTreeSet<String> = ordered
                .iter()
                .filter(|n| !blamed.contains(*n) && self.registry.is_connected(n))
                .cloned()
                .collect();
            let plan = match job.account {
                // cggmp24 forbids HD derivation with presignatures: an account's parts always
                // sign fully (nodes refuse `presig.hd_forbidden` otherwise).
                Some(_) => (0..done.len())
                    .filter(|i| done[*i].is_none())
                    .map(|i| (i, None))
                    .collect(),
                None => self.presigs_for(&req.request_id, &key.info.key_id, signers, done, &usable),
            };
            let timeout = Duration::from_secs(self.limits.sign_timeout_secs);
            let runs = plan.iter().map(|(part, presig)| {
                let kind = SessionKind::Sign {
                    request_id: req.request_id.clone(),
                    payload: job.payload.clone(),
                    part: *part as u32,
                    approvals: req.approvals.clone(),
                    presignature: presig.as_ref().and_then(PoolEntry::id_bytes),
                    account: job.account.clone(),
                };
                async move {
                    self.run_session(&key.info.key_id, signers, kind, timeout)
                        .await
                }
            });
            let t0 = std::time::Instant::now();
            let results = futures::future::join_all(runs).await;
            tracing::debug!(request = %req.request_id, took = ?t0.elapsed(), "sessions");
            for ((part, presig), result) in plan.into_iter().zip(results) {
                let digest = &job.digests[part];
                let pk = &job.pks[part];
                let checked = result.and_then(|outs| match &presig {
                    Some(e) => crate::pool::combined_signature(&outs, e, pk, digest),
                    None => agreed_signature(&outs, pk, digest),
                });
                if checked
                    .as_ref()
                    .is_err_and(|f| f.code.starts_with("presig."))
                {
                    // The node has no such presignature (or used it): sign this part anew.
                    self.drop_presig(&req.request_id, part);
                }
                match checked {
                    Ok(sig) => {
                        if presig.is_some() {
                            self.pool.note_used();
                            job.presigned
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        done[part] = Some(sig)
                    }
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
                    "ledger.behind"
                        | "node.syncing"
                        | "request.already_signed"
                        | "request.in_progress"
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

impl Orchestrator {
    /// Subsets of the allowing nodes: first those holding presignatures for this key (most
    /// first), the rest rotating so that every subset signs in turn.
    fn ordered_subsets(&self, key: &KeyRecord, allowed: &[String]) -> Vec<Vec<String>> {
        let all = subsets(allowed, key.info.threshold as usize);
        let offset = self
            .rotation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pool = self
            .store
            .presig_counts(&key.info.key_id)
            .unwrap_or_default();
        let mut out: Vec<(usize, usize, Vec<String>)> = all
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let held = pool.get(s).map_or(0, |c| c.0 as usize);
                let turn = (i + all.len() - offset % all.len().max(1)) % all.len().max(1);
                (held, turn, s.clone())
            })
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        out.into_iter().map(|(_, _, s)| s).collect()
    }

    /// The parts to sign now with `signers`, each with its presignature if it has one: the one
    /// assigned earlier (a resumed request), else one taken from the pool, else none (full
    /// signing). A part assigned to a presignature of other parties waits for that subset.
    fn presigs_for(
        &self,
        request_id: &str,
        key_id: &str,
        signers: &[String],
        done: &[Option<VerifiedSignature>],
        usable: &BTreeSet<String>,
    ) -> Vec<(usize, Option<PoolEntry>)> {
        let assigned = self
            .store
            .request(request_id)
            .ok()
            .flatten()
            .map(|r| r.presigs)
            .unwrap_or_default();
        let mut out = Vec::new();
        for part in (0..done.len()).filter(|i| done[*i].is_none()) {
            let mut assigned = assigned.get(&(part as u32));
            if assigned.is_some_and(|e| e.parties.iter().any(|p| !usable.contains(p))) {
                // A party of its presignature failed, does not allow now or is gone: sign
                // fully with other nodes instead (a node that already issued its partial
                // refuses, so the part still signs at most once).
                self.drop_presig(request_id, part);
                assigned = None;
            }
            match assigned {
                Some(e) if e.parties == signers => out.push((part, Some(e.clone()))),
                Some(_) => {}
                None => {
                    let taken = self
                        .store
                        .take_presig(request_id, part as u32, key_id, signers)
                        .unwrap_or_else(|e| {
                            tracing::error!(error = %e, "cannot take a presignature from the pool");
                            None
                        });
                    out.push((part, taken));
                }
            }
        }
        out
    }

    /// Forgets a part's presignature (the nodes did not have it): it signs fully next time.
    fn drop_presig(&self, request_id: &str, part: usize) {
        self.set_view(request_id, |r| {
            r.presigs.remove(&(part as u32));
        });
    }
}

/// A request decoded once by the coordinator: the digests it checks returned signatures
/// against (nodes compute their own).
struct Job {
    payload: SignPayload,
    decoded: proto::payload::Decoded,
    digests: Vec<[u8; 32]>,
    /// The key that signs each part (the master key, or the account's `m/a/i`).
    pks: Vec<[u8; 33]>,
    /// The account the request spends from.
    account: Option<String>,
    /// Parts signed from presignatures so far.
    presigned: std::sync::atomic::AtomicU32,
}

impl Job {
    fn new(
        store: &crate::store::Store,
        key: &KeyRecord,
        rec: &RequestRecord,
    ) -> Result<Self, SessionFailure> {
        let account = rec.body.account.clone();
        let spend = crate::accounts::spend_keys(store, key, account.as_deref())?;
        let payload = SignPayload::from_body(&rec.body).map_err(payload_failure)?;
        let decoded = payload.decode_for(&spend).map_err(payload_failure)?;
        let digests = (0..decoded.parts())
            .map(|i| decoded.preimage(i).map(|p| p.digest()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(payload_failure)?;
        let pks = (0..decoded.parts())
            .map(|i| decoded.signer(i).map(|(pk, _)| pk))
            .collect::<Result<Vec<_>, _>>()
            .map_err(payload_failure)?;
        Ok(Self {
            payload,
            decoded,
            digests,
            pks,
            account,
            presigned: Default::default(),
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
                let i = *part as usize;
                match proto::sig::verify(&self.pks[i], &self.digests[i], &sig.r, &sig.s) {
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
            Ok(fin) => End::Signed(
                sigs,
                fin,
                self.presigned.load(std::sync::atomic::Ordering::Relaxed),
            ),
            Err(e) => End::Stopped(RequestStatus::Failed, payload_failure(e)),
        }
    }
}

/// The API error for a veto.
pub fn vetoed(guardian: &str) -> ApiError {
    api_error("veto", format!("vetoed by guardian {guardian}"))
}
