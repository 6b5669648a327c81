//! Sessions on a node: validate what the coordinator asks, decode the transaction, agree with
//! the other parties on what is being computed, then run the MPC protocol on a blocking thread.
//!
//! Order of a session: (1) validate the start frame against this node's own roster and store;
//! (2) claim the session id durably (ids never repeat); (3) broadcast a signed *join* carrying
//! this node's context hash (for signing: the hash of the intent it decoded); (4) wait for every
//! party's join and abort on any mismatch; (5) run the protocol with execution id
//! `H(session id ‖ context hash)`; (6) verify and report the output.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use proto::wire::{
    CoordFrame, Envelope, NodeFrame, SessionFailure, SessionId, SessionOutput, SessionStart,
};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};

use crate::{
    envelope::SessionCrypto,
    guard::Guard,
    identity::NodeIdentity,
    mpc::{Channels, OutSink, RawIncoming},
    plan::{self, Plan},
    store::Store,
};

/// Queue depth of undelivered messages per session; beyond it messages are dropped.
pub const SESSION_QUEUE: usize = 256;

/// Protocol messages that arrive before every join and are kept for the protocol, per session;
/// beyond it they are dropped. Honest parties send a few each before the protocol starts.
pub const MAX_EARLY: usize = 64;

/// Highest envelope sequence number a session accepts from one party. The longest protocol
/// here (key generation) sends a few dozen messages per party; the cap bounds the per-session
/// record of delivered `(party, seq)` pairs, which a peer could otherwise grow without end.
pub const MAX_SEQ: u32 = 4096;

/// Sessions registered on this node at once; a coordinator asking for more gets `node.busy`.
pub const MAX_LIVE_SESSIONS: usize = 64;

/// Evaluations handled at once; beyond it an evaluation is dropped (the coordinator asks again).
/// Frames that carry state (orders, policy, ledger, accounts) go through the ordered lane
/// instead and are never dropped (see [`crate::control`]).
pub const MAX_CONTROL_JOBS: usize = 32;

/// Largest envelope payload a session of this kind accepts, checked before the signature: it
/// bounds every big integer inside an MPC message. Measured: 2-of-3 signing messages are at most
/// 28 KB, keygen messages a few KB; aux-info carries Paillier moduli and their proofs.
pub fn max_payload(kind: &proto::wire::SessionKind) -> usize {
    use proto::wire::SessionKind;
    match kind {
        SessionKind::Sign { .. } | SessionKind::Presign => 128 * 1024,
        SessionKind::Keygen { .. } => 256 * 1024,
        SessionKind::AuxInfo | SessionKind::ReshareAux { .. } => proto::wire::MAX_FRAME,
        SessionKind::Reshare { .. } => 64 * 1024,
    }
}

/// Deadlines for the phases of a session.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Waiting for every party's join message.
    pub join: Duration,
    /// The whole MPC protocol.
    pub protocol: Duration,
    /// Waiting for one message of a signing round.
    pub round: Duration,
    /// Waiting for one message of a key-generation or aux-info round (a party may generate
    /// Paillier primes first).
    pub ceremony_round: Duration,
}

struct Live {
    max_payload: usize,
    crypto: Arc<SessionCrypto>,
    tx: mpsc::Sender<RawIncoming>,
    seen: HashSet<(u16, u32)>,
    /// Parties in whose name the relay delivered an envelope that failed its checks.
    forged: crate::mpc::Forged,
}

