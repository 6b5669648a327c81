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
    /// Hash of the exact payload to be signed, which approvals are bound to too.
    pub payload_hash: [u8; 32],
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

pub use proto::authz::Approval;
