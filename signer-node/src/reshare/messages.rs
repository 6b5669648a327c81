//! The redistribution's messages and what each party signs inside them, so that a party can
//! later show what a dealer sent it (a complaint, or a proof that the dealer equivocated).

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use cggmp24::generic_ec::{Point, Scalar, SecretScalar};
use proto::wire::{SessionFailure, SessionId};

use crate::{
    mpc::{KeyShare, E},
    session::fail,
};

/// The old key as a dealer holds it: public key, chain code and every old public share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfoWire {
    /// Compressed `Y`.
    #[serde(with = "proto::wire::serde_bytes_vec")]
    pub public_key: Vec<u8>,
    /// HD chain code (empty for a non-HD key).
    #[serde(with = "proto::wire::serde_bytes_vec")]
    pub chain_code: Vec<u8>,
    /// Compressed `X_i` of the old group, in share index order.
    pub public_shares: Vec<Vec<u8>>,
}

/// A sub-share for one receiver, with the dealer's signature over it (inside the encryption).
#[derive(Clone, Serialize, Deserialize)]
pub struct SubShare {
    /// `g_i(j)`, 32 bytes big-endian. Secret.
    #[serde(with = "proto::wire::serde_bytes_vec")]
    pub value: Vec<u8>,
    /// The dealer's Ed25519 signature over [`sub_digest`].
    #[serde(with = "proto::wire::serde_bytes_vec")]
    pub sig: Vec<u8>,
}

impl std::fmt::Debug for SubShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubShare([REDACTED])")
    }
}

impl Drop for SubShare {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

/// A dealer's message to one party (point to point, encrypted): the old key's public data, its
/// commitments with its signature over their hash, and the receiver's sub-share if it is new.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deal {
    /// The old key as the dealer holds it.
    pub key: KeyInfoWire,
    /// Feldman commitments `C_{i,0..t'-1}`, compressed.
    pub commitments: Vec<Vec<u8>>,
    /// The dealer's signature over [`commit_digest`] of [`Deal::view`].
    #[serde(with = "proto::wire::serde_bytes_vec")]
    pub commit_sig: Vec<u8>,
    /// The receiver's sub-share (absent for a party outside the new set).
    pub sub: Option<SubShare>,
}

impl Deal {
    /// Hash of what the dealer showed: key data and commitments.
    pub fn view(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"custody/reshare/view/v1\0");
        h.update(proto::wire::encode(&(&self.key, &self.commitments)).unwrap_or_default());
        h.finalize().into()
    }
}

/// A receiver's complaint: the sub-share dealer `dealer` sent it, with the dealer's signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Complaint {
    /// The dealer's party index.
    pub dealer: u16,
    /// The sub-share as received (it failed the check, so it is worthless as a secret).
    pub sub: SubShare,
}

/// Every party's echo (broadcast): per dealer, the hash of what it was shown and the dealer's
/// signature over it; and its complaints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    /// Per dealer, in dealer order: `(view hash, dealer's commit signature)`.
    pub views: Vec<(Vec<u8>, Vec<u8>)>,
    /// Sub-shares that failed their check.
    pub complaints: Vec<Complaint>,
}

/// The ceremony's messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Msg {
    /// Dealer to one party.
    Deal(Box<Deal>),
    /// Every party to all.
    Echo(Echo),
}

/// What a dealer signs over the view it shows.
pub fn commit_digest(session: &SessionId, dealer: u16, view: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"custody/reshare/commit/v1\0");
    h.update(session);
    h.update(dealer.to_be_bytes());
    h.update(view);
    h.finalize().into()
}

/// What a dealer signs over one receiver's sub-share.
pub fn sub_digest(session: &SessionId, dealer: u16, receiver: u16, value: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"custody/reshare/sub/v1\0");
    h.update(session);
    h.update(dealer.to_be_bytes());
    h.update(receiver.to_be_bytes());
    h.update(value);
    h.finalize().into()
}

/// Whether `sig` is `key`'s Ed25519 signature over `digest`.
pub fn signed_by(key: &VerifyingKey, digest: &[u8; 32], sig: &[u8]) -> bool {
    Signature::from_slice(sig)
        .map(|s| key.verify(digest, &s).is_ok())
        .unwrap_or(false)
}

pub(super) fn point_bytes(p: &Point<E>) -> Vec<u8> {
    p.to_bytes(true).as_bytes().to_vec()
}

pub(super) fn parse_points(v: &[Vec<u8>]) -> Option<Vec<Point<E>>> {
    v.iter().map(|b| Point::<E>::from_bytes(b).ok()).collect()
}

pub(super) fn parse_scalar(b: &[u8]) -> Option<SecretScalar<E>> {
    let mut s = Scalar::<E>::from_be_bytes(b).ok()?;
    Some(SecretScalar::new(&mut s))
}

/// The old key's public data from a share.
pub(super) fn key_info(share: &KeyShare) -> KeyInfoWire {
    KeyInfoWire {
        public_key: point_bytes(&share.core.key_info.shared_public_key),
        chain_code: share
            .core
            .key_info
            .chain_code
            .map(|c| c.to_vec())
            .unwrap_or_default(),
        public_shares: share
            .core
            .key_info
            .public_shares
            .iter()
            .map(|p| point_bytes(p))
            .collect(),
    }
}

/// The redistribution takes share points to be `1..=n` in group order, as cggmp24's threshold
/// DKG and this module set them; a share with other points is refused, not guessed at.
pub(super) fn check_points(share: &KeyShare) -> Result<(), SessionFailure> {
    let ok = match &share.core.key_info.vss_setup {
        Some(setup) => setup
            .I
            .iter()
            .enumerate()
            .all(|(k, p)| *p.as_ref() == Scalar::<E>::from(k as u64 + 1)),
        None => false,
    };
    match ok {
        true => Ok(()),
        false => Err(fail(
            "reshare.unsupported",
            "the key share's points are not 1..n",
        )),
    }
}
