//! Runs ceremonies and signing sessions. The coordinator decides *who* takes part and relays;
//! each node decides for itself whether to take part, and every signature is re-verified here
//! with libsecp256k1 before it is stored or returned.

use std::{
    collections::HashMap,
    sync::{atomic::AtomicUsize, Arc},
    time::Duration,
};

use proto::{
    api::{ApiError, KeyStatus, SignatureView},
    payload::PayloadError,
    sig::VerifiedSignature,
    wire::{CoordFrame, SessionFailure, SessionKind, SessionOutput, SessionStart},
};
use rand::RngCore;

use crate::{
    config::Limits,
    registry::Registry,
    store::{api_error, KeyRecord, Store},
};

/// Shared coordinator state.
pub struct Orchestrator {
    /// Store.
    pub store: Arc<Store>,
    /// Nodes and routes.
    pub registry: Arc<Registry>,
    /// Limits.
    pub limits: Limits,
    /// Verdicts, orders, policy and ledger relay.
    pub control: Arc<crate::control::Control>,
    pub(crate) rotation: AtomicUsize,
    /// Blame counters and incidents.
    pub faults: crate::faults::FaultBook,
    /// Signing sessions running at once (FIFO: a request waiting here is served in turn).
    sign_slots: Arc<tokio::sync::Semaphore>,
    /// Signing sessions per node at once (`limits.max_sessions_per_node`).
    node_slots: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Verdict rounds running at once (nodes drop control frames beyond their own bound).
    pub(crate) eval_slots: tokio::sync::Semaphore,
    /// Set on SIGTERM: no session starts, and requests stay as they are for the next start.
    stopping: std::sync::atomic::AtomicBool,
    /// Presigned signing sessions at once (no MPC rounds: they take no compute slot).
    quick_slots: Arc<tokio::sync::Semaphore>,
    /// Presignature pool settings.
    pub presign: crate::config::PresignConfig,
    /// Presignature pool counters.
    pub pool: crate::pool::Pool,
    /// Notified whenever a request reaches a final status (long polls wait on it).
    pub finished: tokio::sync::Notify,
}

/// Failure code of a session refused because the coordinator is stopping.
pub(crate) const STOPPING: &str = "coordinator.stopping";

/// Codes after which another signer subset is tried.
pub(crate) const RETRYABLE: &[&str] = &[
    "node.disconnected",
    "session.timeout",
    "session.aborted",
    "nodes.unavailable",
    "ledger.behind",
    "node.syncing",
    "node.stopping",
    "node.busy",
    "request.in_progress",
    "request.already_signed",
    "presig.unknown",
    "presig.used",
    "presig.mismatch",
    "session.epoch",
];

/// Whether another signer subset may be tried after this failure: transport and liveness
/// faults, and protocol aborts whose culprits cggmp24 named (they are excluded next time).
pub(crate) fn retryable(f: &SessionFailure) -> bool {
    RETRYABLE.contains(&f.code.as_str()) || (f.code == "session.protocol" && !f.blame.is_empty())
}

/// The API view of a failure. Codes whose message carries internal detail (the MPC library's
/// error text, store errors) get a generic message; the detail stays in the coordinator log.
pub(crate) fn failure_to_api(f: &SessionFailure) -> ApiError {
    let internal = f.code == "session.protocol"
        || f.code == "session.internal"
        || f.code.starts_with("store.")
        || f.code.starts_with("internal");
    if !internal {
        return api_error(&f.code, f.message.clone());
    }
    tracing::warn!(code = %f.code, detail = %f.message, blame = ?f.blame, "internal failure (detail withheld from API)");
    let blame = match f.blame.is_empty() {
        true => String::new(),
        false => format!("; blamed: {}", f.blame.join(", ")),
    };
    api_error(&f.code, format!("the signing nodes reported an internal error{blame}; details are in the coordinator log"))
}

