//! Key lifecycle: the officers' membership order (refresh or reshare) and the certificate that
//! activates a new share epoch (`docs/lifecycle.md`). Pure types and checks: every node runs
//! [`SignedMembershipOrder::check`] itself against the officers pinned in its own config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::authz::OfficerSignature;

/// Refresh (same guardians, same threshold) or reshare (new guardians and/or threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MembershipKind {
    /// Fresh shares of the same secret for the same guardians and threshold.
    Refresh,
    /// Shares for a new guardian set and/or threshold.
    Reshare,
}

/// A new guardian's public identity, as the officers saw it (fingerprints compared out of band).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GuardianIdentity {
    /// Ed25519 envelope-signing key, hex.
    pub sign_key: String,
    /// X25519 encryption key, hex.
    pub dh_key: String,
}

/// What the officers order: the key, the share epoch it starts from, the old and new guardian
/// sets, the new threshold and the identities of guardians new to the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MembershipOrder {
    /// The key.
    pub key_id: String,
    /// The share epoch the order starts from (the key's active epoch); it creates `epoch + 1`.
    pub epoch: u64,
    /// Refresh or reshare.
    pub kind: MembershipKind,
    /// The key's guardians now, in share index order.
    pub old_set: Vec<String>,
    /// The guardians after the change, in their new share index order.
    pub new_set: Vec<String>,
    /// t'.
    pub new_threshold: u16,
    /// Identity keys of every guardian in `new_set` that is not in `old_set`.
    #[serde(default)]
    pub identities: BTreeMap<String, GuardianIdentity>,
    /// The order is void at and after this time (unix seconds).
    pub not_after: u64,
    /// A refresh the signed policy schedules (`refresh_every`), made by the coordinator and
    /// signed by no officer: every node accepts it only as a plain refresh of its own key, due
    /// by its own record of when the key's epoch activated ([`MembershipOrder::check_due`]).
    /// Absent from the encoding (and the digest) when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub scheduled: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The longest a scheduled order may live: the coordinator cannot keep one for later.
pub const SCHEDULED_TTL_SECS: u64 = 900;

/// How long after its due time a scheduled refresh that has not activated counts as overdue:
/// a tenth of the period, between 5 seconds and a day.
pub fn refresh_grace(every: u64) -> u64 {
    (every / 10).clamp(5, 86_400)
}

/// How early a node accepts a scheduled refresh (clock skew between it and the coordinator):
/// a tenth of the period, at most five minutes.
pub fn schedule_slack(every: u64) -> u64 {
    (every / 10).min(300)
}

/// A membership order with the officers' signatures over [`MembershipOrder::digest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedMembershipOrder {
    /// The order.
    pub order: MembershipOrder,
    /// Officer signatures.
    pub signatures: Vec<OfficerSignature>,
}

/// Why an order is refused. Codes are stable (`reshare.order_*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Too few valid signatures of pinned officers.
    #[error("{valid} valid officer signature(s); a membership order needs {needed}")]
    Quorum {
        /// Valid distinct signatures of pinned officers.
        valid: usize,
        /// The pinned quorum.
        needed: usize,
    },
    /// `not_after` has passed.
    #[error("the order expired at {not_after} (now {now})")]
    Expired {
        /// The order's `not_after`.
        not_after: u64,
        /// This node's clock.
        now: u64,
    },
    /// The order names an epoch that is not the key's active one.
    #[error("the order starts from epoch {order} but the key is in epoch {key}")]
    Epoch {
        /// The order's epoch.
        order: u64,
        /// The key's active epoch here.
        key: u64,
    },
    /// The sets are malformed or do not match the key.
    #[error("bad guardian sets: {0}")]
    Set(String),
    /// `t'` is outside `2..=n'`.
    #[error("threshold {t} is not between 2 and the {n} new guardians")]
    Threshold {
        /// t'.
        t: u16,
        /// n'.
        n: usize,
    },
    /// A new guardian's identity is missing, malformed or differs from the pinned one.
    #[error("guardian identity: {0}")]
    Identity(String),
    /// A scheduled order that the policy does not schedule, or that is more than a plain
    /// refresh of the key as it is.
    #[error("not a scheduled refresh: {0}")]
    NotScheduled(String),
    /// A scheduled refresh before it is due.
    #[error("the key's next scheduled refresh is due at {due} (now {now})")]
    NotDue {
        /// When this node's record of the epoch plus the policy's `refresh_every` falls due.
        due: u64,
        /// This node's clock.
        now: u64,
    },
}

