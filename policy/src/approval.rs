//! Approvals: Ed25519 signatures by named approvers over a digest that binds the intent, the
//! request, the exact policy and an expiry.

use ed25519_dalek::{Signer, SigningKey};
use proto::intent::WithdrawalIntent;
use sha2::{Digest, Sha256};

use crate::input::Approval;
use crate::model::PolicyHash;

/// Domain-separation prefix of [`approval_digest`].
pub const APPROVAL_DOMAIN: &[u8] = b"custody-policy/approval/v1\0";

/// The 32 bytes an approver signs. Variable-length fields are length-prefixed (u64 big-endian).
pub fn approval_digest(
    intent: &WithdrawalIntent,
    request_id: &str,
    policy_hash: &PolicyHash,
    expires_at: u64,
) -> [u8; 32] {
    let intent_bytes = intent.canonical_bytes();
    let mut h = Sha256::new();
    h.update(APPROVAL_DOMAIN);
    h.update((intent_bytes.len() as u64).to_be_bytes());
    h.update(&intent_bytes);
    h.update((request_id.len() as u64).to_be_bytes());
    h.update(request_id.as_bytes());
    h.update(policy_hash.0);
    h.update(expires_at.to_be_bytes());
    h.finalize().into()
}

/// Signs an approval (approver tooling and tests; nodes only verify).
pub fn sign_approval(
    key: &SigningKey,
    intent: &WithdrawalIntent,
    request_id: &str,
    policy_hash: &PolicyHash,
    expires_at: u64,
) -> Approval {
    let digest = approval_digest(intent, request_id, policy_hash, expires_at);
    Approval {
        approver: key.verifying_key().to_bytes(),
        signature: key.sign(&digest).to_bytes(),
        expires_at,
    }
}

/// Verifies one approval with `verify_strict` (no malleable or small-order signatures).
pub(crate) fn verify(approval: &Approval, digest: &[u8; 32]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&approval.approver) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(&approval.signature);
    key.verify_strict(digest, &sig).is_ok()
}
