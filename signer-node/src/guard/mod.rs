//! The node's own decision on every request: scope, veto, freeze and the signed policy, against
//! this node's own history and clock. The coordinator can ask; only this decides.
//!
//! A request is judged twice: when the coordinator asks for a verdict (before any session), and
//! again when a signing session starts, where an allow also reserves the withdrawal against the
//! velocity limits, atomically with the decision.
//!
//! Orders (veto, freeze, unfreeze) are applied in the `orders` submodule; ledger entries, this
//! node's own and its peers', are handled in `entries`.

use std::{collections::BTreeMap, sync::Mutex};

use policy::{Decision, EvalContext, Outcome, Verdict};
use proto::{
    authz::{self, Approval, FreezeState, NodeStatus, NodeVerdict, RuleView, VerdictKind},
    intent::WithdrawalIntent,
    wire::SessionFailure,
};
use runtime::audit::SharedAudit;
use serde_json::json;

mod entries;
mod orders;

use crate::{
    config::Scope,
    identity::{NodeIdentity, Roster},
    ledger::{self, Reservation},
    plan::DecodedRequest,
    policy_book::{Offer, PolicyBook},
    session::fail,
    store::{json_bytes, RequestBinding, Store, StoreError},
};

/// Keys pinned for orders.
#[derive(Debug, Clone, Default)]
pub struct Authorities {
    /// Officers (unfreeze quorum).
    pub officers: Vec<[u8; 32]>,
    /// Officer signatures an unfreeze needs.
    pub threshold: usize,
    /// Guardians (veto, freeze).
    pub guardians: Vec<[u8; 32]>,
}

/// The decision point.
pub struct Guard {
    store: std::sync::Arc<Store>,
    identity: std::sync::Arc<NodeIdentity>,
    roster: Roster,
    scope: Scope,
    auth: Authorities,
    clock_offset: i64,
    /// Seconds after which a ledger gap nobody filled stops deferring (and is reported).
    gap_timeout: u64,
    book: Mutex<PolicyBook>,
    /// Serialises decide-and-reserve, so two concurrent requests cannot both fit one allowance.
    decide: Mutex<()>,
    /// Serialises ledger writes: `record_own` reads the head and writes head + 1, so two
    /// sessions finishing at once would otherwise both take the same sequence number.
    ledger_writes: Mutex<()>,
    audit: SharedAudit,
    /// Parts of requests being signed right now (one session per part at a time).
    in_flight: std::sync::Arc<Mutex<std::collections::HashSet<String>>>,
}

/// This node's claim on signing one part of a request; released on drop.
pub struct PartClaim {
    set: std::sync::Arc<Mutex<std::collections::HashSet<String>>>,
    key: String,
}

impl Drop for PartClaim {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Guard {
    /// Creates the guard.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: std::sync::Arc<Store>,
        identity: std::sync::Arc<NodeIdentity>,
        roster: Roster,
        scope: Scope,
        auth: Authorities,
        clock_offset: i64,
        book: PolicyBook,
        audit: SharedAudit,
    ) -> Self {
        Self {
            store,
            identity,
            roster,
            scope,
            auth,
            clock_offset,
            gap_timeout: crate::config::Limits::default().ledger_gap_timeout_secs,
            book: Mutex::new(book),
            decide: Mutex::new(()),
            ledger_writes: Mutex::new(()),
            audit,
            in_flight: Default::default(),
        }
    }

    /// Sets how long a ledger gap that nobody fills defers velocity-limited requests.
    pub fn with_gap_timeout(mut self, secs: u64) -> Self {
        self.gap_timeout = secs;
        self
    }

    /// Records that `node` misbehaved (`code`, `message`): audited, and shown in the status.
    pub fn report(&self, node: &str, code: &str, message: &str) {
        tracing::warn!(node, code, message, "peer misbehaviour reported");
        let _ = self.audit(
            "peer.reported",
            json!({"node": node, "code": code, "message": message}),
        );
        let value = json_bytes(&format!("{code}: {message}")).ok();
        if let Err(e) = self
            .store
            .state_write(&[(format!("suspect/{node}"), value)])
        {
            tracing::error!(error = %e, "cannot record a reported peer");
        }
    }