impl OrderError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            OrderError::Quorum { .. } => "reshare.order_quorum",
            OrderError::Expired { .. } => "reshare.order_expired",
            OrderError::Epoch { .. } => "reshare.order_epoch",
            OrderError::Set(_) => "reshare.order_set",
            OrderError::Threshold { .. } => "reshare.order_threshold",
            OrderError::Identity(_) => "reshare.order_identity",
            OrderError::NotScheduled(_) => "reshare.not_scheduled",
            OrderError::NotDue { .. } => "reshare.not_due",
        }
    }
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

fn distinct(set: &[String]) -> bool {
    let mut v: Vec<&String> = set.iter().collect();
    v.sort();
    v.dedup();
    v.len() == set.len()
}

impl MembershipOrder {
    /// What each officer signs: SHA-256 over a domain tag and the order's CBOR encoding.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"custody/membership-order/v1\0");
        h.update(crate::wire::encode(self).unwrap_or_default());
        h.finalize().into()
    }

    /// The shape checks that need no key state: sets, threshold, identities, refresh rules.
    pub fn check_shape(&self) -> Result<(), OrderError> {
        if !crate::api::valid_key_id(&self.key_id) {
            return Err(OrderError::Set("malformed key id".into()));
        }
        if self.old_set.is_empty() || self.new_set.is_empty() {
            return Err(OrderError::Set("a set is empty".into()));
        }
        if !distinct(&self.old_set) || !distinct(&self.new_set) {
            return Err(OrderError::Set("a guardian is listed twice".into()));
        }
        let n = self.new_set.len();
        if self.new_threshold < 2 || usize::from(self.new_threshold) > n {
            return Err(OrderError::Threshold {
                t: self.new_threshold,
                n,
            });
        }
        if self.kind == MembershipKind::Refresh && self.old_set != self.new_set {
            return Err(OrderError::Set(
                "a refresh keeps the same guardians in the same order".into(),
            ));
        }
        for g in &self.new_set {
            let new = !self.old_set.contains(g);
            match (new, self.identities.get(g)) {
                (true, None) => {
                    return Err(OrderError::Identity(format!(
                        "new guardian `{g}` has no identity in the order"
                    )))
                }
                (false, Some(_)) => {
                    return Err(OrderError::Identity(format!(
                        "`{g}` already guards the key; its identity is pinned, not ordered"
                    )))
                }
                (true, Some(id))
                    if hex32(&id.sign_key).is_none() || hex32(&id.dh_key).is_none() =>
                {
                    return Err(OrderError::Identity(format!(
                        "`{g}`: keys must be 32 bytes of hex"
                    )))
                }
                _ => {}
            }
        }
        if let Some(extra) = self.identities.keys().find(|k| !self.new_set.contains(k)) {
            return Err(OrderError::Identity(format!(
                "identity for `{extra}`, who is not in the new set"
            )));
        }
        Ok(())
    }
}

impl MembershipOrder {
    /// What a scheduled order may be: a refresh (same guardians, same order), naming no new
    /// identity. The threshold is checked against the key by [`MembershipOrder::check_due`].
    fn check_scheduled_shape(&self) -> Result<(), OrderError> {
        if self.kind != MembershipKind::Refresh || self.old_set != self.new_set {
            return Err(OrderError::NotScheduled(
                "only a refresh of the same guardians is ever scheduled".into(),
            ));
        }
        if !self.identities.is_empty() {
            return Err(OrderError::NotScheduled(
                "a scheduled refresh names no identity".into(),
            ));
        }
        Ok(())
    }

    /// A scheduled refresh checked against this node's own state: the policy it runs sets
    /// `every` (its `refresh_every` for the key), the key's threshold stays `threshold`, and the
    /// epoch this node activated at `since` is due (`since + every`, less the clock slack).
    /// An order signed by officers is not scheduled and passes.
    pub fn check_due(
        &self,
        every: Option<u64>,
        since: u64,
        threshold: u16,
        now: u64,
    ) -> Result<(), OrderError> {
        if !self.scheduled {
            return Ok(());
        }
        let Some(every) = every else {
            return Err(OrderError::NotScheduled(format!(
                "the policy in force sets no `refresh_every` for key `{}`",
                self.key_id
            )));
        };
        if self.new_threshold != threshold {
            return Err(OrderError::NotScheduled(format!(
                "a scheduled refresh keeps the threshold {threshold}, not {}",
                self.new_threshold
            )));
        }
        let due = since.saturating_add(every);
        if now.saturating_add(schedule_slack(every)) < due {
            return Err(OrderError::NotDue { due, now });
        }
        Ok(())
    }
}

