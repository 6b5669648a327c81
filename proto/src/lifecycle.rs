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

impl SignedMembershipOrder {
    /// Checks the order as a node does: shape, expiry and the pinned officers' quorum. The key's
    /// epoch and guardian set are checked by the caller against its own store.
    pub fn check(&self, officers: &[[u8; 32]], quorum: usize, now: u64) -> Result<(), OrderError> {
        self.order.check_shape()?;
        if now >= self.order.not_after {
            return Err(OrderError::Expired {
                not_after: self.order.not_after,
                now,
            });
        }
        self.check_quorum(officers, quorum)
    }

    /// The pinned officers' quorum alone (an activation is checked after the order expired).
    pub fn check_quorum(&self, officers: &[[u8; 32]], quorum: usize) -> Result<(), OrderError> {
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
}