impl Orchestrator {
    /// Creates the orchestrator.
    pub fn new(
        store: Arc<Store>,
        registry: Arc<Registry>,
        limits: Limits,
        control: Arc<crate::control::Control>,
    ) -> Self {
        Self {
            store,
            registry,
            limits,
            control,
            rotation: AtomicUsize::new(0),
            faults: Default::default(),
            sign_slots: Arc::new(tokio::sync::Semaphore::new(
                limits.max_concurrent_sessions.max(1),
            )),
            node_slots: Default::default(),
            eval_slots: tokio::sync::Semaphore::new(16),
            stopping: Default::default(),
            quick_slots: Arc::new(tokio::sync::Semaphore::new(64)),
            presign: Default::default(),
            pool: Default::default(),
            finished: Default::default(),
        }
    }

    /// Sets the presignature pool's settings.
    pub fn with_presign(mut self, cfg: crate::config::PresignConfig) -> Self {
        self.presign = cfg;
        self
    }

    /// Fully interactive signing sessions running now.
    pub fn online_sessions(&self) -> usize {
        self.limits
            .max_concurrent_sessions
            .max(1)
            .saturating_sub(self.sign_slots.available_permits())
    }

    /// Waits for a cluster-wide session slot, then for a slot on every party, taken in node-id
    /// order. A node then never runs more signing sessions than it computes at once: with more,
    /// two nodes could each hold their compute slots for sessions the other has not scheduled,
    /// and both would wait until a round deadline.
    async fn session_slots(&self, parties: &[String]) -> Vec<tokio::sync::OwnedSemaphorePermit> {
        let mut permits = Vec::new();
        if let Ok(p) = self.sign_slots.clone().acquire_owned().await {
            permits.push(p);
        }
        let mut sorted = parties.to_vec();
        sorted.sort();
        for node in sorted {
            let sem = {
                let mut per = self.node_slots.lock().unwrap_or_else(|p| p.into_inner());
                per.entry(node)
                    .or_insert_with(|| {
                        Arc::new(tokio::sync::Semaphore::new(
                            self.limits.max_sessions_per_node.max(1),
                        ))
                    })
                    .clone()
            };
            if let Ok(p) = sem.acquire_owned().await {
                permits.push(p);
            }
        }
        permits
    }

    /// Stops starting sessions (graceful shutdown).
    pub fn begin_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the coordinator is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs one session among `parties` and collects every party's output.
    pub async fn run_session(
        &self,
        key_id: &str,
        parties: &[String],
        kind: SessionKind,
        timeout: Duration,
    ) -> Result<Vec<(String, SessionOutput)>, SessionFailure> {
        self.run_session_with_id(key_id, parties, kind, timeout)
            .await
            .map(|(_, outs)| outs)
    }

    /// [`Self::run_session`], also returning the session id (a presignature's id).
    pub async fn run_session_with_id(
        &self,
        key_id: &str,
        parties: &[String],
        kind: SessionKind,
        timeout: Duration,
    ) -> Result<([u8; 32], Vec<(String, SessionOutput)>), SessionFailure> {
        self.run_session_reporting(key_id, parties, kind, timeout, None)
            .await
    }

