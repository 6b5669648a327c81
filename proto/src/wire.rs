//! Node ↔ coordinator frames and the signed, end-to-end envelopes that carry MPC messages.
//!
//! Frames are CBOR, each prefixed with a big-endian `u32` length, and bounded by [`MAX_FRAME`].
//! This module holds the pure parts ([`encode`], [`decode`], [`frame_len`]); reading and writing
//! frames on a socket is `runtime::frame`.
//! The coordinator only routes [`Envelope`]s: it can drop or delay them but cannot read a
//! point-to-point payload (encrypted to the recipient) or forge one (signed by the sender).

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::sig::VerifiedSignature;

/// Largest frame accepted on a node↔coordinator link. Aux-info messages for n=5 stay far below.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// Wire protocol version, checked at `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A session id chosen by the coordinator. Nodes refuse one they have seen before.
pub type SessionId = [u8; 32];

/// What a session computes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// Distributed key generation (HD-capable) among `parties`, with threshold `threshold`.
    Keygen {
        /// t.
        threshold: u16,
    },
    /// Auxiliary info (Paillier keys, ring-Pedersen parameters) for the group `parties`.
    AuxInfo,
    /// Sign part `part` of a request that every party decodes itself.
    Sign {
        /// Client's idempotency key.
        request_id: String,
        /// The request's payload, exactly as the client sent it.
        payload: crate::payload::SignPayload,
        /// Which signature of the payload (PSBT input index; 0 otherwise).
        part: u32,
        /// Approvals collected for the request; each node verifies them itself.
        #[serde(default)]
        approvals: Vec<crate::authz::Approval>,
        /// Sign from this stored presignature of the parties (no MPC rounds) instead of
        /// running the full protocol. Each node consumes it once, durably, before its partial
        /// signature leaves.
        #[serde(default)]
        presignature: Option<crate::presig::PresigId>,
        /// Segregated account the request spends from; each node looks up the account's
        /// number in its own registry and derives its keys itself.
        #[serde(default)]
        account: Option<String>,
    },
    /// Make one presignature of the key among exactly t `parties` (refilling the pool).
    Presign,
    /// Aux info for the new guardian set of a reshare (`parties` is the order's `new_set`);
    /// the order names guardians new to the key, whose identities each node takes from it
    /// only after checking the officers' signatures.
    ReshareAux {
        /// The officers' order.
        order: crate::lifecycle::SignedMembershipOrder,
    },
    /// Redistribute the key's shares as the officers ordered (refresh or reshare). `parties`
    /// are the `dealers` (t old guardians, in their order) followed by the order's new
    /// guardians that are not dealers; every party checks that layout itself.
    Reshare {
        /// The officers' order; every party verifies it against its own pinned officers.
        order: crate::lifecycle::SignedMembershipOrder,
        /// The dealer quorum: exactly t guardians of the old set.
        dealers: Vec<String>,
    },
}

/// "Would you sign this request now?", asked of every node before any session starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluateRequest {
    /// Client's idempotency key.
    pub request_id: String,
    /// The key.
    pub key_id: String,
    /// The request's payload, exactly as the client sent it.
    pub payload: crate::payload::SignPayload,
    /// Approvals collected so far.
    pub approvals: Vec<crate::authz::Approval>,
    /// Segregated account the request spends from.
    #[serde(default)]
    pub account: Option<String>,
}

/// Accounts per [`CoordFrame::Accounts`] frame at most (about 100 bytes each).
pub const ACCOUNT_BATCH: usize = 1024;

/// Registers a segregated account on a node: the node refuses a name or a number it already
/// registered differently, then derives and returns the account's keys itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRegistration {
    /// The key.
    pub key_id: String,
    /// Account name.
    pub name: String,
    /// Account number `a` (keys `m/a/i`).
    pub index: u32,
}

/// Sent by the coordinator to every party of a new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStart {
    /// Unique per session; bound into the execution id and every envelope.
    pub session_id: SessionId,
    /// The key this session creates or uses.
    pub key_id: String,
    /// Participating node ids, in protocol index order.
    pub parties: Vec<String>,
    /// What to compute.
    pub kind: SessionKind,
    /// The key's share epoch the session runs in: a node refuses a session whose epoch is not
    /// its active one (`session.epoch`), so no session mixes old and new shares.
    #[serde(default)]
    pub epoch: u64,
}