    /// Claims one part of a request for a signing session. Refused when this node already
    /// signed that part (it is in the verdict's `signed`, so the coordinator needs no second
    /// signature) or is signing it in another session right now.
    pub fn claim_part(&self, request_id: &str, part: u32) -> Result<PartClaim, SessionFailure> {
        let key = signed_key(request_id, part);
        if self
            .store
            .state_get::<proto::sig::VerifiedSignature>(&key)
            .map_err(|e| fail("store.error", e.to_string()))?
            .is_some()
        {
            return Err(fail(
                "request.already_signed",
                format!("this node already signed part {part} of `{request_id}`; it signs each part once"),
            ));
        }
        if !lock(&self.in_flight).insert(key.clone()) {
            return Err(fail(
                "request.in_progress",
                format!("part {part} of `{request_id}` is being signed in another session"),
            ));
        }
        Ok(PartClaim {
            set: self.in_flight.clone(),
            key,
        })
    }

    /// The pinned officers and their quorum (policy bundles, unfreezes, membership orders).
    pub fn officers(&self) -> (Vec<[u8; 32]>, usize) {
        (self.auth.officers.clone(), self.auth.threshold)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.identity.node_id
    }

    /// This node's identity (it signs reshare messages and confirmations).
    pub fn identity(&self) -> std::sync::Arc<NodeIdentity> {
        self.identity.clone()
    }

    /// The `refresh_every` (seconds) that the policy in force sets for `key_id`, if any: what
    /// makes a scheduled refresh of the key acceptable here.
    pub fn refresh_every(&self, key_id: &str) -> Result<Option<u64>, SessionFailure> {
        let now = self.now();
        let mut book = lock(&self.book);
        let policy = book
            .current(&self.store, now)
            .map_err(|e| fail("store.error", e.to_string()))?;
        Ok(policy.and_then(|p| p.refresh_every(key_id)))
    }

    /// The pinned roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Every peer this node knows: the pinned roster and the guardians learned from activated
    /// membership orders ([`crate::reshare::known_peers`]).
    pub fn peers(&self) -> Result<Roster, SessionFailure> {
        let ordered =
            crate::reshare::ordered_peers(&self.store).map_err(|e| fail("store.error", e))?;
        self.roster
            .with_identities(&ordered)
            .map_err(|e| fail("reshare.order_identity", e))
    }

    /// This node's clock (unix seconds), with the configured offset.
    pub fn now(&self) -> u64 {
        crate::session::unix_now().saturating_add_signed(self.clock_offset)
    }