    /// [`Self::run_session_with_id`]; with `every` set, a failure does not end the collection:
    /// every party's refusal is gathered there (a ceremony shows what each node said), and the
    /// first one is returned.
    pub async fn run_session_reporting(
        &self,
        key_id: &str,
        parties: &[String],
        kind: SessionKind,
        timeout: Duration,
        every: Option<&mut Vec<(String, SessionFailure)>>,
    ) -> Result<([u8; 32], Vec<(String, SessionOutput)>), SessionFailure> {
        let _slots = match kind {
            SessionKind::Sign {
                presignature: Some(_),
                ..
            } => self
                .quick_slots
                .clone()
                .acquire_owned()
                .await
                .ok()
                .into_iter()
                .collect(),
            SessionKind::Sign { .. } => self.session_slots(parties).await,
            _ => vec![],
        };
        let online = matches!(kind, SessionKind::Sign { .. });
        if online {
            self.pool.touch_online();
        }
        if self.is_stopping() {
            return Err(plain_failure(
                STOPPING,
                "the coordinator is stopping; the request resumes at its next start",
            ));
        }
        let mut sid = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut sid);
        let mut record = session_record(&sid, key_id, parties, &kind);
        if let Err(e) = self.store.put_session(&record) {
            return Err(internal(format!("cannot record the session: {e}")));
        }
        let mut reports = self.registry.open_route(sid, parties.to_vec());
        // Sessions run in the share epoch the coordinator holds for the key.
        let epoch = match self.store.key(key_id) {
            Ok(rec) => rec.map_or(0, |k| k.info.epoch),
            Err(e) => return Err(internal(format!("cannot read the key: {e}"))),
        };
        let start = SessionStart {
            session_id: sid,
            key_id: key_id.to_string(),
            parties: parties.to_vec(),
            kind,
            epoch,
        };
        let result = self.collect(&start, &mut reports, timeout, every).await;
        self.registry.close_route(&sid);
        if online {
            self.pool.touch_online();
        }
        record.ended_at = Some(crate::control::unix_now());
        let mut result = result;
        if let Err(f) = &mut result {
            // A node names whom it blames: keep only parties (bounded, and never an invented
            // name in the audit log or a metric label).
            f.blame.retain(|b| parties.contains(b));
        }
        match &result {
            Ok(_) => record.outcome = Some("ok".into()),
            Err(f) => {
                record.outcome = Some(f.code.clone());
                record.blame = f.blame.clone();
                self.faults
                    .blame(&self.control, &record.session_id, key_id, f);
            }
        }
        if let Err(e) = self.store.put_session(&record) {
            tracing::error!(error = %e, "cannot record the session's end");
        }
        if let Err(f) = &result {
            for p in parties {
                self.registry.send(
                    p,
                    CoordFrame::Abort {
                        session_id: sid,
                        reason: f.code.clone(),
                    },
                );
            }
        }
        result.map(|outs| (sid, outs))
    }

    async fn collect(
        &self,
        start: &SessionStart,
        reports: &mut tokio::sync::mpsc::Receiver<crate::registry::Report>,
        timeout: Duration,
        mut every: Option<&mut Vec<(String, SessionFailure)>>,
    ) -> Result<Vec<(String, SessionOutput)>, SessionFailure> {
        if let Err(p) = self.registry.start_session(start) {
            return Err(SessionFailure {
                code: "node.disconnected".into(),
                message: format!("node `{p}` is not connected"),
                blame: vec![p],
            });
        }
        let mut outputs: HashMap<String, SessionOutput> = HashMap::new();
        let mut failed: Vec<String> = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while outputs.len() + failed.len() < start.parties.len() {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some((node, Ok(out)))) => {
                    outputs.insert(node, out);
                }
                Ok(Some((node, Err(mut f)))) => {
                    f.message = format!("node `{node}`: {}", f.message);
                    match every.as_deref_mut() {
                        Some(all) if !failed.contains(&node) => {
                            failed.push(node.clone());
                            all.push((node, f));
                        }
                        Some(_) => {}
                        None => return Err(f),
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    if let Some(f) = every.as_deref().and_then(|a| precise(a)) {
                        return Err(f);
                    }
                    let missing: Vec<String> = start
                        .parties
                        .iter()
                        .filter(|p| !outputs.contains_key(*p))
                        .cloned()
                        .collect();
                    return Err(SessionFailure {
                        code: "session.timeout".into(),
                        message: format!(
                            "no result from {} within {timeout:?}",
                            missing.join(", ")
                        ),
                        blame: missing,
                    });
                }
            }
        }
        if let Some(f) = every.as_deref().and_then(|a| precise(a)) {
            return Err(f);
        }
        Ok(start
            .parties
            .iter()
            .filter_map(|p| outputs.remove(p).map(|o| (p.clone(), o)))
            .collect())
    }

    /// DKG, then aux info if any node lacks it for this group. Updates the key record.
    pub async fn create_key(self: Arc<Self>, mut rec: KeyRecord) {
        let outcome = self
            .ceremony(&rec.info.key_id, &rec.info.nodes, rec.info.threshold)
            .await;
        match outcome {
            Ok((pk, chain_code)) => {
                rec.info.ethereum_address = proto::eth::address_from_pubkey(&pk).ok();
                rec.info.bitcoin = Some(bitcoin_addresses(&pk));
                rec.info.public_key = Some(hex::encode(pk));
                rec.info.status = KeyStatus::Ready;
                rec.epoch_since = Some(crate::control::unix_now());
                rec.chain_code = Some(hex::encode(chain_code));
                tracing::info!(key = %rec.info.key_id, "key ready");
            }
            Err(f) => {
                tracing::warn!(key = %rec.info.key_id, code = %f.code, message = %f.message, "key ceremony failed");
                rec.info.status = KeyStatus::Failed;
                rec.info.error = Some(failure_to_api(&f));
            }
        }
        if let Err(e) = self.store.put_key(&rec) {
            tracing::error!(error = %e, "cannot persist key record");
        }
    }

    async fn ceremony(
        &self,
        key_id: &str,
        nodes: &[String],
        t: u16,
    ) -> Result<([u8; 33], Vec<u8>), SessionFailure> {
        let keygen_timeout = Duration::from_secs(self.limits.keygen_timeout_secs);
        let outs = self
            .run_session(
                key_id,
                nodes,
                SessionKind::Keygen { threshold: t },
                keygen_timeout,
            )
            .await?;
        let mut pk: Option<(Vec<u8>, Vec<u8>)> = None;
        let mut all_complete = true;
        for (node, out) in &outs {
            let SessionOutput::Keygen {
                public_key,
                chain_code,
                complete,
            } = out
            else {
                return Err(bad_output(node));
            };
            all_complete &= *complete;
            match &pk {
                None => pk = Some((public_key.clone(), chain_code.clone())),
                Some((p, c)) if p == public_key && c == chain_code => {}
                Some(_) => {
                    return Err(SessionFailure {
                        code: "ceremony.public_key_mismatch".into(),
                        message: format!("node `{node}` reports a different public key"),
                        blame: vec![node.clone()],
                    })
                }
            }
        }
        let (pk, chain_code) = pk.ok_or_else(|| bad_output("none"))?;
        if !all_complete {
            let aux_timeout = Duration::from_secs(self.limits.aux_timeout_secs);
            self.run_session(key_id, nodes, SessionKind::AuxInfo, aux_timeout)
                .await?;
        }
        let pk: [u8; 33] = pk.try_into().map_err(|_| bad_output("any"))?;
        Ok((pk, chain_code))
    }

    /// After a restart: resume unfinished requests; ceremonies cannot resume and are failed.
    pub fn resume(self: &Arc<Self>) {
        self.resume_ceremonies();
        if let Ok(keys) = self.store.keys() {
            for mut k in keys
                .into_iter()
                .filter(|k| k.info.status == KeyStatus::Generating)
            {
                k.info.status = KeyStatus::Failed;
                k.info.error = Some(api_error("ceremony.interrupted", "the coordinator restarted during the ceremony; create the key again under a new id"));
                let _ = self.store.put_key(&k);
            }
        }
        if let Ok(sessions) = self.store.sessions() {
            for mut rec in sessions.into_iter().filter(|r| r.ended_at.is_none()) {
                tracing::warn!(session = %rec.session_id, request = ?rec.request_id, "session interrupted by a coordinator restart; its request restarts with a fresh session id");
                rec.ended_at = Some(crate::control::unix_now());
                rec.outcome = Some("coordinator.restarted".into());
                let _ = self.store.put_session(&rec);
            }
        }
        if let Ok(reqs) = self.store.requests() {
            for r in reqs.into_iter().filter(|r| !r.view.status.is_final()) {
                tracing::info!(request = %r.view.request_id, "resuming request after restart");
                tokio::spawn(self.clone().sign_request(r.view.request_id));
            }
        }
    }
}