impl SignedMembershipOrder {
    /// Checks the order as a node does: shape, expiry and its authority (the pinned officers'
    /// quorum, or for a scheduled refresh its shape and a short life). The key's epoch and
    /// guardian set, and whether a scheduled refresh is due, are checked by the caller against
    /// its own store and policy.
    pub fn check(&self, officers: &[[u8; 32]], quorum: usize, now: u64) -> Result<(), OrderError> {
        self.order.check_shape()?;
        if now >= self.order.not_after {
            return Err(OrderError::Expired {
                not_after: self.order.not_after,
                now,
            });
        }
        if self.order.scheduled && self.order.not_after > now.saturating_add(SCHEDULED_TTL_SECS) {
            return Err(OrderError::NotScheduled(format!(
                "a scheduled order lives at most {SCHEDULED_TTL_SECS} s"
            )));
        }
        self.check_authority(officers, quorum)
    }

    /// Who ordered it, without the clock (an activation is checked after the order expired):
    /// the pinned officers' quorum, or for a scheduled order the shape of a plain refresh (every
    /// guardian checked that it was due before it confirmed its share).
    pub fn check_authority(&self, officers: &[[u8; 32]], quorum: usize) -> Result<(), OrderError> {
        if self.order.scheduled {
            return self.order.check_scheduled_shape();
        }
        self.check_quorum(officers, quorum)
    }

    /// The pinned officers' quorum alone.
    fn check_quorum(&self, officers: &[[u8; 32]], quorum: usize) -> Result<(), OrderError> {
        let digest = self.order.digest();
        let mut valid: Vec<[u8; 32]> = self
            .signatures
            .iter()
            .filter(|s| officers.contains(&s.officer))
            .filter(|s| verify_ed25519(&s.officer, &digest, &s.signature))
            .map(|s| s.officer)
            .collect();
        valid.sort();
        valid.dedup();
        if quorum == 0 || valid.len() < quorum {
            return Err(OrderError::Quorum {
                valid: valid.len(),
                needed: quorum,
            });
        }
        Ok(())
    }

    /// Checks the order against the key as this node holds it: epoch and old set.
    pub fn check_key(&self, epoch: u64, group: &[String]) -> Result<(), OrderError> {
        if self.order.epoch != epoch {
            return Err(OrderError::Epoch {
                order: self.order.epoch,
                key: epoch,
            });
        }
        if self.order.old_set != group {
            return Err(OrderError::Set(format!(
                "the order's old set {:?} is not the key's guardians {:?}",
                self.order.old_set, group
            )));
        }
        Ok(())
    }
}

fn verify_ed25519(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    use ed25519_dalek::Verifier;
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
        return false;
    };
    vk.verify(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

/// The parties of a redistribution session: the dealers, then the new guardians who are not
/// dealers, in the order's order (the coordinator builds it, every node checks it).
pub fn session_parties(dealers: &[String], new_set: &[String]) -> Vec<String> {
    let mut parties = dealers.to_vec();
    parties.extend(new_set.iter().filter(|g| !dealers.contains(g)).cloned());
    parties
}

/// What a new guardian signs once its pending share of `epoch` is durable: the order, the
/// agreed commitments and its own id.
pub fn stored_digest(
    order: &[u8; 32],
    epoch: u64,
    commitments: &[u8; 32],
    node_id: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"custody/share-stored/v1\0");
    h.update(order);
    h.update(epoch.to_be_bytes());
    h.update(commitments);
    h.update((node_id.len() as u64).to_be_bytes());
    h.update(node_id.as_bytes());
    h.finalize().into()
}

/// Activates epoch `order.epoch + 1`: the order and every new guardian's signed confirmation
/// that it stored its share of the agreed commitments. Each node checks it itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// The officers' order.
    pub order: SignedMembershipOrder,
    /// Hash of the dealers' commitments every party agreed on.
    #[serde(with = "crate::wire::serde_bytes_vec")]
    pub commitments: Vec<u8>,
    /// Per new guardian: its Ed25519 signature over [`stored_digest`].
    pub confirmations: BTreeMap<String, Vec<u8>>,
}