    /// Appends to the audit log; a failure to audit is logged loudly.
    pub fn audit(&self, kind: &str, data: serde_json::Value) -> Result<(), SessionFailure> {
        self.audit
            .append(self.now(), kind, data)
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(error = %e, "cannot write the audit log");
                fail("audit.unavailable", "this node cannot write its audit log")
            })
    }

    /// Offers a policy bundle (from the configuration or the coordinator).
    pub fn offer_policy(&self, bundle_json: &str, source: &str) -> Offer {
        let now = self.now();
        let result = lock(&self.book).offer(&self.store, bundle_json, now);
        match &result {
            Ok(Offer::Unchanged) => {}
            Ok(o) => {
                tracing::info!(source, outcome = ?o, "policy bundle installed");
                let _ = self.audit(
                    "policy.installed",
                    json!({"source": source, "outcome": format!("{o:?}")}),
                );
            }
            Err(e) => {
                tracing::error!(source, reason = %e, "policy bundle refused; keeping the current policy");
                let _ = self.audit("policy.refused", json!({"source": source, "reason": e}));
            }
        }
        result.unwrap_or(Offer::Unchanged)
    }

    /// What the node reports about itself.
    pub fn status(&self) -> Result<NodeStatus, StoreError> {
        let now = self.now();
        let mut book = lock(&self.book);
        book.current(&self.store, now)?;
        Ok(NodeStatus {
            policy: book.active_info(),
            pending_policy: book.pending_info(),
            policy_error: book.last_error.clone(),
            freezes: self
                .store
                .state_scan::<FreezeState>("freeze/")?
                .into_iter()
                .map(|(k, v)| (k["freeze/".len()..].to_string(), v))
                .collect(),
            ledger_heads: ledger::heads(&self.store)?,
            ledger_gaps: ledger::gaps(&self.store)?,
            presignatures: crate::presig::counts(&self.store)?,
            suspects: self
                .store
                .state_scan::<String>("suspect/")?
                .into_iter()
                .map(|(k, v)| (k["suspect/".len()..].to_string(), v))
                .collect(),
            // Filled in by the node core, which knows its link's catch-up state.
            syncing: false,
            audit_head: self.audit_head(),
        })
    }

    /// Judges a request. With `reserve`, an allow also reserves the withdrawal (signing path).
    pub fn judge(
        &self,
        request_id: &str,
        req: &DecodedRequest,
        approvals: &[Approval],
        reserve: bool,
    ) -> NodeVerdict {
        let now = self.now();
        let phase = if reserve { "sign" } else { "evaluate" };
        // Inputs too big to keep are refused before anything is stored, and audited by size
        // and hash only.
        if let Some(f) = refuse_oversized(request_id, approvals) {
            let mut verdict = NodeVerdict::plain(VerdictKind::Deny, &f.code, f.message, now);
            verdict.payload_hash = Some(hex::encode(req.payload_hash));
            let record = json!({
                "request_id": bounded_id(request_id), "phase": phase,
                "approvals": approvals_digest(approvals), "verdict": verdict,
            });
            return match self.audit("request.evaluated", record) {
                Ok(()) => verdict,
                Err(f) => NodeVerdict::plain(VerdictKind::Defer, &f.code, f.message, now),
            };
        }
        let mut verdict = match self.try_judge(request_id, req, approvals, reserve, now) {
            Ok(v) => v,
            Err(f) => NodeVerdict::plain(VerdictKind::Deny, &f.code, f.message, now),
        };
        verdict.payload_hash = Some(hex::encode(req.payload_hash));
        match self.signed_parts(request_id) {
            Ok(signed) => verdict.signed = signed,
            Err(e) => tracing::error!(error = %e, "cannot read stored signatures"),
        }
        let record = evaluation_record(request_id, phase, req, approvals, &verdict);
        if self.audit("request.evaluated", record).is_err() {
            return NodeVerdict::plain(
                VerdictKind::Defer,
                "audit.unavailable",
                "this node cannot write its audit log",
                now,
            );
        }
        verdict
    }

    fn try_judge(
        &self,
        request_id: &str,
        req: &DecodedRequest,
        approvals: &[Approval],
        reserve: bool,
        now: u64,
    ) -> Result<NodeVerdict, SessionFailure> {
        let se = |e: StoreError| fail("store.error", e.to_string());
        let intent = &req.intent;
        self.scope.check(intent).map_err(|(c, m)| fail(c, m))?;
        match self
            .store
            .bind_request(request_id, &req.request_ctx)
            .map_err(se)?
        {
            RequestBinding::Conflict => {
                return Err(fail(
                    "request.conflict",
                    format!("request `{request_id}` was seen before with a different transaction"),
                ))
            }
            // Remembered so that a peer's entry for another payload is recognised as a conflict
            // even before this node reserves anything.
            // `bound_at/` dates the binding, so that pruning can forget it.
            RequestBinding::New => self
                .store
                .state_write(&[
                    (
                        ledger::bound_key(request_id),
                        Some(json_bytes(&hex::encode(req.payload_hash)).map_err(se)?),
                    ),
                    (
                        format!("{}{request_id}", crate::prune::index::BOUND_AT),
                        Some(json_bytes(&now).map_err(se)?),
                    ),
                ])
                .map_err(se)?,
            RequestBinding::Same => {}
        }
        // Vetoes and freezes are read under the decision lock that applying them takes, so an
        // order applied while a request is judged is never missed.
        let _serial = lock(&self.decide);
        self.refuse_known_conflicts(request_id, req)?;
        let frozen = self.freeze_state(&intent.key_id).map_err(se)?.frozen;
        let seen_key = format!("seen/{request_id}");
        let stored_first_seen = self.store.state_get::<u64>(&seen_key).map_err(se)?;
        let first_seen = stored_first_seen.unwrap_or(now);
        let mut book = lock(&self.book);
        let Some(policy) = book.current(&self.store, now).map_err(se)? else {
            return Err(fail(
                "policy.missing",
                "this node has no valid signed policy and signs nothing",
            ));
        };
        // Only what the policy's longest window reaches: a decision costs the entries in it.
        let history = ledger::history_since(
            &self.store,
            (request_id, Some(&req.payload_hash)),
            crate::prune::window_start(policy, now),
        )
        .map_err(se)?;
        let ctx = EvalContext {
            now,
            request_id: request_id.to_string(),
            payload_hash: req.payload_hash,
            first_seen,
            frozen,
            request_expires_at: None,
        };
        // A decoded contract call moves what the policy counted (its amount argument's asset
        // to its recipient, an allowance to its spender): the ledger records that.
        let (decision, counted) =
            policy::evaluate_counted(intent, policy, &history, approvals, &ctx);
        let moves = ledger::moves_of(&counted);
        drop(book);
        let mut verdict = to_verdict(&decision, first_seen);
        // A time-lock runs from when the request first became eligible: a request denied (while
        // the key is frozen, or over a limit) has not started its delay.
        if stored_first_seen.is_none() && verdict.kind != VerdictKind::Deny {
            self.store
                .state_write(&[(seen_key, Some(json_bytes(&now).map_err(se)?))])
                .map_err(se)?;
        }
        let velocity_limited = decision
            .rule(policy::tags::LIMIT_VELOCITY)
            .is_some_and(|r| r.verdict != Verdict::NotApplicable);
        let gaps = self.open_gaps(now).map_err(se)?;
        if verdict.kind == VerdictKind::Allow && velocity_limited && !gaps.is_empty() {
            verdict.kind = VerdictKind::Defer;
            verdict.code = Some("ledger.behind".into());
            verdict.message = format!(
                "this node is missing ledger entries from {}; velocity limits wait until it catches up",
                gaps.join(", ")
            );
        }
        if reserve && verdict.kind == VerdictKind::Allow {
            let r = Reservation {
                key_id: intent.key_id.clone(),
                at: now,
                moves,
                payload_hash: Some(req.payload_hash),
            };
            let also = match req.decoded.transaction_id() {
                Some(tx) => {
                    let key = tx_key(intent, &tx);
                    vec![
                        (
                            crate::prune::txbind_of_key(request_id, &key),
                            Some(json_bytes(&key).map_err(se)?),
                        ),
                        (key, Some(json_bytes(&request_id).map_err(se)?)),
                    ]
                }
                None => vec![],
            };
            ledger::reserve(&self.store, request_id, &r, also).map_err(se)?;
        }
        Ok(verdict)
    }

    /// Refusals that no policy can lift: a guardian's veto, a request id already signed for
    /// another payload, and a transaction already reserved under another request id (two ids
    /// for one transaction would let each pass the limits alone, and count once).
    fn refuse_known_conflicts(
        &self,
        request_id: &str,
        req: &DecodedRequest,
    ) -> Result<(), SessionFailure> {
        let se = |e: StoreError| fail("store.error", e.to_string());
        if let Some(v) = self
            .store
            .state_get::<authz::Veto>(&format!("veto/{request_id}"))
            .map_err(se)?
        {
            return Err(fail(
                "veto",
                format!("vetoed by guardian {}", hex::encode(v.guardian)),
            ));
        }
        if let Some(by) = self
            .store
            .state_get::<String>(&ledger::conflict_key(request_id))
            .map_err(se)?
        {
            return Err(fail(
                "request.conflict",
                format!("`{request_id}` was signed for another payload (ledger entry of `{by}`); it signs nothing more"),
            ));
        }
        let signed_other = self
            .store
            .state_keys(&ledger::pay_prefix(request_id))
            .map_err(se)?
            .into_iter()
            .any(|k| k != ledger::pay_key(request_id, &req.payload_hash));
        if signed_other {
            let marker = ledger::conflict_key(request_id);
            if self
                .store
                .state_get::<String>(&marker)
                .map_err(se)?
                .is_none()
            {
                self.store
                    .state_write(&[(marker, Some(json_bytes(&"self").map_err(se)?))])
                    .map_err(se)?;
                self.report(
                    "coordinator",
                    "request.conflict",
                    &format!("asked to sign `{request_id}` for another payload than the one already reserved or signed"),
                );
            }
            return Err(fail(
                "request.conflict",
                format!("`{request_id}` was already signed or reserved for another payload"),
            ));
        }
        if let Some(tx) = req.decoded.transaction_id() {
            if let Some(other) = self
                .store
                .state_get::<String>(&tx_key(&req.intent, &tx))
                .map_err(se)?
                .filter(|other| other != request_id)
            {
                return Err(fail(
                    "request.tx_reused",
                    format!("this transaction is already reserved under request `{other}`; fetch that request's result instead"),
                ));
            }
        }
        Ok(())
    }

    /// The head of this node's audit log, carried in its ledger entries (so that a truncated
    /// log is caught by the copies peers and the coordinator keep).
    pub fn audit_head(&self) -> Option<authz::AuditHead> {
        let a = self.audit.anchor();
        Some(authz::AuditHead {
            count: a.count,
            hash: a.hash,
        })
    }

    /// The parts of `request_id` this node has signed, with their signatures.
    pub fn signed_parts(
        &self,
        request_id: &str,
    ) -> Result<BTreeMap<u32, proto::sig::VerifiedSignature>, StoreError> {
        let prefix = signed_prefix(request_id);
        let prefix = prefix.as_str();
        Ok(self
            .store
            .state_scan::<proto::sig::VerifiedSignature>(prefix)?
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.parse().ok()?, v)))
            .collect())
    }
}

