//! Independent signature checks with libsecp256k1, applied before any signature leaves a process.

use secp256k1::{
    ecdsa::{RecoverableSignature, RecoveryId, Signature},
    Message, PublicKey, SECP256K1,
};
use serde::{Deserialize, Serialize};

/// A verified ECDSA signature: low-s, with the recovery id that yields the signer's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedSignature {
    /// r, big-endian.
    #[serde(with = "hex32")]
    pub r: [u8; 32],
    /// s, big-endian, always in the lower half of the group order.
    #[serde(with = "hex32")]
    pub s: [u8; 32],
    /// Recovery id (0 or 1): the y parity of R.
    pub recovery_id: u8,
}

/// Why a signature was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigError {
    /// Public key bytes are not a curve point.
    #[error("invalid public key")]
    PublicKey,
    /// r or s out of range.
    #[error("malformed signature")]
    Malformed,
    /// s in the upper half of the order.
    #[error("signature is not low-s")]
    HighS,
    /// Verification failed.
    #[error("signature does not verify under the key")]
    Invalid,
    /// No recovery id recovers the key.
    #[error("no recovery id recovers the public key")]
    NoRecoveryId,
}

/// Verifies `(r, s)` over the 32-byte `digest` under `pubkey` (compressed), requires low-s, and
/// finds the recovery id.
pub fn verify(
    pubkey: &[u8; 33],
    digest: &[u8; 32],
    r: &[u8; 32],
    s: &[u8; 32],
) -> Result<VerifiedSignature, SigError> {
    let pk = PublicKey::from_slice(pubkey).map_err(|_| SigError::PublicKey)?;
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(r);
    compact[32..].copy_from_slice(s);
    let sig = Signature::from_compact(&compact).map_err(|_| SigError::Malformed)?;
    let mut normalized = sig;
    normalized.normalize_s();
    if normalized != sig {
        return Err(SigError::HighS);
    }
    let msg = Message::from_digest(*digest);
    SECP256K1
        .verify_ecdsa(&msg, &sig, &pk)
        .map_err(|_| SigError::Invalid)?;
    for id in [0i32, 1] {
        let recid = RecoveryId::from_i32(id).map_err(|_| SigError::Malformed)?;
        let rec =
            RecoverableSignature::from_compact(&compact, recid).map_err(|_| SigError::Malformed)?;
        if SECP256K1.recover_ecdsa(&msg, &rec).ok() == Some(pk) {
            return Ok(VerifiedSignature {
                r: *r,
                s: *s,
                recovery_id: id as u8,
            });
        }
    }
    Err(SigError::NoRecoveryId)
}

/// Serde helper: 32 bytes as lowercase hex.
pub mod hex32 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Serialise as hex.
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Parse 64 hex characters.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(|_| D::Error::custom("expected hex"))?;
        v.try_into()
            .map_err(|_| D::Error::custom("expected 32 bytes of hex"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use secp256k1::SecretKey;

    #[test]
    fn verifies_low_s_and_finds_recovery_id() {
        let sk = SecretKey::from_slice(&[7u8; 32]).unwrap();
        let pk = PublicKey::from_secret_key_global(&sk).serialize();
        let digest = [9u8; 32];
        let rec = SECP256K1.sign_ecdsa_recoverable(&Message::from_digest(digest), &sk);
        let (id, compact) = rec.serialize_compact();
        let r: [u8; 32] = compact[..32].try_into().unwrap();
        let s: [u8; 32] = compact[32..].try_into().unwrap();
        let v = verify(&pk, &digest, &r, &s).unwrap();
        assert_eq!(i32::from(v.recovery_id), id.to_i32());
        assert_eq!(verify(&pk, &[8u8; 32], &r, &s), Err(SigError::Invalid));
        // High-s twin of a valid signature is refused.
        let n_minus_s = {
            let sig = Signature::from_compact(&compact).unwrap();
            let mut high = compact;
            // s' = n - s
            let n = secp256k1::constants::CURVE_ORDER;
            let mut borrow = 0i16;
            for i in (0..32).rev() {
                let d = n[i] as i16 - compact[32 + i] as i16 - borrow;
                high[32 + i] = d.rem_euclid(256) as u8;
                borrow = if d < 0 { 1 } else { 0 };
            }
            let _ = sig;
            high
        };
        let hs: [u8; 32] = n_minus_s[32..].try_into().unwrap();
        assert_eq!(verify(&pk, &digest, &r, &hs), Err(SigError::HighS));
    }
}
