//! Refresh and reshare ceremonies (`docs/lifecycle.md`): the coordinator picks the dealers,
//! runs the redistribution session, builds the activation certificate from the new guardians'
//! signed confirmations, stores it durably, and then delivers it to every node (and again to
//! every node that connects). It holds no secret and cannot activate anything on its own: each
//! node checks the officers' order and every confirmation itself.

use std::{sync::Arc, time::Duration};

use proto::{
    api::{CeremonyPhase, CeremonyView},
    lifecycle::{session_parties, Activation, SignedMembershipOrder},
    wire::{CoordFrame, SessionFailure, SessionKind, SessionOutput},
};

use crate::{
    orchestrator::{failure_to_api, internal, Orchestrator},
    store::KeyRecord,
};

pub mod schedule;

/// The view of a ceremony that has just been accepted.
pub fn starting(order: &SignedMembershipOrder) -> CeremonyView {
    let o = &order.order;
    CeremonyView {
        kind: o.kind,
        epoch: o.epoch + 1,
        phase: CeremonyPhase::Dealing,
        guardians: o.new_set.clone(),
        threshold: o.new_threshold,
        dealers: vec![],
        progress: Default::default(),
        error: None,
        blamed: vec![],
        started_at: crate::control::unix_now(),
        scheduled: o.scheduled,
    }
}

/// Why a ceremony cannot start now.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The key is not ready, a ceremony is running, or the order is stale (HTTP 409).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The order's old set is not the key's guardians (HTTP 422).
    #[error("{0}")]
    Set(String),
    /// No such key.
    #[error("no such key")]
    NoKey,
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

impl Orchestrator {
    /// Marks the key's ceremony as started by `order`, unless the key is not ready, a ceremony
    /// of it is still running, or the order does not start from the key as it is: the one
    /// check both the API and the refresh schedule make before
    /// [`Orchestrator::change_membership`].
    pub fn claim_ceremony(&self, order: &SignedMembershipOrder) -> Result<KeyRecord, ClaimError> {
        let o = &order.order;
        let mut refused: Option<ClaimError> = None;
        let updated = self
            .store
            .update_key(&o.key_id, |k| {
                let conflict = |code, message| Some(ClaimError::Conflict { code, message });
                if k.info.status != proto::api::KeyStatus::Ready {
                    refused = conflict("key.not_ready", "the key is not ready".into());
                } else if k.info.ceremony.as_ref().is_some_and(|c| {
                    matches!(c.phase, CeremonyPhase::Dealing | CeremonyPhase::Activating)
                }) {
                    refused = conflict(
                        "reshare.in_progress",
                        "a ceremony of this key is still running".into(),
                    );
                } else if o.epoch != k.info.epoch {
                    refused = conflict(
                        "reshare.order_epoch",
                        format!(
                            "the order starts from epoch {} but the key is in epoch {}",
                            o.epoch, k.info.epoch
                        ),
                    );
                } else if o.old_set != k.info.nodes {
                    refused = Some(ClaimError::Set(format!(
                        "the order's old set {:?} is not the key's guardians {:?}",
                        o.old_set, k.info.nodes
                    )));
                } else {
                    k.info.ceremony = Some(starting(order));
                }
            })
            .map_err(|e| ClaimError::Store(e.to_string()))?;
        let rec = updated.ok_or(ClaimError::NoKey)?;
        match refused {
            Some(f) => Err(f),
            None => Ok(rec),
        }
    }
}

/// Failure codes after which the ceremony is retried once with other dealers (the named ones
/// left out).
const DEALER_FAULTS: &[&str] = &[
    "reshare.dealer_share",
    "reshare.dealer_constant",
    "reshare.dealer_equivocation",
    "reshare.dealer_key",
];

