//! What a session computes on this node: validated against the node's own store and roster,
//! with every digest computed here from bytes the node decoded itself.

use proto::{
    authz::VerdictKind,
    intent::WithdrawalIntent,
    payload::{Preimage, SignPayload},
    wire::{NodeFrame, SessionFailure, SessionKind, SessionOutput, SessionStart},
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{
    guard::Guard,
    identity::{PeerKeys, Roster},
    mpc::{self, AuxInfo, IncompleteKeyShare, KeyShare, Primes, RawIncoming},
    secret::{to_secret_json, SecretBytes},
    session::{fail, OutSinkFactory},
    store::{KeyMeta, RequestBinding, Store},
};

/// Sealed record holding this node's spare Paillier primes.
pub const PRIMES_RECORD: &str = "primes";

/// Record name of a key's complete share of `epoch` (the name, and so the seal's associated
/// data, binds the epoch; epoch 0 keeps the name it had before epochs existed).
pub fn share_record(key_id: &str, epoch: u64) -> String {
    match epoch {
        0 => format!("share/{key_id}"),
        e => format!("share/{key_id}/e{e}"),
    }
}

fn incomplete_record(key_id: &str) -> String {
    format!("incomplete/{key_id}")
}

/// Record name of the aux info of a signer group (aux info is reusable across keys of a group).
pub fn aux_record(group: &[String]) -> String {
    let mut h = Sha256::new();
    for node in group {
        h.update(node.as_bytes());
        h.update([0]);
    }
    format!("aux/{}", hex::encode(h.finalize()))
}

fn store_err(e: impl std::fmt::Display) -> SessionFailure {
    fail("store.error", e.to_string())
}

pub(crate) fn load_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    record: &str,
) -> Result<Option<T>, SessionFailure> {
    let Some(bytes) = store.get_secret(record).map_err(store_err)? else {
        return Ok(None);
    };
    serde_json::from_slice(bytes.expose_secret())
        .map(Some)
        .map_err(|_| {
            fail(
                "store.corrupt",
                format!("stored record `{record}` does not parse"),
            )
        })
}

fn secret_json<T: serde::Serialize>(v: &T) -> Result<SecretBytes, SessionFailure> {
    to_secret_json(v).map_err(|_| fail("session.internal", "serialising a secret failed"))
}

/// Pinned keys of the session's parties, in session order.
pub fn peer_keys(roster: &Roster, parties: &[String]) -> Result<Vec<PeerKeys>, SessionFailure> {
    let mut seen = std::collections::HashSet::new();
    parties
        .iter()
        .map(|p| {
            if !seen.insert(p) {
                return Err(fail("session.invalid", format!("party `{p}` listed twice")));
            }
            roster.get(p).cloned().ok_or_else(|| {
                fail(
                    "session.invalid",
                    format!("party `{p}` is not in this node's roster"),
                )
            })
        })
        .collect()
}

/// A request as this node decoded it from the client's payload.
pub struct DecodedRequest {
    /// The key's metadata.
    pub meta: KeyMeta,
    /// The decoded transaction or message.
    pub decoded: proto::payload::Decoded,
    /// What it does.
    pub intent: WithdrawalIntent,
    /// Hash of the whole request (id, intent, payload): bound to the request id.
    pub request_ctx: [u8; 32],
    /// Hash of the payload alone: approvals and ledger entries are bound to it.
    pub payload_hash: [u8; 32],
}