fn session_record(
    sid: &[u8; 32],
    key_id: &str,
    parties: &[String],
    kind: &SessionKind,
) -> crate::store::SessionRecord {
    let (name, request_id, part) = match kind {
        SessionKind::Sign {
            request_id, part, ..
        } => ("sign", Some(request_id.clone()), Some(*part)),
        SessionKind::Keygen { .. } => ("keygen", None, None),
        SessionKind::AuxInfo | SessionKind::ReshareAux { .. } => ("aux", None, None),
        SessionKind::Presign => ("presign", None, None),
        SessionKind::Reshare { .. } => ("reshare", None, None),
    };
    crate::store::SessionRecord {
        session_id: hex::encode(sid),
        key_id: key_id.to_string(),
        kind: name.into(),
        request_id,
        part,
        parties: parties.to_vec(),
        started_at: crate::control::unix_now(),
        ended_at: None,
        outcome: None,
        blame: vec![],
    }
}

/// Checks that every party reports the same signature and that it verifies under the key.
pub(crate) fn agreed_signature(
    outs: &[(String, SessionOutput)],
    pk: &[u8; 33],
    digest: &[u8; 32],
) -> Result<VerifiedSignature, SessionFailure> {
    let mut sig: Option<VerifiedSignature> = None;
    for (node, out) in outs {
        let SessionOutput::Signature(s) = out else {
            return Err(bad_output(node));
        };
        let verified = proto::sig::verify(pk, digest, &s.r, &s.s).map_err(|e| SessionFailure {
            code: "signature.invalid".into(),
            message: format!("signature from node `{node}` rejected: {e}"),
            blame: vec![node.clone()],
        })?;
        if sig.is_some_and(|prev| prev != verified) {
            return Err(SessionFailure {
                code: "signature.mismatch".into(),
                message: format!("node `{node}` reports a different signature"),
                blame: vec![node.clone()],
            });
        }
        sig = Some(verified);
    }
    sig.ok_or_else(|| bad_output("none"))
}