/// Shared state of a running node.
pub struct NodeCore {
    pub(crate) store: Arc<Store>,
    pub(crate) identity: Arc<NodeIdentity>,
    pub(crate) frames: mpsc::UnboundedSender<NodeFrame>,
    sessions: Mutex<HashMap<SessionId, Live>>,
    timeouts: Timeouts,
    slots: Arc<Semaphore>,
    /// Presign (refill) sessions computing at once: apart from `slots`.
    refill_slots: Arc<Semaphore>,
    /// Cap of stored presignatures per key and subset.
    presig_cap: usize,
    pub(crate) control: Arc<Semaphore>,
    /// The ordered lane: state-carrying control frames, applied one at a time in arrival order.
    pub(crate) lane: std::sync::OnceLock<mpsc::Sender<(u64, CoordFrame)>>,
    /// Catch-up with the coordinator's replay on the current link.
    pub(crate) sync: crate::sync::Sync,
    pub(crate) guard: Arc<Guard>,
    /// Set on SIGTERM: no new session starts.
    stopping: std::sync::atomic::AtomicBool,
    /// Session tasks that have not reported yet.
    running: Arc<std::sync::atomic::AtomicUsize>,
    /// Adversarial tests only (see [`crate::mpc::OutgoingHook`]).
    hook: Option<crate::mpc::OutgoingHook>,
    /// Adversarial tests only: a dealer that cheats in redistributions, with the next fault
    /// of this list in each dealing it takes part in (cycling).
    dealer_faults: Vec<crate::reshare::ceremony::DealerFault>,
    dealings: std::sync::atomic::AtomicUsize,
}

/// Builds a failure with a stable code.
pub(crate) fn fail(code: &str, message: impl Into<String>) -> SessionFailure {
    SessionFailure {
        code: code.to_string(),
        message: message.into(),
        blame: vec![],
    }
}

impl NodeCore {
    /// Creates the core; `frames` is drained by the coordinator link.
    pub fn new(
        store: Arc<Store>,
        identity: Arc<NodeIdentity>,
        frames: mpsc::UnboundedSender<NodeFrame>,
        timeouts: Timeouts,
        max_parallel: usize,
        guard: Arc<Guard>,
    ) -> Self {
        Self {
            store,
            identity,
            frames,
            sessions: Mutex::new(HashMap::new()),
            timeouts,
            slots: Arc::new(Semaphore::new(max_parallel.max(1))),
            refill_slots: Arc::new(Semaphore::new(1)),
            presig_cap: 64,
            control: Arc::new(Semaphore::new(MAX_CONTROL_JOBS)),
            lane: std::sync::OnceLock::new(),
            sync: Default::default(),
            guard,
            stopping: Default::default(),
            running: Default::default(),
            hook: None,
            dealer_faults: Vec::new(),
            dealings: Default::default(),
        }
    }

    /// Makes this node a cheating dealer (adversarial tests only): its n-th dealing uses the
    /// fault `faults[n % faults.len()]`.
    pub fn with_dealer_faults(
        mut self,
        faults: Vec<crate::reshare::ceremony::DealerFault>,
    ) -> Self {
        self.dealer_faults = faults;
        self
    }

    /// The fault of this dealing, if this node cheats and deals in `start`.
    fn next_dealer_fault(
        &self,
        start: &SessionStart,
    ) -> Option<crate::reshare::ceremony::DealerFault> {
        let proto::wire::SessionKind::Reshare { dealers, .. } = &start.kind else {
            return None;
        };
        if self.dealer_faults.is_empty() || !dealers.iter().any(|d| d == self.guard.node_id()) {
            return None;
        }
        let n = self
            .dealings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dealer_faults
            .get(n % self.dealer_faults.len())
            .copied()
    }

    /// Installs an [`crate::mpc::OutgoingHook`] (adversarial tests only).
    pub fn with_hook(mut self, hook: Option<crate::mpc::OutgoingHook>) -> Self {
        self.hook = hook;
        self
    }

    /// Sets the presignature cap per key and subset, and the refill sessions computed at once.
    pub fn with_pool(mut self, cap: usize, refill_parallel: usize) -> Self {
        self.presig_cap = cap.max(1);
        self.refill_slots = Arc::new(Semaphore::new(refill_parallel.max(1)));
        self
    }