/// Decodes a request's payload with this node's own copy of the key.
pub fn decode_request(
    store: &Store,
    key_id: &str,
    request_id: &str,
    payload: &SignPayload,
    account: Option<&str>,
) -> Result<DecodedRequest, SessionFailure> {
    let meta = store
        .key_meta(key_id)
        .map_err(store_err)?
        .ok_or_else(|| fail("key.not_found", format!("no key `{key_id}` on this node")))?;
    if !meta.complete {
        return Err(fail(
            "key.not_ready",
            "the key share is waiting for aux info",
        ));
    }
    // The master key, or the account's address keys derived here from this node's registry.
    let spend = crate::accounts::spend_keys(store, &meta, account)?;
    let pfail = |e: proto::payload::PayloadError| fail(e.code(), e.to_string());
    let decoded = payload.decode_for(&spend).map_err(pfail)?;
    let intent = decoded.intent(key_id).map_err(pfail)?;
    let mut h = Sha256::new();
    h.update(b"custody/request/v1\0");
    h.update(request_id.as_bytes());
    h.update([0]);
    h.update(intent.canonical_bytes());
    // The payload's bytes determine every part's digest; hashing them once keeps a k-input
    // PSBT at k sighash computations per node instead of k².
    let payload_bytes = proto::wire::encode(payload)
        .map_err(|_| fail("session.invalid", "payload does not re-encode"))?;
    h.update(Sha256::digest(&payload_bytes));
    Ok(DecodedRequest {
        meta,
        decoded,
        intent,
        request_ctx: h.finalize().into(),
        payload_hash: payload.payload_hash(),
    })
}

/// A validated session on this node.
pub enum Plan {
    /// DKG.
    Keygen {
        /// Key id.
        key_id: String,
        /// Group in index order.
        group: Vec<String>,
        /// Threshold.
        t: u16,
        /// Our index.
        i: u16,
    },
    /// Aux info for a group.
    Aux {
        /// Group in index order.
        group: Vec<String>,
        /// Our index.
        i: u16,
    },
    /// Signing one part of a request (fully interactive, or from a presignature).
    Sign(Box<SignPlan>),
    /// Redistributing the key's shares (refresh or reshare).
    Reshare(Box<crate::reshare::ceremony::ResharePlan>),
    /// Making a presignature for the pool.
    Presign {
        /// Key id.
        key_id: String,
        /// Parties in session order.
        parties: Vec<String>,
        /// Our index.
        i: u16,
        /// The parties' keygen indexes.
        keygen_indexes: Vec<u16>,
        /// Cap of stored presignatures for this key and subset.
        cap: usize,
        /// The key's share epoch.
        epoch: u64,
    },
}

/// The parts of a signing session.
pub struct SignPlan {
    key_id: String,
    request_id: String,
    i: u16,
    keygen_indexes: Vec<u16>,
    part: u32,
    preimage: Preimage,
    digest: [u8; 32],
    /// The key that signs this part (the master key, or an account's `m/a/i`).
    pubkey: [u8; 33],
    /// Its derivation path from the master key (empty for the master key).
    path: Vec<u32>,
    /// Hash of the whole request as this node decoded it (all parts): bound to the request id.
    request_ctx: [u8; 32],
    /// What the request does (for the ledger entry once signed).
    intent: WithdrawalIntent,
    /// Hash of the payload (for the ledger entry once signed).
    payload_hash: [u8; 32],
    /// Sign from this presignature instead of running the protocol.
    presig: Option<proto::presig::PresigId>,
    /// Held until the session ends: no second session signs this part meanwhile.
    _claim: crate::guard::PartClaim,
    /// The key's share epoch.
    epoch: u64,
}

