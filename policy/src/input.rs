//! What the node passes to [`crate::evaluate`] besides the intent and the policy.

use proto::intent::{u128_string, Asset, ChainRef};
use serde::{Deserialize, Serialize};

/// The evaluation context: everything time- and node-dependent, passed in so that the engine
/// stays a pure function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalContext {
    /// Current time, unix seconds.
    pub now: u64,
    /// The request id that approvals are bound to.
    pub request_id: String,
    /// When this node first saw the request; time-locks run from here.
    pub first_seen: u64,
    /// Runtime freeze state held by the node.
    pub frozen: bool,
    /// The request's own expiry, if it has one.
    pub request_expires_at: Option<u64>,
}

/// One past withdrawal that was signed, for velocity limits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// The custody key that signed.
    pub key_id: String,
    /// The segregated account, if the request named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Chain and network.
    pub chain: ChainRef,
    /// Asset moved.
    pub asset: Asset,
    /// Destination, normalised like intent destinations.
    pub destination: String,
    /// Amount in base units.
    #[serde(with = "u128_string")]
    pub amount: u128,
    /// When it was signed, unix seconds.
    pub signed_at: u64,
}

/// An approver's Ed25519 signature over [`crate::approval_digest`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approver's Ed25519 public key.
    #[serde(with = "hex32")]
    pub approver: [u8; 32],
    /// Signature over the approval digest.
    #[serde(with = "hex64")]
    pub signature: [u8; 64],
    /// The approval is void at and after this time (unix seconds).
    pub expires_at: u64,
}

macro_rules! hex_array {
    ($name:ident, $n:literal) => {
        /// Serde helper: a byte array as lowercase hex.
        pub(crate) mod $name {
            use serde::{de::Error, Deserialize, Deserializer, Serializer};

            pub fn serialize<S: Serializer>(v: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(v))
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; $n], D::Error> {
                let text = String::deserialize(d)?;
                let mut out = [0u8; $n];
                hex::decode_to_slice(&text, &mut out).map_err(|_| {
                    D::Error::custom(format!("expected {} hex digits, found `{text}`", $n * 2))
                })?;
                Ok(out)
            }
        }
    };
}

hex_array!(hex32, 32);
hex_array!(hex64, 64);
