//! Sealing and opening envelopes. Every envelope is signed by the sender's Ed25519 identity key
//! over the session id, sender, recipient, sequence number and payload. Point-to-point payloads
//! are also encrypted with XChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the static
//! X25519 shared secret, the session id and the direction. An envelope is checked completely
//! here, before the MPC library parses a single byte of it.

use std::sync::Arc;

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use ed25519_dalek::Signature;
use proto::wire::{Envelope, SessionId};
use zeroize::Zeroizing;

use crate::identity::{NodeIdentity, PeerKeys};

/// Why an envelope was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Session id does not match.
    #[error("envelope for another session")]
    WrongSession,
    /// Sender index is out of range or is this node.
    #[error("envelope claims an invalid sender index {0}")]
    BadSender(u16),
    /// Point-to-point envelope addressed to another party.
    #[error("envelope from party {0} is addressed to another party")]
    NotForMe(u16),
    /// Signature does not verify under the claimed sender's pinned key: the relay forged or
    /// altered it.
    #[error("envelope claiming to be from party {0} has an invalid signature (forged or altered in transit)")]
    BadSignature(u16),
    /// Ciphertext failed authentication.
    #[error("private message from party {0} failed decryption")]
    Decrypt(u16),
}

/// The cryptographic context of one session on one node.
pub struct SessionCrypto {
    session_id: SessionId,
    me: u16,
    identity: Arc<NodeIdentity>,
    peers: Vec<PeerKeys>,
}

impl SessionCrypto {
    /// `peers[i]` are the pinned keys of the node at session index `i` (including this node).
    pub fn new(
        session_id: SessionId,
        me: u16,
        identity: Arc<NodeIdentity>,
        peers: Vec<PeerKeys>,
    ) -> Self {
        Self {
            session_id,
            me,
            identity,
            peers,
        }
    }

    /// This node's index in the session.
    pub fn me(&self) -> u16 {
        self.me
    }

    fn p2p_cipher(&self, from: u16, to: u16) -> Option<XChaCha20Poly1305> {
        let other = if from == self.me { to } else { from };
        let peer = self.peers.get(other as usize)?;
        let shared = self.identity.dh(&peer.dh);
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&self.session_id), &*shared);
        let mut info = b"custody/p2p/v1".to_vec();
        info.extend_from_slice(&from.to_be_bytes());
        info.extend_from_slice(&to.to_be_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(&info, &mut *key).ok()?;
        Some(XChaCha20Poly1305::new((&*key).into()))
    }

    fn nonce(seq: u32) -> XNonce {
        let mut n = [0u8; 24];
        n[..4].copy_from_slice(&seq.to_be_bytes());
        *XNonce::from_slice(&n)
    }

    fn aad(&self, from: u16, to: u16, seq: u32) -> Vec<u8> {
        let mut aad = self.session_id.to_vec();
        aad.extend_from_slice(&from.to_be_bytes());
        aad.extend_from_slice(&to.to_be_bytes());
        aad.extend_from_slice(&seq.to_be_bytes());
        aad
    }

    /// Builds a signed envelope; `to = Some(j)` encrypts to party j.
    pub fn seal(&self, to: Option<u16>, seq: u32, plaintext: &[u8]) -> Option<Envelope> {
        let payload = match to {
            None => plaintext.to_vec(),
            Some(j) => self
                .p2p_cipher(self.me, j)?
                .encrypt(
                    &Self::nonce(seq),
                    Payload {
                        msg: plaintext,
                        aad: &self.aad(self.me, j, seq),
                    },
                )
                .ok()?,
        };
        let mut env = Envelope {
            session_id: self.session_id,
            from: self.me,
            to,
            seq,
            payload,
            signature: vec![],
        };
        env.signature = self.identity.sign(&env.signed_bytes()).to_vec();
        Some(env)
    }

    /// Verifies and (for point-to-point) decrypts an envelope. Returns the plaintext.
    pub fn open(&self, env: &Envelope) -> Result<Vec<u8>, EnvelopeError> {
        if env.session_id != self.session_id {
            return Err(EnvelopeError::WrongSession);
        }
        let from = env.from;
        let peer = match self.peers.get(from as usize) {
            Some(p) if from != self.me => p,
            _ => return Err(EnvelopeError::BadSender(from)),
        };
        if matches!(env.to, Some(to) if to != self.me) {
            return Err(EnvelopeError::NotForMe(from));
        }
        let sig: [u8; 64] = env
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| EnvelopeError::BadSignature(from))?;
        peer.sign
            .verify_strict(&env.signed_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| EnvelopeError::BadSignature(from))?;
        match env.to {
            None => Ok(env.payload.clone()),
            Some(to) => self
                .p2p_cipher(from, to)
                .ok_or(EnvelopeError::Decrypt(from))?
                .decrypt(
                    &Self::nonce(env.seq),
                    Payload {
                        msg: &env.payload,
                        aad: &self.aad(from, to, env.seq),
                    },
                )
                .map_err(|_| EnvelopeError::Decrypt(from)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::identity::Roster;

    fn pair() -> (SessionCrypto, SessionCrypto) {
        let a = Arc::new(NodeIdentity::generate("a"));
        let b = Arc::new(NodeIdentity::generate("b"));
        let roster = Roster::from_identities(&[a.public(), b.public()]).unwrap();
        let peers = vec![
            roster.get("a").unwrap().clone(),
            roster.get("b").unwrap().clone(),
        ];
        (
            SessionCrypto::new([1; 32], 0, a, peers.clone()),
            SessionCrypto::new([1; 32], 1, b, peers),
        )
    }

    #[test]
    fn p2p_round_trip_and_tamper_detection() {
        let (a, b) = pair();
        let env = a.seal(Some(1), 3, b"hello").unwrap();
        assert_ne!(env.payload, b"hello");
        assert_eq!(b.open(&env).unwrap(), b"hello");
        let mut t = env.clone();
        t.payload[0] ^= 1;
        assert_eq!(b.open(&t), Err(EnvelopeError::BadSignature(0)));
        let mut t = env.clone();
        t.session_id = [2; 32];
        assert_eq!(b.open(&t), Err(EnvelopeError::WrongSession));
        let mut t = env.clone();
        t.from = 1;
        assert_eq!(b.open(&t), Err(EnvelopeError::BadSender(1)));
        let bc = a.seal(None, 4, b"all").unwrap();
        assert_eq!(b.open(&bc).unwrap(), b"all");
    }

    /// The relay sees every envelope but holds no party's X25519 secret: even a holder of every
    /// public key, posing as the recipient, cannot decrypt a private message.
    #[test]
    fn private_messages_are_unreadable_without_the_recipients_secret() {
        let (a, _b) = pair();
        let secret_text = b"share-dependent round message";
        let env = a.seal(Some(1), 5, secret_text).unwrap();
        assert!(!env
            .payload
            .windows(secret_text.len())
            .any(|w| w == secret_text));
        let relay = Arc::new(NodeIdentity::generate("b"));
        let peers = a.peers.clone();
        let impostor = SessionCrypto::new([1; 32], 1, relay, peers);
        assert_eq!(impostor.open(&env), Err(EnvelopeError::Decrypt(0)));
    }
}