impl Plan {
    /// Validates a start frame against this node's own state.
    pub fn prepare(
        store: &Store,
        start: &SessionStart,
        i: u16,
        guard: &Guard,
        presig_cap: usize,
        fault: Option<crate::reshare::ceremony::DealerFault>,
    ) -> Result<Plan, SessionFailure> {
        if !proto::api::valid_key_id(&start.key_id) {
            return Err(fail("session.invalid", "malformed key id"));
        }
        let n = start.parties.len() as u16;
        match &start.kind {
            SessionKind::Keygen { threshold } => {
                if n < 2 || *threshold < 2 || *threshold > n {
                    return Err(fail(
                        "threshold.invalid",
                        format!("threshold {threshold} of {n} parties is not allowed (need 2 <= t <= n)"),
                    ));
                }
                if store.key_meta(&start.key_id).map_err(store_err)?.is_some() {
                    return Err(fail(
                        "key.exists",
                        format!("key `{}` already exists on this node", start.key_id),
                    ));
                }
                Ok(Plan::Keygen {
                    key_id: start.key_id.clone(),
                    group: start.parties.clone(),
                    t: *threshold,
                    i,
                })
            }
            SessionKind::ReshareAux { order } => {
                let (officers, quorum) = guard.officers();
                order
                    .check(&officers, quorum, guard.now())
                    .map_err(|e| fail(e.code(), e.to_string()))?;
                if order.order.key_id != start.key_id || start.parties != order.order.new_set {
                    return Err(fail(
                        "session.invalid",
                        "aux info for a reshare runs among the order's new guardians of its key",
                    ));
                }
                if order.order.new_set == order.order.old_set {
                    // The group keeps its aux info: a relay that asks again only spends primes.
                    return Err(fail(
                        "session.invalid",
                        "the order keeps the key's guardians, who keep their aux info",
                    ));
                }
                Ok(Plan::Aux {
                    group: start.parties.clone(),
                    i,
                })
            }
            SessionKind::AuxInfo => Ok(Plan::Aux {
                group: start.parties.clone(),
                i,
            }),
            SessionKind::Sign {
                request_id,
                payload,
                part,
                approvals,
                presignature,
                account,
            } => Self::prepare_sign(
                store,
                start,
                i,
                (request_id, payload, *part, account.as_deref()),
                approvals,
                *presignature,
                guard,
            ),
            SessionKind::Reshare { order, dealers } => {
                let roster = session_roster(guard, start)?;
                let keys = peer_keys(&roster, &start.parties)?
                    .into_iter()
                    .map(|k| k.sign)
                    .collect();
                crate::reshare::ceremony::ResharePlan::prepare(
                    store,
                    start,
                    (order, dealers),
                    guard,
                    keys,
                    fault,
                )
                .map(|p| Plan::Reshare(Box::new(p)))
            }
            SessionKind::Presign => {
                let meta = store
                    .key_meta(&start.key_id)
                    .map_err(store_err)?
                    .filter(|m| m.complete)
                    .ok_or_else(|| fail("key.not_ready", "no complete share of this key"))?;
                check_epoch(&meta, start)?;
                Ok(Plan::Presign {
                    epoch: meta.epoch,
                    key_id: start.key_id.clone(),
                    parties: start.parties.clone(),
                    i,
                    keygen_indexes: keygen_indexes(&meta, &start.parties)?,
                    cap: presig_cap,
                })
            }
        }
    }

    fn prepare_sign(
        store: &Store,
        start: &SessionStart,
        i: u16,
        (request_id, payload, part, account): (&str, &SignPayload, u32, Option<&str>),
        approvals: &[proto::authz::Approval],
        presig: Option<proto::presig::PresigId>,
        guard: &Guard,
    ) -> Result<Plan, SessionFailure> {
        if account.is_some() && presig.is_some() {
            // cggmp24 forbids HD derivation with presignatures: derived keys sign fully.
            return Err(fail(
                "presig.hd_forbidden",
                "an account's derived key never signs from a presignature",
            ));
        }
        let req = decode_request(store, &start.key_id, request_id, payload, account)?;
        check_epoch(&req.meta, start)?;
        let keygen_indexes = keygen_indexes(&req.meta, &start.parties)?;
        if part as usize >= req.decoded.parts() {
            return Err(fail(
                "session.invalid",
                format!(
                    "part {part} of a request with {} parts",
                    req.decoded.parts()
                ),
            ));
        }
        let claim = guard.claim_part(request_id, part)?;
        let binding = crate::presig::Binding {
            request_id,
            payload_hash: &req.payload_hash,
            part,
        };
        crate::presig::check_part(
            (store, guard),
            (&start.key_id, req.meta.epoch),
            binding,
            presig,
            &start.parties,
        )?;
        let verdict = guard.judge(request_id, &req, approvals, true);
        if verdict.kind != VerdictKind::Allow {
            return Err(fail(
                verdict.code.as_deref().unwrap_or("policy.refused"),
                format!(
                    "this node's policy does not allow signing now: {}",
                    verdict.message
                ),
            ));
        }
        let pfail = |e: proto::payload::PayloadError| fail(e.code(), e.to_string());
        let preimage = req.decoded.preimage(part as usize).map_err(pfail)?;
        let (pubkey, path) = req.decoded.signer(part as usize).map_err(pfail)?;
        Ok(Plan::Sign(Box::new(SignPlan {
            key_id: start.key_id.clone(),
            request_id: request_id.to_string(),
            i,
            keygen_indexes,
            part,
            digest: preimage.digest(),
            preimage,
            pubkey,
            path,
            request_ctx: req.request_ctx,
            intent: req.intent,
            payload_hash: req.payload_hash,
            presig,
            _claim: claim,
            epoch: req.meta.epoch,
        })))
    }