/// A signed (and for point-to-point messages, encrypted) MPC message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Session this message belongs to.
    pub session_id: SessionId,
    /// Sender's index in the session.
    pub from: u16,
    /// Recipient index, or `None` for a broadcast.
    pub to: Option<u16>,
    /// Per-sender sequence number; 0 is the agreement (join) message.
    pub seq: u32,
    /// Plaintext for broadcasts, XChaCha20-Poly1305 ciphertext for point-to-point.
    #[serde(with = "serde_bytes_vec")]
    pub payload: Vec<u8>,
    /// Ed25519 signature by the sender's identity key over [`Envelope::signed_bytes`].
    #[serde(with = "serde_bytes_vec")]
    pub signature: Vec<u8>,
}

impl Envelope {
    /// The exact bytes the sender signs: a domain tag, then every header field and the payload.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.payload.len());
        out.extend_from_slice(b"custody/envelope/v1\0");
        out.extend_from_slice(&self.session_id);
        out.extend_from_slice(&self.from.to_be_bytes());
        match self.to {
            None => out.push(0),
            Some(to) => {
                out.push(1);
                out.extend_from_slice(&to.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u64).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// What a session produced on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionOutput {
    /// DKG finished; `complete` says whether the node already holds aux info for this group.
    Keygen {
        /// Compressed shared public key.
        #[serde(with = "serde_bytes_vec")]
        public_key: Vec<u8>,
        /// BIP-32 chain code of the HD master key.
        #[serde(with = "serde_bytes_vec")]
        chain_code: Vec<u8>,
        /// The node's key share is usable (aux info was already present).
        complete: bool,
    },
    /// Aux info stored; pending key shares of this group are now complete.
    AuxInfo,
    /// A signature that the node has verified with libsecp256k1.
    Signature(VerifiedSignature),
    /// A presignature was stored under the session id; its public data.
    Presignature(crate::presig::PresigPublic),
    /// A partial signature issued from a presignature (for the coordinator to combine).
    Partial {
        /// σᵢ, big-endian.
        sigma: [u8; 32],
    },
    /// A redistribution finished on this node.
    Reshared {
        /// The new epoch (pending until activated).
        epoch: u64,
        /// Hash of the dealers' commitments all parties agreed on.
        #[serde(with = "serde_bytes_vec")]
        commitments: Vec<u8>,
        /// A new guardian's signature over [`crate::lifecycle::stored_digest`], made after its
        /// pending share was durable; `None` from a dealer outside the new set.
        #[serde(default)]
        confirmation: Option<Vec<u8>>,
    },
}

/// Why a session failed on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFailure {
    /// Stable machine code, e.g. `session.timeout`, `session.intent_mismatch`.
    pub code: String,
    /// Human-readable detail. Never contains secret material.
    pub message: String,
    /// Node ids this node blames, if any.
    pub blame: Vec<String>,
}

/// Frames a node sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeFrame {
    /// First frame on a connection.
    Hello {
        /// Must equal the node id in the client certificate.
        node_id: String,
        /// [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// An envelope to route.
    Envelope(Envelope),
    /// Outcome of a session on this node.
    SessionResult {
        /// Which session.
        session_id: SessionId,
        /// Output or failure.
        result: Result<SessionOutput, SessionFailure>,
    },
    /// Answer to [`CoordFrame::Evaluate`].
    Verdict {
        /// Which request.
        request_id: String,
        /// The node's verdict.
        verdict: crate::authz::NodeVerdict,
    },
    /// The node's policy, freeze and ledger state (after connecting and after every change).
    Status(crate::authz::NodeStatus),
    /// Answer to [`CoordFrame::Order`].
    OrderResult {
        /// [`crate::authz::Order::id`].
        order_id: String,
        /// Accepted, or why not.
        result: Result<(), SessionFailure>,
    },
    /// A ledger entry this node recorded, to be relayed to every other node.
    Ledger(crate::authz::LedgerEntry),
    /// Answer to [`CoordFrame::Accounts`].
    AccountResult {
        /// Key.
        key_id: String,
        /// Account name.
        name: String,
        /// The keys this node derived, or why it refused.
        result: Result<crate::hd::AccountKeys, SessionFailure>,
    },
    /// Answer to [`CoordFrame::Activate`].
    Activated {
        /// Key.
        key_id: String,
        /// The epoch the certificate activates.
        epoch: u64,
        /// Applied (or already active), or why not.
        result: Result<(), SessionFailure>,
    },
    /// Asks for the ledger entries above these per-origin heads (answered in pages of at most
    /// [`LEDGER_PAGE`] entries; the node asks again while it is behind).
    LedgerWant(std::collections::BTreeMap<String, u64>),
}

/// Most ledger entries the coordinator sends for one [`NodeFrame::LedgerWant`].
pub const LEDGER_PAGE: usize = 512;

/// What the coordinator held when it finished replaying its state to a node that connected:
/// every order and policy bundle it stored went out before this mark, in order. A node signs
/// nothing until it has processed the mark of its current link and holds at least these
/// ledger heads (see the node's `sync` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SyncMark {
    /// The coordinator's highest contiguous ledger sequence per origin node.
    pub ledger_heads: std::collections::BTreeMap<String, u64>,
    /// Orders replayed before this mark (the coordinator's whole order log).
    pub orders: u64,
}