/// Largest `request.evaluated` audit record kept whole (bytes of JSON); a bigger one keeps the
/// intent's and rules' hashes and sizes instead (see `docs/limits/bounds.md`).
pub const MAX_EVALUATION_RECORD: usize = 32 * 1024;

/// Longest verdict message kept in a shortened audit record (characters).
const MAX_AUDITED_MESSAGE: usize = 512;

/// A request id too long or malformed to store, or more approvals than any request may carry:
/// refused before anything is stored.
fn refuse_oversized(request_id: &str, approvals: &[Approval]) -> Option<SessionFailure> {
    if !proto::api::valid_request_id(request_id) {
        return Some(fail(
            "request.invalid_id",
            format!(
                "a request id is 1-{} characters of [A-Za-z0-9._:-]; this one ({} bytes) is not",
                proto::api::MAX_REQUEST_ID_LEN,
                request_id.len()
            ),
        ));
    }
    let max = proto::api::MAX_APPROVALS_PER_REQUEST;
    (approvals.len() > max).then(|| {
        fail(
            "approvals.too_many",
            format!(
                "{} approvals; a request carries at most {max}",
                approvals.len()
            ),
        )
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A request id as audited: itself if valid, else its length and hash.
fn bounded_id(request_id: &str) -> serde_json::Value {
    match proto::api::valid_request_id(request_id) {
        true => json!(request_id),
        false => json!({"bytes": request_id.len(), "sha256": sha256_hex(request_id.as_bytes())}),
    }
}

/// Approvals as audited when refused: their count and the hash of their JSON.
fn approvals_digest(approvals: &[Approval]) -> serde_json::Value {
    let bytes = serde_json::to_vec(approvals).unwrap_or_default();
    json!({"count": approvals.len(), "sha256": sha256_hex(&bytes)})
}

/// The audit record of a judged request: whole up to [`MAX_EVALUATION_RECORD`] bytes, else
/// with the intent and the rules replaced by their sizes and hashes.
fn evaluation_record(
    request_id: &str,
    phase: &str,
    req: &DecodedRequest,
    approvals: &[Approval],
    verdict: &NodeVerdict,
) -> serde_json::Value {
    let whole = json!({
        "request_id": request_id, "phase": phase,
        "intent": req.intent, "approvals": approvals, "verdict": verdict,
    });
    let size = serde_json::to_vec(&whole).map_or(usize::MAX, |b| b.len());
    if size <= MAX_EVALUATION_RECORD {
        return whole;
    }
    let intent = serde_json::to_vec(&req.intent).unwrap_or_default();
    let rules = serde_json::to_vec(&verdict.rules).unwrap_or_default();
    let mut short = verdict.clone();
    short.rules = Vec::new();
    short.message = short.message.chars().take(MAX_AUDITED_MESSAGE).collect();
    json!({
        "request_id": request_id, "phase": phase, "shortened": size,
        "intent": {"bytes": intent.len(), "sha256": sha256_hex(&intent),
                   "key_id": req.intent.key_id, "payments": req.intent.payments.len()},
        "approvals": approvals_digest(approvals),
        "rules": {"bytes": rules.len(), "sha256": sha256_hex(&rules)},
        "verdict": short,
    })
}

/// The node-level verdict for a policy decision.
pub fn to_verdict(d: &Decision, first_seen: u64) -> NodeVerdict {
    let first_tag = |v: Verdict| {
        d.rules
            .iter()
            .find(|r| r.verdict == v)
            .map(|r| format!("policy.{}", r.tag))
    };
    let (kind, code, not_before, missing, message) = match &d.outcome {
        Outcome::Allow => (
            VerdictKind::Allow,
            None,
            None,
            BTreeMap::new(),
            "allowed".to_string(),
        ),
        Outcome::Defer {
            not_before,
            missing_approvals,
        } => (
            VerdictKind::Defer,
            first_tag(Verdict::Defer),
            *not_before,
            missing_approvals.clone(),
            "deferred: waiting for a time-lock or approvals".to_string(),
        ),
        Outcome::Deny { rules } => (
            VerdictKind::Deny,
            first_tag(Verdict::Fail),
            None,
            BTreeMap::new(),
            format!("denied by {}", rules.join(", ")),
        ),
    };
    NodeVerdict {
        kind,
        code,
        message,
        not_before,
        missing_approvals: missing,
        rules: d
            .rules
            .iter()
            .map(|r| RuleView {
                tag: r.tag.clone(),
                verdict: r.verdict.as_str().to_string(),
                reason: r.reason.clone(),
            })
            .collect(),
        policy_version: Some(d.policy_version),
        policy_hash: Some(d.policy_hash.to_string()),
        first_seen: Some(first_seen),
        evaluated_at: d.evaluated_at,
        signed: BTreeMap::new(),
        payload_hash: None,
        call: d.call.clone(),
    }
}

/// State key naming the request a transaction (by [`proto::payload::Decoded::transaction_id`])
/// was reserved under, per key and account (the same unsigned transaction signed by another
/// key is another payout, from another sender).
fn tx_key(intent: &WithdrawalIntent, tx: &[u8; 32]) -> String {
    let account = intent.account.as_deref().unwrap_or("");
    format!("txbind/{}\0/{account}\0/{}", intent.key_id, hex::encode(tx))
}

/// State key of this node's signature of one part of a request. The request id ends with `\0`
/// so that no id is a prefix of another's keys.
pub fn signed_key(request_id: &str, part: u32) -> String {
    format!("{}{part}", signed_prefix(request_id))
}

/// State-key prefix of every signed part of a request.
fn signed_prefix(request_id: &str) -> String {
    format!("signed/{request_id}\0/")
}