    /// What this node believes the session computes; all parties must agree on it.
    pub fn context_hash(&self, start: &SessionStart) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"custody/ctx/v1\0");
        h.update(start.key_id.as_bytes());
        h.update([0]);
        h.update(start.epoch.to_be_bytes());
        for p in &start.parties {
            h.update(p.as_bytes());
            h.update([0]);
        }
        match self {
            Plan::Keygen { t, .. } => {
                h.update(b"keygen");
                h.update(t.to_be_bytes());
            }
            Plan::Aux { .. } => h.update(b"aux"),
            Plan::Sign(s) => {
                h.update(b"sign\0");
                h.update(s.request_ctx);
                h.update(s.part.to_be_bytes());
                h.update(s.digest);
                if let Some(id) = &s.presig {
                    h.update(b"presig\0");
                    h.update(id);
                }
                h.update(b"path\0");
                for i in &s.path {
                    h.update(i.to_be_bytes());
                }
            }
            Plan::Presign { .. } => h.update(b"presign"),
            Plan::Reshare(r) => r.context(&mut h),
        }
        h.finalize().into()
    }

    /// Durably binds a signing request id to the whole request as this node decoded it, so the
    /// same id can never be reused for a different transaction (retries of any part are fine).
    pub fn bind(&self, store: &Store) -> Result<(), SessionFailure> {
        let Plan::Sign(s) = self else { return Ok(()) };
        match store
            .bind_request(&s.request_id, &s.request_ctx)
            .map_err(store_err)?
        {
            RequestBinding::Conflict => Err(fail(
                "request.conflict",
                format!(
                    "request `{}` was seen before with a different transaction",
                    s.request_id
                ),
            )),
            RequestBinding::New | RequestBinding::Same => Ok(()),
        }
    }

    /// Runs the protocol. Blocking: call on a blocking thread.
    pub fn execute(
        self,
        store: &Store,
        eid: &[u8; 32],
        early: Vec<RawIncoming>,
        rx: mpsc::Receiver<RawIncoming>,
        out: OutSinkFactory,
        guard: &Guard,
    ) -> Result<SessionOutput, SessionFailure> {
        let ledger_out = out.frames();
        let watch = out.watch();
        let proto_err = |e: String| protocol_failure(&e, &watch);
        match self {
            Plan::Keygen {
                key_id,
                group,
                t,
                i,
            } => {
                let n = group.len() as u16;
                let share =
                    mpc::keygen(eid, i, n, t, out.channels(early, rx)).map_err(proto_err)?;
                finish_keygen(store, &key_id, group, t, share)
            }
            Plan::Aux { group, i } => {
                let n = group.len() as u16;
                let primes = match load_json::<Primes>(store, PRIMES_RECORD)? {
                    Some(p) => p,
                    None => {
                        tracing::info!("no spare Paillier primes; generating (about a minute)");
                        crate::init::generate_primes(None)
                    }
                };
                let aux =
                    mpc::aux_info(eid, i, n, primes, out.channels(early, rx)).map_err(proto_err)?;
                finish_aux(store, group, aux)
            }
            Plan::Presign {
                key_id,
                parties,
                i,
                keygen_indexes,
                cap,
                epoch,
            } => {
                let share: KeyShare = load_json(store, &share_record(&key_id, epoch))?
                    .ok_or_else(|| fail("key.not_found", "key share missing"))?;
                let id = out.session_id();
                let p = mpc::presign(eid, i, &keygen_indexes, &share, out.channels(early, rx))
                    .map_err(proto_err)?;
                drop(share);
                let public = crate::presig::public_of(&p);
                let now = crate::session::unix_now();
                crate::presig::put(store, (&key_id, epoch), &id, &parties, &p, now, cap)?;
                if let Ok(st) = guard.status() {
                    let _ = ledger_out.send(NodeFrame::Status(st));
                }
                Ok(SessionOutput::Presignature(public))
            }
            Plan::Reshare(r) => r.execute(store, early, rx, out, guard),
            Plan::Sign(s) if s.presig.is_some() => s.issue_partial(store, guard, &ledger_out),
            Plan::Sign(s) => {
                let share: KeyShare = load_json(store, &share_record(&s.key_id, s.epoch))?
                    .ok_or_else(|| fail("key.not_found", "key share missing"))?;
                // The library hashes the preimage itself: never a bare digest.
                let data = s.data();
                let rs = mpc::sign(
                    eid,
                    s.i,
                    &s.keygen_indexes,
                    &share,
                    data,
                    &s.path,
                    out.channels(early, rx),
                )
                .map_err(proto_err)?;
                drop(share);
                let (r, sig_s) = split_rs(&rs);
                let sig = proto::sig::verify(&s.pubkey, &s.digest, &r, &sig_s).map_err(|e| {
                    fail(
                        "signature.invalid",
                        format!("combined signature rejected: {e}"),
                    )
                })?;
                let (entry, audited) =
                    guard.record_signed(&s.request_id, s.part, (&s.intent, &s.payload_hash), &sig);
                if let Some(entry) = entry {
                    let _ = ledger_out.send(NodeFrame::Ledger(entry));
                    // Its own head moved: report it, as for a received entry.
                    if let Ok(st) = guard.status() {
                        let _ = ledger_out.send(NodeFrame::Status(st));
                    }
                }
                // No signature leaves this node unaudited (the ledger entry is recorded anyway).
                audited?;
                Ok(SessionOutput::Signature(sig))
            }
        }
    }
}