/// Frames the coordinator sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordFrame {
    /// Answer to `Hello`.
    Welcome,
    /// Begin a session.
    Start(SessionStart),
    /// A routed envelope.
    Envelope(Envelope),
    /// Evaluate a request against the node's own policy.
    Evaluate(EvaluateRequest),
    /// A policy bundle (JSON text, as the officers signed it) to verify and install.
    Policy {
        /// The bundle.
        bundle_json: String,
    },
    /// A veto, freeze or unfreeze to verify and apply.
    Order(crate::authz::Order),
    /// Another node's ledger entry.
    Ledger(crate::authz::LedgerEntry),
    /// Register accounts, in order: one when it is created, and every account of the node's
    /// keys (in batches of [`ACCOUNT_BATCH`]) when a node connects. One frame is one job on
    /// the node, so a replay of many accounts cannot crowd out other control frames.
    Accounts(Vec<AccountRegistration>),
    /// Activate a key's new share epoch (sent when the certificate is complete, and replayed
    /// on every connection before the sync mark).
    Activate(Box<crate::lifecycle::Activation>),
    /// End of the replay that follows a node's connection (see [`SyncMark`]).
    Synced(SyncMark),
    /// Abandon a session (deadline passed or another party failed).
    Abort {
        /// Which session.
        session_id: SessionId,
        /// Why.
        reason: String,
    },
}

/// Framing and decoding errors.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Length prefix over [`MAX_FRAME`]; nothing was allocated.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// Socket error or EOF.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// CBOR did not decode to the expected frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Serialises a frame to CBOR.
pub fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    ciborium::into_writer(frame, &mut out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if out.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Parses a CBOR frame.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    ciborium::from_reader(bytes).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// The length announced by a frame's big-endian `u32` prefix, refused over [`MAX_FRAME`] so a
/// reader allocates nothing for an oversized frame.
pub fn frame_len(prefix: u32) -> Result<usize, FrameError> {
    let len = usize::try_from(prefix).map_err(|_| FrameError::TooLarge(usize::MAX))?;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Serde helper: `Vec<u8>` as a CBOR byte string (not an array of integers).
pub mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    /// Serialise as bytes.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Deserialise bytes (or a sequence of u8, for self-describing formats like JSON).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_is_refused_before_allocation() {
        let env = Envelope {
            session_id: [3; 32],
            from: 1,
            to: Some(2),
            seq: 9,
            payload: vec![1, 2, 3],
            signature: vec![4; 64],
        };
        let bytes = encode(&CoordFrame::Envelope(env.clone())).unwrap();
        let back: CoordFrame = decode(&bytes).unwrap();
        assert_eq!(back, CoordFrame::Envelope(env.clone()));
        // Large payloads (aux-info messages are hundreds of KB) must decode too.
        let big = Envelope {
            payload: vec![7u8; 300_000],
            ..env
        };
        let back: CoordFrame =
            decode(&encode(&CoordFrame::Envelope(big.clone())).unwrap()).unwrap();
        assert_eq!(back, CoordFrame::Envelope(big));
        assert!(matches!(frame_len(u32::MAX), Err(FrameError::TooLarge(_))));
        assert_eq!(frame_len(MAX_FRAME as u32).unwrap(), MAX_FRAME);
        let garbage: Result<CoordFrame, _> = decode(&[0xff, 0x00]);
        assert!(matches!(garbage, Err(FrameError::Malformed(_))));
    }

    #[test]
    fn signed_bytes_bind_every_header_field() {
        let a = Envelope {
            session_id: [3; 32],
            from: 1,
            to: None,
            seq: 9,
            payload: vec![1],
            signature: vec![],
        };
        let mut b = a.clone();
        b.to = Some(0);
        assert_ne!(a.signed_bytes(), b.signed_bytes());
        let mut c = a.clone();
        c.session_id[0] = 4;
        assert_ne!(a.signed_bytes(), c.signed_bytes());
    }
}