/// The key's P2WPKH address on every Bitcoin network.
pub fn bitcoin_addresses(pk: &[u8; 33]) -> std::collections::BTreeMap<String, String> {
    proto::btc::Network::ALL
        .into_iter()
        .filter_map(|n| Some((n.to_string(), proto::btc::p2wpkh_address(pk, n).ok()?)))
        .collect()
}

pub(crate) fn signature_view(s: &VerifiedSignature) -> SignatureView {
    SignatureView {
        r: format!("0x{}", hex::encode(s.r)),
        s: format!("0x{}", hex::encode(s.s)),
        v: s.recovery_id,
        y_parity: s.recovery_id,
    }
}

pub(crate) fn payload_failure(e: PayloadError) -> SessionFailure {
    plain_failure(e.code(), &e.to_string())
}

/// Every t-subset of `nodes`, in lexicographic order of positions.
pub fn subsets(nodes: &[String], t: usize) -> Vec<Vec<String>> {
    let n = nodes.len();
    let mut out = Vec::new();
    if t == 0 || t > n {
        return out;
    }
    let mut idx: Vec<usize> = (0..t).collect();
    loop {
        out.push(idx.iter().map(|&i| nodes[i].clone()).collect());
        let Some(pos) = (0..t).rev().find(|&i| idx[i] != i + n - t) else {
            return out;
        };
        idx[pos] += 1;
        for j in pos + 1..t {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

pub(crate) fn key_pk(key: &KeyRecord) -> Result<[u8; 33], SessionFailure> {
    key.info
        .public_key
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| internal("stored public key is malformed".into()))
}

pub(crate) fn plain_failure(code: &str, msg: &str) -> SessionFailure {
    SessionFailure {
        code: code.into(),
        message: msg.into(),
        blame: vec![],
    }
}

pub(crate) fn internal(msg: String) -> SessionFailure {
    tracing::error!(%msg, "internal error");
    plain_failure("internal", "internal error")
}

fn bad_output(node: &str) -> SessionFailure {
    SessionFailure {
        code: "session.bad_output".into(),
        message: format!("node `{node}` returned an unexpected output"),
        blame: vec![node.to_string()],
    }
}

/// Of the failures every party reported, the first that names someone (a party that can tell
/// who cheated outranks one that cannot), else the first.
fn precise(all: &[(String, SessionFailure)]) -> Option<SessionFailure> {
    all.iter()
        .find(|(_, f)| !f.blame.is_empty())
        .or(all.first())
        .map(|(_, f)| f.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_enumerate_all_combinations() {
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let s = subsets(&nodes, 2);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], vec!["a", "b"]);
        assert_eq!(s[2], vec!["b", "c"]);
        assert_eq!(subsets(&nodes, 3).len(), 1);
        let five: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        assert_eq!(subsets(&five, 3).len(), 10);
    }
}