impl SignPlan {
    /// The data the library signs, built from the preimage this node computed: never a bare
    /// digest (cggmp24 refuses presignature signing without the preimage).
    fn data(&self) -> cggmp24::DataToSign<mpc::E> {
        match &self.preimage {
            Preimage::Keccak(b) => cggmp24::DataToSign::digest::<sha3::Keccak256>(b),
            Preimage::Sha256d(b) => cggmp24::DataToSign::digest::<Sha256>(&Sha256::digest(b)),
        }
    }

    /// Issues this node's partial signature from the named presignature. The presignature is
    /// deleted, marked used and the partial stored with the ledger entry (which names the
    /// presignature) in one durable transaction, and the issue audited, before the partial is
    /// returned; a repeat of the same part with the same presignature returns the stored
    /// partial (audited as resent). A presignature the ledger records as spent on another
    /// message is refused even if this store has forgotten it.
    fn issue_partial(
        self,
        store: &Store,
        guard: &Guard,
        ledger_out: &mpsc::UnboundedSender<NodeFrame>,
    ) -> Result<SessionOutput, SessionFailure> {
        let Some(id) = self.presig else {
            return Err(fail("session.internal", "no presignature named"));
        };
        let record = |kind: &str| {
            guard.audit(
                kind,
                serde_json::json!({"request_id": self.request_id, "key_id": self.key_id,
                                   "part": self.part, "presignature": hex::encode(id)}),
            )
        };
        if let Some(prev) = crate::presig::issued(store, &self.request_id, self.part)? {
            let sigma = crate::presig::parse_sigma(&prev)?;
            record("partial_signature.resent")?;
            return Ok(SessionOutput::Partial { sigma });
        }
        let binding = crate::presig::Binding {
            request_id: &self.request_id,
            payload_hash: &self.payload_hash,
            part: self.part,
        };
        crate::presig::refuse_spent(store, guard, &id, binding)?;
        let presignature = crate::presig::open(store, &self.key_id, &id)?;
        let partial = presignature.issue_partial_signature(self.data());
        let sigma = crate::presig::sigma_bytes(&partial);
        let issued = crate::presig::IssuedPartial {
            presig: hex::encode(id),
            sigma: hex::encode(sigma),
        };
        let (also, unseal) = crate::presig::consume_items(
            &self.key_id,
            &id,
            &self.request_id,
            self.part,
            &issued,
            guard.now(),
        )?;
        // The partial leaves only if this transaction consumed the presignature: a concurrent
        // session that named it (another request, another part) finds it gone and gets nothing.
        let entry = guard
            .record_spend(
                &self.request_id,
                (&self.intent, &self.payload_hash),
                Some((id, self.part)),
                also,
                &unseal,
            )
            .map_err(|e| match e {
                crate::store::StoreError::Missing(_) => crate::presig::used_failure(&id),
                e => store_err(e),
            })?;
        if let Some(entry) = entry {
            let _ = ledger_out.send(NodeFrame::Ledger(entry));
            if let Ok(st) = guard.status() {
                let _ = ledger_out.send(NodeFrame::Status(st));
            }
        }
        // The partial leaves only once audited; unaudited, it stays stored and a retry of this
        // part resends it (audited then).
        record("partial_signature")?;
        Ok(SessionOutput::Partial { sigma })
    }
}