impl Orchestrator {
    /// Runs a refresh or reshare ordered by the officers; the key record's `ceremony` shows
    /// its progress. Never leaves the key without a signing epoch: until the certificate is
    /// stored, the old epoch stays active everywhere.
    pub async fn change_membership(self: Arc<Self>, order: SignedMembershipOrder) {
        let key_id = order.order.key_id.clone();
        let mut excluded: Vec<String> = Vec::new();
        let mut outcome = self.new_group_aux(&order).await;
        for _attempt in 0..2 {
            if outcome.is_err() && excluded.is_empty() {
                break;
            }
            outcome = self.attempt(&order, &excluded).await;
            match &outcome {
                Err(f) if DEALER_FAULTS.contains(&f.code.as_str()) && !f.blame.is_empty() => {
                    tracing::warn!(key = %key_id, code = %f.code, blame = ?f.blame, "a dealer cheated; retrying without it");
                    self.control.record(
                        "reshare.dealer_excluded",
                        serde_json::json!({"key_id": key_id, "code": f.code, "blame": f.blame}),
                    );
                    let _ = self.store.update_key(&key_id, |k| {
                        if let Some(c) = k.info.ceremony.as_mut() {
                            c.blamed.extend(f.blame.iter().cloned());
                        }
                    });
                    excluded.extend(f.blame.iter().cloned());
                }
                _ => break,
            }
        }
        let kind = order.order.kind;
        match outcome {
            Ok(()) => self.faults.reshare_ended(kind, "activated"),
            Err(f) => {
                self.faults.reshare_ended(kind, "failed");
                tracing::warn!(key = %key_id, code = %f.code, message = %f.message, "membership ceremony failed; the old epoch keeps signing");
                self.control.record(
                    "reshare.failed",
                    serde_json::json!({"key_id": key_id, "code": f.code, "blame": f.blame}),
                );
                let _ = self.store.update_key(&key_id, |k| {
                    if let Some(c) = k.info.ceremony.as_mut() {
                        c.phase = CeremonyPhase::Failed;
                        c.error = Some(failure_to_api(&f));
                        for b in &f.blame {
                            if !c.blamed.contains(b) {
                                c.blamed.push(b.clone());
                            }
                        }
                    }
                });
            }
        }
    }

    /// Aux info (Paillier keys, ring-Pedersen parameters) for a new guardian set, run among
    /// its members before the redistribution; an unchanged group keeps its aux info.
    async fn new_group_aux(&self, order: &SignedMembershipOrder) -> Result<(), SessionFailure> {
        let o = &order.order;
        if o.new_set == o.old_set {
            return Ok(());
        }
        if let Some(absent) = o.new_set.iter().find(|n| !self.registry.is_connected(n)) {
            return Err(SessionFailure {
                code: "nodes.unavailable".into(),
                message: format!("new guardian `{absent}` is not connected"),
                blame: vec![absent.clone()],
            });
        }
        self.ceremony_session(
            &o.key_id,
            &o.new_set,
            SessionKind::ReshareAux {
                order: order.clone(),
            },
            Duration::from_secs(self.limits.aux_timeout_secs),
        )
        .await
        .map(|_| ())
    }

    /// Runs one session of a ceremony and shows every party's refusal in its progress.
    async fn ceremony_session(
        &self,
        key_id: &str,
        parties: &[String],
        kind: SessionKind,
        timeout: Duration,
    ) -> Result<Vec<(String, SessionOutput)>, SessionFailure> {
        let mut refusals = Vec::new();
        let result = self
            .run_session_reporting(key_id, parties, kind, timeout, Some(&mut refusals))
            .await;
        let _ = self.store.update_key(key_id, |k| {
            if let Some(c) = k.info.ceremony.as_mut() {
                for (node, f) in &refusals {
                    c.progress.insert(node.clone(), f.code.clone());
                }
            }
        });
        result.map(|(_, outs)| outs)
    }

    async fn attempt(
        &self,
        order: &SignedMembershipOrder,
        excluded: &[String],
    ) -> Result<(), SessionFailure> {
        let o = &order.order;
        let rec = self
            .store
            .key(&o.key_id)
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(|| internal("the key is gone".into()))?;
        let t = usize::from(rec.info.threshold);
        let dealers: Vec<String> = rec
            .info
            .nodes
            .iter()
            .filter(|n| !excluded.contains(n) && self.registry.is_connected(n))
            .take(t)
            .cloned()
            .collect();
        let absent: Vec<String> = o
            .new_set
            .iter()
            .filter(|n| !self.registry.is_connected(n))
            .cloned()
            .collect();
        if dealers.len() < t || !absent.is_empty() {
            return Err(SessionFailure {
                code: "nodes.unavailable".into(),
                message: format!(
                    "a reshare needs {t} connected old guardians as dealers (found {}) and every new guardian connected (missing: {})",
                    dealers.len(),
                    absent.join(", ")
                ),
                blame: absent,
            });
        }
        let _ = self.store.update_key(&o.key_id, |k| {
            if let Some(c) = k.info.ceremony.as_mut() {
                c.dealers = dealers.clone();
                c.progress.clear();
            }
        });
        let parties = session_parties(&dealers, &o.new_set);
        let outs = self
            .ceremony_session(
                &o.key_id,
                &parties,
                SessionKind::Reshare {
                    order: order.clone(),
                    dealers: dealers.clone(),
                },
                Duration::from_secs(self.limits.keygen_timeout_secs),
            )
            .await?;
        let activation = certificate(order, &outs)?;
        self.activate(rec, activation).await
    }

