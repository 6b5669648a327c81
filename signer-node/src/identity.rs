//! Node identity: an Ed25519 key that signs envelopes and an X25519 key that point-to-point
//! messages are encrypted to. Peers' public halves are pinned in a roster file that operators
//! exchange out of band; the coordinator never supplies them.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

/// Record name of the sealed identity.
pub const IDENTITY_RECORD: &str = "identity";

/// The public half of a node's identity, shared with every other node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PublicIdentity {
    /// Node id.
    pub node_id: String,
    /// Ed25519 envelope-signing key, hex.
    pub sign_key: String,
    /// X25519 encryption key, hex.
    pub dh_key: String,
}

impl PublicIdentity {
    /// The identity's fingerprint, for guardians to compare out of band (read aloud, on paper):
    /// SHA-256 over a domain tag, the node id and both keys (lowercase hex as in the roster),
    /// shown as 16 groups of 4 hex digits.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [
            "custody-node-identity-v1",
            &self.node_id,
            &self.sign_key.to_ascii_lowercase(),
            &self.dh_key.to_ascii_lowercase(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let hex = hex::encode(h.finalize());
        hex.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Identity errors.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Sealed identity has the wrong length.
    #[error("stored identity is malformed")]
    Malformed,
    /// Roster file problem.
    #[error("roster `{path}`: {msg}")]
    Roster {
        /// File.
        path: String,
        /// What is wrong.
        msg: String,
    },
}

/// The secret identity. No `Debug`, wiped on drop (both dalek types zeroize).
pub struct NodeIdentity {
    /// Node id.
    pub node_id: String,
    sign: SigningKey,
    dh: StaticSecret,
}

impl NodeIdentity {
    /// Generates a new identity.
    pub fn generate(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_string(),
            sign: SigningKey::generate(&mut OsRng),
            dh: StaticSecret::random_from_rng(OsRng),
        }
    }

    /// Serialises the secret keys (64 bytes) for sealing.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(64));
        out.extend_from_slice(self.sign.as_bytes());
        out.extend_from_slice(self.dh.as_bytes());
        out
    }

    /// Parses what [`Self::to_secret_bytes`] produced.
    pub fn from_secret_bytes(node_id: &str, bytes: &[u8]) -> Result<Self, IdentityError> {
        if bytes.len() != 64 {
            return Err(IdentityError::Malformed);
        }
        let mut sign = Zeroizing::new([0u8; 32]);
        sign.copy_from_slice(&bytes[..32]);
        let mut dh = Zeroizing::new([0u8; 32]);
        dh.copy_from_slice(&bytes[32..]);
        Ok(Self {
            node_id: node_id.to_string(),
            sign: SigningKey::from_bytes(&sign),
            dh: StaticSecret::from(*dh),
        })
    }

    /// The public identity.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            node_id: self.node_id.clone(),
            sign_key: hex::encode(self.sign.verifying_key().as_bytes()),
            dh_key: hex::encode(x25519_dalek::PublicKey::from(&self.dh).as_bytes()),
        }
    }

    /// Signs bytes with the envelope key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.sign.sign(msg).to_bytes()
    }

    /// X25519 shared secret with a peer.
    pub fn dh(&self, peer: &x25519_dalek::PublicKey) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.dh.diffie_hellman(peer).to_bytes())
    }
}

/// A peer's parsed public keys.
#[derive(Debug, Clone)]
pub struct PeerKeys {
    /// Envelope-signing key.
    pub sign: VerifyingKey,
    /// Encryption key.
    pub dh: x25519_dalek::PublicKey,
}

/// Pinned public identities of every node in the cluster.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    peers: std::collections::BTreeMap<String, PeerKeys>,
}

impl Roster {
    /// Loads a roster: a JSON array of [`PublicIdentity`].
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let err = |msg: String| IdentityError::Roster {
            path: path.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let ids: Vec<PublicIdentity> =
            serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        Self::from_identities(&ids).map_err(err)
    }

    /// Builds a roster from public identities.
    pub fn from_identities(ids: &[PublicIdentity]) -> Result<Self, String> {
        let mut peers = std::collections::BTreeMap::new();
        for id in ids {
            let sign: [u8; 32] = hex::decode(&id.sign_key)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| format!("node `{}`: sign_key is not 32 bytes of hex", id.node_id))?;
            let dh: [u8; 32] = hex::decode(&id.dh_key)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| format!("node `{}`: dh_key is not 32 bytes of hex", id.node_id))?;
            let sign = VerifyingKey::from_bytes(&sign)
                .map_err(|_| format!("node `{}`: sign_key is not a valid key", id.node_id))?;
            if peers
                .insert(
                    id.node_id.clone(),
                    PeerKeys {
                        sign,
                        dh: x25519_dalek::PublicKey::from(dh),
                    },
                )
                .is_some()
            {
                return Err(format!("node `{}` appears twice", id.node_id));
            }
        }
        Ok(Self { peers })
    }

    /// This roster plus ordered identities; an identity that differs from a pinned one is an
    /// error naming the node.
    pub fn with_identities(
        &self,
        ids: &std::collections::BTreeMap<String, proto::lifecycle::GuardianIdentity>,
    ) -> Result<Self, String> {
        let listed: Vec<PublicIdentity> = ids
            .iter()
            .map(|(node_id, id)| PublicIdentity {
                node_id: node_id.clone(),
                sign_key: id.sign_key.to_ascii_lowercase(),
                dh_key: id.dh_key.to_ascii_lowercase(),
            })
            .collect();
        let extra = Self::from_identities(&listed)?;
        let mut peers = self.peers.clone();
        for (id, keys) in extra.peers {
            match peers.get(&id) {
                Some(pinned) if pinned.sign != keys.sign || pinned.dh != keys.dh => {
                    return Err(format!(
                        "the order's identity for `{id}` differs from the one this node pins"
                    ))
                }
                _ => {
                    peers.insert(id, keys);
                }
            }
        }
        Ok(Self { peers })
    }

    /// A peer's keys.
    pub fn get(&self, node_id: &str) -> Option<&PeerKeys> {
        self.peers.get(node_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_fingerprint_names_every_field_and_reads_as_16_groups() {
        let id = NodeIdentity::generate("node-1").public();
        let fp = id.fingerprint();
        let groups: Vec<&str> = fp.split(' ').collect();
        assert_eq!(groups.len(), 16, "{fp}");
        assert!(groups
            .iter()
            .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit())));
        assert_eq!(fp, id.clone().fingerprint(), "stable");
        let other = NodeIdentity::generate("node-1").public();
        let mut renamed = id.clone();
        renamed.node_id = "node-2".into();
        let mut swapped = id.clone();
        std::mem::swap(&mut swapped.sign_key, &mut swapped.dh_key);
        let mut upper = id.clone();
        upper.sign_key = upper.sign_key.to_ascii_uppercase();
        for (what, changed) in [("keys", &other), ("node id", &renamed), ("order", &swapped)] {
            assert_ne!(
                fp,
                changed.fingerprint(),
                "{what} must change the fingerprint"
            );
        }
        // The roster's hex is case-insensitive, and so is the fingerprint.
        assert_eq!(fp, upper.fingerprint());
    }
}