/// A signing or presigning session must run in the key's active share epoch here: a node
/// that activated a new epoch refuses old-epoch sessions, and one that has not refuses new ones.
fn check_epoch(meta: &KeyMeta, start: &SessionStart) -> Result<(), SessionFailure> {
    if meta.epoch != start.epoch {
        return Err(fail(
            "session.epoch",
            format!(
                "the session runs in share epoch {} but this node's share of `{}` is of epoch {}",
                start.epoch, meta.key_id, meta.epoch
            ),
        ));
    }
    Ok(())
}

/// The roster for a session: this node's own, plus, for a redistribution, the new guardians'
/// identities from the officers' order (checked against the pinned officers first; a new peer
/// is never taken on the coordinator's word). An ordered identity that contradicts the
/// node's roster is refused.
pub fn session_roster(guard: &Guard, start: &SessionStart) -> Result<Roster, SessionFailure> {
    let roster = guard.peers()?;
    let order = match &start.kind {
        SessionKind::Reshare { order, .. } | SessionKind::ReshareAux { order } => order,
        _ => return Ok(roster),
    };
    let (officers, quorum) = guard.officers();
    order
        .check_authority(&officers, quorum)
        .map_err(|e| fail(e.code(), e.to_string()))?;
    roster
        .with_identities(&order.order.identities)
        .map_err(|e| fail("reshare.order_identity", e))
}

/// The keygen indexes of a session's parties (exactly t, each holding a share).
fn keygen_indexes(meta: &KeyMeta, parties: &[String]) -> Result<Vec<u16>, SessionFailure> {
    if parties.len() != meta.threshold as usize {
        return Err(fail(
            "session.invalid",
            format!("signing needs exactly {} parties", meta.threshold),
        ));
    }
    parties
        .iter()
        .map(|p| {
            meta.group
                .iter()
                .position(|g| g == p)
                .map(|x| x as u16)
                .ok_or_else(|| {
                    fail(
                        "session.invalid",
                        format!("`{p}` holds no share of this key"),
                    )
                })
        })
        .collect()
}