    /// Whether the node is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sessions running now.
    pub fn live_sessions(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends every live session (their queues close; each reports `session.aborted` or a
    /// protocol error at its next message wait).
    pub fn abort_sessions(&self, why: &str) -> usize {
        let aborted: Vec<SessionId> = self.lock().drain().map(|(sid, _)| sid).collect();
        for sid in &aborted {
            tracing::warn!(session = %hex::encode(sid), why, "session aborted");
        }
        aborted.len()
    }

    /// Graceful stop: refuse new sessions, let running ones finish for up to `grace`, then
    /// abort the rest (each reports a failure to the coordinator, which retries the request
    /// elsewhere). Returns how many sessions were aborted.
    pub async fn drain(&self, grace: Duration) -> usize {
        use std::sync::atomic::Ordering;
        self.stopping.store(true, Ordering::SeqCst);
        self.wait_idle(grace).await;
        let aborted = self.abort_sessions("node stopping");
        // Aborted sessions end at their next message wait; give them a moment to report.
        self.wait_idle(Duration::from_secs(3)).await;
        aborted
    }

    /// Waits until no session runs, or `limit` passed.
    async fn wait_idle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.live_sessions() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Handles one frame from the coordinator. Session traffic is handled here at once;
    /// control frames go to the node's control module, which may wait for room in the ordered
    /// lane (the link then stops reading: back-pressure instead of a dropped order).
    pub async fn on_frame(self: &Arc<Self>, frame: CoordFrame) {
        match frame {
            CoordFrame::Start(start) => {
                // Register synchronously: peers' envelopes for this session may be the very next
                // frames, and must queue rather than be dropped as "no live session".
                let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                match self.register(&start, tx) {
                    Ok(crypto) => {
                        let me = self.clone();
                        let running = self.running.clone();
                        running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::spawn(async move {
                            me.run_session(start, crypto, rx).await;
                            running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        });
                    }
                    Err(f) => self.report(start.session_id, Err(f)),
                }
            }
            CoordFrame::Envelope(env) => self.deliver(env),
            CoordFrame::Abort { session_id, reason } => {
                if self.lock().remove(&session_id).is_some() {
                    tracing::warn!(session = %hex::encode(session_id), %reason, "session aborted by coordinator");
                }
            }
            other => self.control_frame(other).await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Live>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Verifies an envelope completely before anything parses its payload.
    fn deliver(&self, env: Envelope) {
        let mut sessions = self.lock();
        let Some(live) = sessions.get_mut(&env.session_id) else {
            tracing::debug!(session = %hex::encode(env.session_id), "envelope for no live session dropped");
            return;
        };
        if env.seq > MAX_SEQ {
            tracing::warn!(session = %hex::encode(env.session_id), from = env.from, seq = env.seq, "rejected envelope: sequence number over {MAX_SEQ}");
            return;
        }
        if env.payload.len() > live.max_payload {
            tracing::warn!(session = %hex::encode(env.session_id), from = env.from, size = env.payload.len(), limit = live.max_payload, "rejected envelope: payload over this session's limit");
            return;
        }
        let bytes = match live.crypto.open(&env) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(session = %hex::encode(env.session_id), error = %e, "rejected envelope (the relay, not the claimed sender, is suspect)");
                crate::mpc::lock(&live.forged).insert(env.from);
                return;
            }
        };
        if !live.seen.insert((env.from, env.seq)) {
            tracing::debug!(from = env.from, seq = env.seq, "duplicate envelope dropped");
            return;
        }
        let raw = RawIncoming {
            from: env.from,
            broadcast: env.to.is_none(),
            seq: env.seq,
            bytes,
        };
        if live.tx.try_send(raw).is_err() {
            tracing::warn!(session = %hex::encode(env.session_id), "session queue full; message dropped");
        }
    }

    /// Creates the session's crypto context and queue before anything else can arrive for it.
    fn register(
        &self,
        start: &SessionStart,
        tx: mpsc::Sender<RawIncoming>,
    ) -> Result<Arc<SessionCrypto>, SessionFailure> {
        let me = start
            .parties
            .iter()
            .position(|p| *p == self.identity.node_id)
            .ok_or_else(|| fail("session.invalid", "this node is not a party of the session"))?;
        let peers = plan::peer_keys(&plan::session_roster(&self.guard, start)?, &start.parties)?;
        let crypto = Arc::new(SessionCrypto::new(
            start.session_id,
            me as u16,
            self.identity.clone(),
            peers,
        ));
        if self.is_stopping() {
            return Err(fail("node.stopping", "this node is shutting down"));
        }
        let mut sessions = self.lock();
        if sessions.len() >= MAX_LIVE_SESSIONS {
            return Err(fail(
                "node.busy",
                format!("this node already runs {MAX_LIVE_SESSIONS} sessions"),
            ));
        }
        if sessions.contains_key(&start.session_id) {
            return Err(fail(
                "session.replayed",
                "this session id is already running",
            ));
        }
        sessions.insert(
            start.session_id,
            Live {
                max_payload: max_payload(&start.kind),
                crypto: crypto.clone(),
                tx,
                seen: HashSet::new(),
                forged: Default::default(),
            },
        );
        Ok(crypto)
    }

    fn report(&self, sid: SessionId, result: Result<SessionOutput, SessionFailure>) {
        match &result {
            Ok(_) => tracing::info!(session = %hex::encode(sid), "session finished"),
            Err(f) => {
                tracing::warn!(session = %hex::encode(sid), code = %f.code, message = %f.message, "session failed");
                let _ = self.guard.audit(
                    "session.failed",
                    serde_json::json!({"session": hex::encode(sid), "code": f.code,
                                       "message": f.message, "blame": f.blame}),
                );
            }
        }
        let _ = self.frames.send(NodeFrame::SessionResult {
            session_id: sid,
            result,
        });
    }

    async fn run_session(
        self: Arc<Self>,
        start: SessionStart,
        crypto: Arc<SessionCrypto>,
        rx: mpsc::Receiver<RawIncoming>,
    ) {
        let sid = start.session_id;
        let result = self.session(start, crypto, rx).await;
        let result = result.map_err(|f| match self.is_stopping() {
            true if f.code != "signature.invalid" => fail(
                "node.stopping",
                format!("this node is shutting down ({})", f.code),
            ),
            _ => f,
        });
        self.lock().remove(&sid);
        self.report(sid, result);
    }

    async fn session(
        &self,
        start: SessionStart,
        crypto: Arc<SessionCrypto>,
        mut rx: mpsc::Receiver<RawIncoming>,
    ) -> Result<SessionOutput, SessionFailure> {
        let me = crypto.me() as usize;
        let t0 = std::time::Instant::now();
        // A node that has not caught up with the coordinator's replay may be missing a freeze,
        // a veto or its own ledger entries: it signs nothing yet.
        if matches!(start.kind, proto::wire::SessionKind::Sign { .. }) {
            self.check_synced()?;
        }
        let plan = Plan::prepare(
            &self.store,
            &start,
            me as u16,
            &self.guard,
            self.presig_cap,
            self.next_dealer_fault(&start),
        )?;
        let prepared = t0.elapsed();
        let ctx = plan.context_hash(&start);
        let now = unix_now();
        let fresh = self
            .store
            .claim_session(&start.session_id, now)
            .map_err(|e| fail("store.error", e.to_string()))?;
        if !fresh {
            return Err(fail(
                "session.replayed",
                "this session id was used before; execution ids never repeat",
            ));
        }
        plan.bind(&self.store)?;
        let mut join_payload = ctx.to_vec();
        join_payload.extend(serde_json::to_vec(&self.guard.ledger_heads()).unwrap_or_default());
        let join = crypto
            .seal(None, 0, &join_payload)
            .ok_or_else(|| fail("session.internal", "could not seal the join message"))?;
        self.frames
            .send(NodeFrame::Envelope(join))
            .map_err(|_| fail("session.disconnected", "coordinator link closed"))?;
        let claimed = t0.elapsed();
        let early = self.await_joins(&start, me as u16, &ctx, &mut rx).await?;
        let joined = t0.elapsed();

        let eid = execution_id(&start.session_id, &ctx);
        // A presignature's partial costs microseconds: it takes no compute slot. A refill
        // computes apart from the signing slots, so it never holds one an online signing needs.
        let slots = match &start.kind {
            proto::wire::SessionKind::Sign {
                presignature: Some(_),
                ..
            } => None,
            proto::wire::SessionKind::Presign => Some(self.refill_slots.clone()),
            _ => Some(self.slots.clone()),
        };
        let _permit = match slots {
            Some(s) => Some(
                s.acquire_owned()
                    .await
                    .map_err(|_| fail("session.internal", "node is shutting down"))?,
            ),
            None => None,
        };
        let frames = self.frames.clone();
        let store = self.store.clone();
        let guard = self.guard.clone();
        let hook = self.hook.clone();
        let watch = crate::mpc::RoundWatch {
            timeout: match start.kind {
                proto::wire::SessionKind::Sign { .. } | proto::wire::SessionKind::Presign => {
                    self.timeouts.round
                }
                _ => self.timeouts.ceremony_round,
            },
            parties: start.parties.clone(),
            me: me as u16,
            stalled: Default::default(),
            forged: self
                .lock()
                .get(&start.session_id)
                .map(|l| l.forged.clone())
                .unwrap_or_default(),
            handle: tokio::runtime::Handle::current(),
        };
        let job = tokio::task::spawn_blocking(move || {
            plan.execute(
                &store,
                &eid,
                early,
                rx,
                OutSinkFactory {
                    session_id: start.session_id,
                    crypto,
                    frames,
                    watch,
                    hook,
                },
                &guard,
            )
        });
        match tokio::time::timeout(self.timeouts.protocol, job).await {
            Ok(Ok(result)) => {
                tracing::debug!(session = %hex::encode(start.session_id), ?prepared, ?claimed, ?joined, total = ?t0.elapsed(), "session phases");
                result
            }
            Ok(Err(_)) => Err(fail("session.internal", "protocol thread panicked")),
            Err(_) => {
                self.lock().remove(&start.session_id);
                Err(fail(
                    "session.timeout",
                    format!(
                        "protocol did not finish within {:?}",
                        self.timeouts.protocol
                    ),
                ))
            }
        }
    }

    /// Waits for every other party's join; buffers protocol messages that arrive early.
    async fn await_joins(
        &self,
        start: &SessionStart,
        me: u16,
        ctx: &[u8; 32],
        rx: &mut mpsc::Receiver<RawIncoming>,
    ) -> Result<Vec<RawIncoming>, SessionFailure> {
        let n = start.parties.len() as u16;
        let mut joins: HashMap<u16, Vec<u8>> = HashMap::new();
        let mut early = Vec::new();
        let mut dropped = 0usize;
        let deadline = tokio::time::Instant::now() + self.timeouts.join;
        while joins.len() < (n - 1) as usize {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) if m.seq == 0 && m.broadcast => {
                    joins.insert(m.from, m.bytes);
                }
                Ok(Some(m)) if early.len() < MAX_EARLY => early.push(m),
                Ok(Some(m)) => {
                    dropped += 1;
                    if dropped == 1 {
                        tracing::warn!(
                            from = start
                                .parties
                                .get(usize::from(m.from))
                                .map(String::as_str)
                                .unwrap_or("?"),
                            "more than {MAX_EARLY} messages before every join; dropping the rest"
                        );
                    }
                }
                Ok(None) => return Err(fail("session.aborted", "session aborted while joining")),
                Err(_) => {
                    let missing: Vec<String> = (0..n)
                        .filter(|j| *j != me && !joins.contains_key(j))
                        .map(|j| start.parties[j as usize].clone())
                        .collect();
                    let mut f = fail(
                        "session.timeout",
                        format!(
                            "no join message from {} within {:?}",
                            missing.join(", "),
                            self.timeouts.join
                        ),
                    );
                    f.blame = missing;
                    return Err(f);
                }
            }
        }
        let mismatched: Vec<(String, String)> = joins
            .iter()
            .filter(|(_, h)| h.get(..32) != Some(ctx.as_slice()))
            .map(|(j, h)| {
                let shown = h.get(..32).unwrap_or(h);
                (start.parties[*j as usize].clone(), hex::encode(shown))
            })
            .collect();
        if !mismatched.is_empty() {
            let mut listing = vec![format!(
                "{} (this node): {}",
                self.identity.node_id,
                hex::encode(ctx)
            )];
            listing.extend(mismatched.iter().map(|(n, h)| format!("{n}: {h}")));
            let mut f = fail(
                "session.intent_mismatch",
                format!("parties decoded different requests: {}", listing.join("; ")),
            );
            f.blame = mismatched.into_iter().map(|(n, _)| n).collect();
            return Err(f);
        }
        self.check_peer_ledgers(&start.parties, &joins)?;
        Ok(early)
    }