    /// Stores the certificate durably (the coordinator signs in the new epoch from here on),
    /// empties the key's presignature pool, and delivers the certificate to every node.
    async fn activate(&self, _before: KeyRecord, a: Activation) -> Result<(), SessionFailure> {
        let o = a.order.order.clone();
        let stored = self
            .store
            .update_key(&o.key_id, |k| {
                k.info.epoch = a.epoch();
                k.epoch_since = Some(crate::control::unix_now());
                k.info.nodes = o.new_set.clone();
                k.info.threshold = o.new_threshold;
                k.activation = Some(a.clone());
                if let Some(c) = k.info.ceremony.as_mut() {
                    c.phase = CeremonyPhase::Activating;
                    for g in &o.new_set {
                        c.progress.insert(g.clone(), "stored".into());
                    }
                }
            })
            .map_err(|e| internal(format!("cannot store the activation certificate: {e}")))?;
        if stored.is_none() {
            return Err(internal("the key is gone".into()));
        }
        let dropped = self.store.drop_presigs(&o.key_id).unwrap_or(0);
        self.control.record(
            "reshare.certified",
            serde_json::json!({"key_id": o.key_id, "epoch": a.epoch(), "guardians": o.new_set,
                "threshold": o.new_threshold, "pool_presignatures_deleted": dropped}),
        );
        let mut everyone = o.old_set.clone();
        everyone.extend(o.new_set.iter().filter(|g| !o.old_set.contains(g)).cloned());
        for node in everyone {
            self.registry
                .send(&node, CoordFrame::Activate(Box::new(a.clone())));
            // A new guardian registers the key's accounts after activating (in order on its
            // link), as every node does for its keys when it connects.
            if !o.old_set.contains(&node) {
                for batch in self
                    .control
                    .account_batches(&node)
                    .chunks(proto::wire::ACCOUNT_BATCH)
                {
                    self.registry
                        .send(&node, CoordFrame::Accounts(batch.to_vec()));
                }
            }
        }
        Ok(())
    }

    /// After a restart: a ceremony still dealing cannot resume (the old epoch stays active
    /// and a new order is needed); one with a stored certificate is delivered on connect.
    pub fn resume_ceremonies(&self) {
        let Ok(keys) = self.store.keys() else { return };
        for k in keys {
            if k.info
                .ceremony
                .as_ref()
                .is_some_and(|c| c.phase == CeremonyPhase::Dealing)
            {
                let _ = self.store.update_key(&k.info.key_id, |k| {
                    if let Some(c) = k.info.ceremony.as_mut() {
                        c.phase = CeremonyPhase::Failed;
                        c.error = Some(crate::store::api_error(
                            "ceremony.interrupted",
                            "the coordinator restarted while dealing; the old epoch keeps signing; post the order again (or a new one)",
                        ));
                    }
                });
            }
        }
    }
}

/// The activation certificate from the session's outputs: every party agreed on the same
/// commitments and every new guardian confirmed.
fn certificate(
    order: &SignedMembershipOrder,
    outs: &[(String, SessionOutput)],
) -> Result<Activation, SessionFailure> {
    let o = &order.order;
    let mut agreed: Option<Vec<u8>> = None;
    let mut confirmations = std::collections::BTreeMap::new();
    for (node, out) in outs {
        let SessionOutput::Reshared {
            epoch,
            commitments,
            confirmation,
        } = out
        else {
            return Err(internal(format!("node `{node}` reported another output")));
        };
        if *epoch != o.epoch + 1 || agreed.as_ref().is_some_and(|a| a != commitments) {
            return Err(SessionFailure {
                code: "reshare.disagreement".into(),
                message: format!("node `{node}` reports another epoch or other commitments"),
                blame: vec![node.clone()],
            });
        }
        agreed = Some(commitments.clone());
        if let Some(sig) = confirmation {
            confirmations.insert(node.clone(), sig.clone());
        }
    }
    if let Some(missing) = o.new_set.iter().find(|g| !confirmations.contains_key(*g)) {
        return Err(SessionFailure {
            code: "reshare.unconfirmed".into(),
            message: format!("new guardian `{missing}` did not confirm its share"),
            blame: vec![missing.clone()],
        });
    }
    Ok(Activation {
        order: order.clone(),
        commitments: agreed.unwrap_or_default(),
        confirmations,
    })
}

/// A node's answer to an activation: progress, and `active` once every new guardian did.
pub fn on_activated(
    store: &crate::store::Store,
    node: &str,
    key_id: &str,
    epoch: u64,
    ok: Result<(), String>,
) {
    let _ = store.update_key(key_id, |k| {
        let Some(c) = k.info.ceremony.as_mut() else {
            return;
        };
        if c.epoch != epoch {
            return;
        }
        let done = match &ok {
            Ok(()) => "activated".to_string(),
            Err(code) => code.clone(),
        };
        c.progress.insert(node.to_string(), done);
        let all = c
            .guardians
            .iter()
            .all(|g| c.progress.get(g).map(String::as_str) == Some("activated"));
        if all && c.phase == CeremonyPhase::Activating {
            c.phase = CeremonyPhase::Active;
        }
    });
}