/// A failed protocol run as a stable code with the parties to blame: the round deadline's
/// laggards, or the culprits cggmp24 names in its error.
fn protocol_failure(debug: &str, watch: &mpc::RoundWatch) -> SessionFailure {
    if let Some(f) = watch.deadline_failure() {
        return f;
    }
    let (code, culprits) = mpc::classify_failure(debug);
    let blame: Vec<String> = culprits
        .iter()
        .filter_map(|j| watch.parties.get(*j as usize).cloned())
        .collect();
    let message = match code {
        "signature.invalid" => {
            "the combined signature does not verify: a party sent a bad partial signature"
                .to_string()
        }
        _ => debug.to_string(),
    };
    let mut f = fail(code, message);
    f.blame = blame;
    f
}

fn split_rs(rs: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&rs[..32]);
    s.copy_from_slice(&rs[32..]);
    (r, s)
}

fn finish_keygen(
    store: &Store,
    key_id: &str,
    group: Vec<String>,
    t: u16,
    share: IncompleteKeyShare,
) -> Result<SessionOutput, SessionFailure> {
    let public_key = share.shared_public_key.to_bytes(true).as_bytes().to_vec();
    let chain_code = share.chain_code.map(|c| c.to_vec()).unwrap_or_default();
    let aux: Option<AuxInfo> = load_json(store, &aux_record(&group))?;
    let mut meta = KeyMeta {
        key_id: key_id.to_string(),
        group,
        threshold: t,
        public_key: public_key.clone(),
        complete: false,
        chain_code: chain_code.clone(),
        epoch: 0,
        pending: None,
        since: 0,
    };
    match aux {
        Some(aux) => complete_share(store, &mut meta, share, aux, &[])?,
        None => {
            let bytes = secret_json(&share)?;
            store
                .commit_key(
                    &meta,
                    (&incomplete_record(key_id), bytes.expose_secret()),
                    &[],
                )
                .map_err(store_err)?;
        }
    }
    Ok(SessionOutput::Keygen {
        public_key,
        chain_code,
        complete: meta.complete,
    })
}

/// Completes a share with aux info and stores it (atomically removing `remove` records).
fn complete_share(
    store: &Store,
    meta: &mut KeyMeta,
    share: IncompleteKeyShare,
    aux: AuxInfo,
    remove: &[&str],
) -> Result<(), SessionFailure> {
    let full = KeyShare::from_parts((share, aux)).map_err(|_| {
        fail(
            "session.protocol",
            "key share and aux info do not fit together",
        )
    })?;
    meta.complete = true;
    meta.since = crate::session::unix_now();
    let bytes = secret_json(&full)?;
    store
        .commit_key(
            meta,
            (
                &share_record(&meta.key_id, meta.epoch),
                bytes.expose_secret(),
            ),
            remove,
        )
        .map_err(store_err)
}

fn finish_aux(
    store: &Store,
    group: Vec<String>,
    aux: AuxInfo,
) -> Result<SessionOutput, SessionFailure> {
    let bytes = secret_json(&aux)?;
    store
        .put_secret(&aux_record(&group), bytes.expose_secret())
        .map_err(store_err)?;
    store.delete_secret(PRIMES_RECORD).map_err(store_err)?;
    for mut meta in store.key_metas().map_err(store_err)? {
        if meta.complete || meta.group != group {
            continue;
        }
        let rec = incomplete_record(&meta.key_id);
        let Some(share) = load_json::<IncompleteKeyShare>(store, &rec)? else {
            continue;
        };
        complete_share(store, &mut meta, share, aux.clone(), &[&rec])?;
    }
    Ok(SessionOutput::AuxInfo)
}
