//! Approvals: Ed25519 signatures by named approvers over a digest that binds the intent, the
//! request, the exact payload to be signed, the exact policy and an expiry.

use ed25519_dalek::{Signer, SigningKey};
use proto::intent::WithdrawalIntent;
use sha2::{Digest, Sha256};

use crate::input::Approval;
use crate::model::PolicyHash;

/// Domain-separation prefix of [`approval_digest`].
pub const APPROVAL_DOMAIN: &[u8] = b"custody-policy/approval/v2\0";

/// The longest an approval may be valid for, counted from the evaluating node's clock: one
/// signature cannot wait for ever for a payload to be attached to it. Longer ones are ignored.
pub const MAX_APPROVAL_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// What an approval is bound to: the request id and the hash of the exact payload
/// (`SignPayload::payload_hash`), so one approval can never release a second payout under the
/// same id (another nonce, other inputs, the same intent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSubject<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// Hash of the payload to be signed.
    pub payload_hash: &'a [u8; 32],
}

/// The 32 bytes an approver signs. Variable-length fields are length-prefixed (u64 big-endian).
pub fn approval_digest(
    intent: &WithdrawalIntent,
    subject: ApprovalSubject<'_>,
    policy_hash: &PolicyHash,
    expires_at: u64,
) -> [u8; 32] {
    let request_id = subject.request_id;
    let intent_bytes = intent.canonical_bytes();
    let mut h = Sha256::new();
    h.update(APPROVAL_DOMAIN);
    h.update((intent_bytes.len() as u64).to_be_bytes());
    h.update(&intent_bytes);
    h.update((request_id.len() as u64).to_be_bytes());
    h.update(request_id.as_bytes());
    h.update(subject.payload_hash);
    h.update(policy_hash.0);
    h.update(expires_at.to_be_bytes());
    h.finalize().into()
}

/// Signs an approval (approver tooling and tests; nodes only verify).
pub fn sign_approval(
    key: &SigningKey,
    intent: &WithdrawalIntent,
    subject: ApprovalSubject<'_>,
    policy_hash: &PolicyHash,
    expires_at: u64,
) -> Approval {
    let digest = approval_digest(intent, subject, policy_hash, expires_at);
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
