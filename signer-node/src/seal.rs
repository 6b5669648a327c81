//! Encryption at rest: Argon2id turns the passphrase into a key; XChaCha20-Poly1305 seals each
//! record with the node id and the record name (e.g. `share/<key_id>`) bound in as associated data,
//! so a record copied to another node or another key slot fails to open.

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::secret::{Passphrase, SecretBytes};

/// Argon2id parameters stored next to the salt, so they can be raised later.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Bad KDF parameters.
    #[error("invalid key-derivation parameters")]
    Kdf,
    /// The record did not authenticate: wrong passphrase, corruption, or a record moved from
    /// another node or key slot.
    #[error("record `{0}` failed authentication (corrupted, or sealed under another passphrase, node or key)")]
    Open(String),
    /// Encryption failed (should not happen).
    #[error("sealing record `{0}` failed")]
    Seal(String),
}

/// The record-sealing key of one node. Wiped on drop.
pub struct SealKey {
    key: Zeroizing<[u8; 32]>,
    node_id: String,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey(node={}, [REDACTED])", self.node_id)
    }
}

impl SealKey {
    /// Derives the key with Argon2id.
    pub fn derive(
        passphrase: &Passphrase,
        salt: &[u8],
        params: KdfParams,
        node_id: &str,
    ) -> Result<Self, SealError> {
        let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
            .map_err(|_| SealError::Kdf)?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.expose_secret().as_bytes(), salt, &mut *key)
            .map_err(|_| SealError::Kdf)?;
        Ok(Self {
            key,
            node_id: node_id.to_string(),
        })
    }

    fn aad(&self, record: &str) -> Vec<u8> {
        format!("custody/seal/v1\0{}\0{}", self.node_id, record).into_bytes()
    }

    /// Seals `plaintext` as record `record`: `nonce(24) || ciphertext`.
    pub fn seal(&self, record: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let cipher = XChaCha20Poly1305::new((&*self.key).into());
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let aad = self.aad(record);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal(record.to_string()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a sealed record, checking it belongs to this node and this record name.
    pub fn open(&self, record: &str, sealed: &[u8]) -> Result<SecretBytes, SealError> {
        if sealed.len() < 24 + 16 {
            return Err(SealError::Open(record.to_string()));
        }
        let cipher = XChaCha20Poly1305::new((&*self.key).into());
        let aad = self.aad(record);
        cipher
            .decrypt(
                XNonce::from_slice(&sealed[..24]),
                Payload {
                    msg: &sealed[24..],
                    aad: &aad,
                },
            )
            .map(SecretBytes::new)
            .map_err(|_| SealError::Open(record.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn quick() -> KdfParams {
        KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        }
    }

    #[test]
    fn sealed_records_are_bound_to_node_and_record_name() {
        let pass = Passphrase::new("pw".into());
        let k = SealKey::derive(&pass, b"saltsaltsaltsalt", quick(), "node-1").unwrap();
        let sealed = k.seal("share/k1", b"secret").unwrap();
        assert_eq!(
            k.open("share/k1", &sealed).unwrap().expose_secret(),
            b"secret"
        );
        assert!(k.open("share/k2", &sealed).is_err());
        let other = SealKey::derive(&pass, b"saltsaltsaltsalt", quick(), "node-2").unwrap();
        assert!(other.open("share/k1", &sealed).is_err());
        let wrong = SealKey::derive(
            &Passphrase::new("nope".into()),
            b"saltsaltsaltsalt",
            quick(),
            "node-1",
        )
        .unwrap();
        assert!(wrong.open("share/k1", &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(k.open("share/k1", &flipped).is_err());
    }
}