impl Activation {
    /// The epoch this activates.
    pub fn epoch(&self) -> u64 {
        self.order.order.epoch + 1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn order() -> MembershipOrder {
        MembershipOrder {
            key_id: "k".into(),
            epoch: 0,
            kind: MembershipKind::Refresh,
            old_set: vec!["node-1".into(), "node-2".into(), "node-3".into()],
            new_set: vec!["node-1".into(), "node-2".into(), "node-3".into()],
            new_threshold: 2,
            identities: BTreeMap::new(),
            not_after: 1000,
            scheduled: false,
        }
    }

    fn signed(o: MembershipOrder, keys: &[&SigningKey]) -> SignedMembershipOrder {
        let d = o.digest();
        SignedMembershipOrder {
            signatures: keys
                .iter()
                .map(|k| OfficerSignature {
                    officer: k.verifying_key().to_bytes(),
                    signature: k.sign(&d).to_bytes(),
                })
                .collect(),
            order: o,
        }
    }

    #[test]
    fn orders_are_refused_with_the_code_that_names_the_fault() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let officers = [a.verifying_key().to_bytes(), b.verifying_key().to_bytes()];
        let code = |o: &SignedMembershipOrder| o.check(&officers, 2, 10).err().map(|e| e.code());
        assert_eq!(code(&signed(order(), &[&a, &b])), None);
        assert_eq!(code(&signed(order(), &[&a])), Some("reshare.order_quorum"));
        assert_eq!(
            code(&signed(order(), &[&a, &a])),
            Some("reshare.order_quorum")
        );
        let mut forged = signed(order(), &[&a, &b]);
        forged.order.new_threshold = 3;
        assert_eq!(
            code(&forged),
            Some("reshare.order_quorum"),
            "a changed order"
        );
        let mut o = order();
        o.new_threshold = 4;
        assert_eq!(code(&signed(o, &[&a, &b])), Some("reshare.order_threshold"));
        let mut o = order();
        o.new_set.pop();
        assert_eq!(code(&signed(o, &[&a, &b])), Some("reshare.order_set"));
        let mut o = order();
        o.kind = MembershipKind::Reshare;
        o.new_set[2] = "node-4".into();
        assert_eq!(
            code(&signed(o.clone(), &[&a, &b])),
            Some("reshare.order_identity")
        );
        o.identities.insert(
            "node-4".into(),
            GuardianIdentity {
                sign_key: hex::encode([7; 32]),
                dh_key: hex::encode([8; 32]),
            },
        );
        assert_eq!(code(&signed(o, &[&a, &b])), None);
        let mut o = order();
        o.not_after = 10;
        assert_eq!(code(&signed(o, &[&a, &b])), Some("reshare.order_expired"));
        let s = signed(order(), &[&a, &b]);
        assert_eq!(
            s.check_key(1, &order().old_set).err().map(|e| e.code()),
            Some("reshare.order_epoch")
        );
        assert_eq!(
            s.check_key(0, &order().old_set[..2])
                .err()
                .map(|e| e.code()),
            Some("reshare.order_set")
        );
    }

    #[test]
    fn a_scheduled_refresh_is_only_a_plain_refresh_when_due() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let officers = [a.verifying_key().to_bytes()];
        let mut o = order();
        o.scheduled = true;
        o.not_after = 600;
        let unsigned = signed(o.clone(), &[]);
        let code =
            |s: &SignedMembershipOrder, now| s.check(&officers, 1, now).err().map(|e| e.code());
        assert_eq!(
            code(&unsigned, 10),
            None,
            "no officer signs a scheduled refresh"
        );
        let mut plain = o.clone();
        plain.scheduled = false;
        assert_ne!(
            plain.digest(),
            o.digest(),
            "`scheduled` is part of the digest"
        );
        assert_eq!(
            code(&signed(plain, &[]), 10),
            Some("reshare.order_quorum"),
            "without the flag, an unsigned order is refused"
        );
        assert_eq!(code(&unsigned, 600), Some("reshare.order_expired"));
        let mut long = o.clone();
        long.not_after = 10 + SCHEDULED_TTL_SECS + 1;
        assert_eq!(code(&signed(long, &[]), 10), Some("reshare.not_scheduled"));
        let mut reshare = o.clone();
        reshare.kind = MembershipKind::Reshare;
        reshare.new_set = vec!["node-1".into(), "node-2".into()];
        assert_eq!(
            code(&signed(reshare, &[]), 10),
            Some("reshare.not_scheduled")
        );
        let due = |every, since, t, now| o.check_due(every, since, t, now).err().map(|e| e.code());
        assert_eq!(
            due(None, 0, 2, 10),
            Some("reshare.not_scheduled"),
            "no refresh_every"
        );
        assert_eq!(
            due(Some(100), 0, 3, 100),
            Some("reshare.not_scheduled"),
            "threshold"
        );
        assert_eq!(due(Some(100), 50, 2, 100), Some("reshare.not_due"));
        assert_eq!(
            due(Some(100), 50, 2, 139),
            Some("reshare.not_due"),
            "slack is 10 s"
        );
        assert_eq!(due(Some(100), 50, 2, 140), None);
        assert_eq!(
            order().check_due(None, 0, 2, 0),
            Ok(()),
            "an officers' order is not scheduled"
        );
    }
}
