//! Stable rule tags.
//!
//! A tag names one rule everywhere: in `docs/policy.md`, in every [`crate::RuleResult`], in
//! audit records, in API error codes (`policy.<tag>`) and in the name of the tests that cover
//! it. Tags are never renamed; a rule that changes meaning gets a new tag.

/// The intent is well formed: a key id, payments for a transfer, none for a message, and
/// destinations that parse as addresses of the intent's chain.
pub const INTENT_SHAPE: &str = "intent.shape";
/// A frozen key signs nothing (runtime freeze held by the node, or `frozen = true` in the file).
pub const FREEZE: &str = "freeze";
/// The request has passed its expiry, or is older than `request.max_age`.
pub const REQUEST_EXPIRED: &str = "request.expired";
/// The key is listed in the policy.
pub const SCOPE_KEY: &str = "scope.key";
/// The chain (family and chain id or network) is in the policy and the key may use it.
pub const SCOPE_CHAIN: &str = "scope.chain";
/// The asset is in the policy and the key may move it.
pub const SCOPE_ASSET: &str = "scope.asset";
/// Contract calls are refused unless the chain allows them.
pub const SCOPE_CONTRACT_CALL: &str = "scope.contract_call";
/// Message signatures (proof of reserves) are refused unless the chain allows them.
pub const SCOPE_MESSAGE: &str = "scope.message";
/// An amount sum overflowed; the engine fails closed.
pub const AMOUNT_OVERFLOW: &str = "amount.overflow";
/// The fee is at most the chain's `max_fee`.
pub const FEE_MAX: &str = "fee.max";
/// The total of the payments is at most the asset's `per_tx`.
pub const LIMIT_PER_TX: &str = "limit.per_tx";
/// Rolling-window velocity limits per key and asset, optionally per destination.
pub const LIMIT_VELOCITY: &str = "limit.velocity";
/// No destination is on the denylist.
pub const DEST_DENY: &str = "dest.deny";
/// Every destination is on the allowlist.
pub const DEST_ALLOW: &str = "dest.allow";
/// Every allowlisted destination has been listed for at least the cool-down period.
pub const DEST_COOLDOWN: &str = "dest.cooldown";
/// Amounts at or above a tier wait the tier's delay after the node first saw the request.
pub const TIMELOCK_TIER: &str = "timelock.tier";
/// Amounts at or above a tier need valid approvals from named approver groups.
pub const APPROVAL_QUORUM: &str = "approval.quorum";

/// Every tag, in the order in which a [`crate::Decision`] lists them.
pub const ALL: [&str; 17] = [
    INTENT_SHAPE,
    FREEZE,
    REQUEST_EXPIRED,
    SCOPE_KEY,
    SCOPE_CHAIN,
    SCOPE_ASSET,
    SCOPE_CONTRACT_CALL,
    SCOPE_MESSAGE,
    AMOUNT_OVERFLOW,
    FEE_MAX,
    LIMIT_PER_TX,
    LIMIT_VELOCITY,
    DEST_DENY,
    DEST_ALLOW,
    DEST_COOLDOWN,
    TIMELOCK_TIER,
    APPROVAL_QUORUM,
];