    /// Each join carries the sender's ledger heads: a peer that holds entries this node lacks
    /// means this node's velocity sums may be short, so it refuses until it has caught up.
    fn check_peer_ledgers(
        &self,
        parties: &[String],
        joins: &HashMap<u16, Vec<u8>>,
    ) -> Result<(), SessionFailure> {
        let mut behind = Vec::new();
        for (j, bytes) in joins {
            let heads: std::collections::BTreeMap<String, u64> =
                serde_json::from_slice(bytes.get(32..).unwrap_or_default()).unwrap_or_default();
            let by = parties.get(usize::from(*j)).map_or("?", String::as_str);
            if let Err(origins) = self.guard.note_peer_heads(by, &heads) {
                behind.extend(origins);
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        behind.sort();
        behind.dedup();
        let _ = self
            .frames
            .send(NodeFrame::LedgerWant(self.guard.ledger_heads()));
        Err(fail(
            "ledger.behind",
            format!(
                "this node is missing ledger entries from {}; it asked to catch up",
                behind.join(", ")
            ),
        ))
    }
}

/// Creates the outgoing half for whichever message type the plan's protocol uses.
pub struct OutSinkFactory {
    session_id: SessionId,
    crypto: Arc<SessionCrypto>,
    frames: mpsc::UnboundedSender<NodeFrame>,
    watch: crate::mpc::RoundWatch,
    hook: Option<crate::mpc::OutgoingHook>,
}

impl OutSinkFactory {
    /// The run's round deadline (to name who stalled it).
    pub fn watch(&self) -> crate::mpc::RoundWatch {
        self.watch.clone()
    }

    /// The session's id (a presignature is stored under it).
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// The frame sender (for reports made during the protocol run).
    pub fn frames(&self) -> mpsc::UnboundedSender<NodeFrame> {
        self.frames.clone()
    }

    /// Channels for one protocol run.
    pub fn channels<M>(
        self,
        early: Vec<RawIncoming>,
        rx: mpsc::Receiver<RawIncoming>,
    ) -> Channels<M>
    where
        M: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        Channels {
            incoming: crate::mpc::incoming(early, rx, self.watch),
            outgoing: OutSink::new(self.crypto, self.frames, 1).with_hook(self.hook),
        }
    }
}

/// `H(domain ‖ session id ‖ context hash)`: every honest party derives the same id, and an id
/// never repeats because session ids never do.
pub fn execution_id(session_id: &SessionId, ctx: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"custody/eid/v1\0");
    h.update(session_id);
    h.update(ctx);
    h.finalize().into()
}

/// Seconds since the Unix epoch by this node's own clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
