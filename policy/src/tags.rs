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
/// Contract calls are refused unless the chain allows them (`contract_calls = true`), which
/// allows nothing by itself: the call must also pass the `contract.*` rules.
pub const SCOPE_CONTRACT_CALL: &str = "scope.contract_call";
/// A contract call goes to a `[contracts.<name>]` of the policy on the intent's chain (or is an
/// allowance on a token of the policy, or on Permit2); a contract creation never does.
pub const CONTRACT_UNKNOWN: &str = "contract.unknown";
/// The calldata's selector is a function the contract's entry names.
pub const CONTRACT_FUNCTION: &str = "contract.function";
/// The calldata is exactly the canonical ABI encoding of its decoded arguments, every argument
/// constraint holds, and native value goes only to a payable function that counts no token.
pub const CONTRACT_ARG: &str = "contract.arg";
/// A function that carries other calls is refused unless the policy opens it (`inner`); then
/// every inner call is decoded and judged, nests no further, and all move one asset.
pub const CONTRACT_NESTED: &str = "contract.nested";
/// EIP-712 typed data names a domain (chainId, verifyingContract, and name and version where
/// the entry gives them) of a `[typed_data.<name>]` of the policy.
pub const TYPED_DATA_DOMAIN: &str = "typed_data.domain";
/// The typed data's primary type is the entry's, and every field constraint holds.
pub const TYPED_DATA_FIELD: &str = "typed_data.field";
/// An unlimited ERC-20 or Permit2 allowance (or EIP-2612 permit) is refused unless the token's
/// `unlimited_spenders` names the spender.
pub const ALLOWANCE_UNLIMITED: &str = "allowance.unlimited";
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
pub const ALL: [&str; 24] = [
    INTENT_SHAPE,
    FREEZE,
    REQUEST_EXPIRED,
    SCOPE_KEY,
    SCOPE_CHAIN,
    SCOPE_ASSET,
    SCOPE_CONTRACT_CALL,
    CONTRACT_UNKNOWN,
    CONTRACT_FUNCTION,
    CONTRACT_ARG,
    CONTRACT_NESTED,
    TYPED_DATA_DOMAIN,
    TYPED_DATA_FIELD,
    ALLOWANCE_UNLIMITED,
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

/// No `[keys.<key id>]` section: every withdrawal is denied by `scope.key`.
pub const WARN_NO_KEYS: &str = "warn.no_keys";
/// An asset, account or class limits section without velocity windows: only `per_tx` bounds it.
pub const WARN_VELOCITY_MISSING: &str = "warn.velocity_missing";
/// A velocity window's max is at or above the asset's lowest time-lock or approval tier, so
/// withdrawals split below the tier avoid it up to the window's max.
pub const WARN_TIER_SPLIT: &str = "warn.tier_split";
/// `destinations.require_allowlist = false`: any destination not denied may receive funds.
pub const WARN_ALLOWLIST_NOT_REQUIRED: &str = "warn.allowlist_not_required";
/// An account or class allowlist while the allowlist is not required: it restricts nothing.
pub const WARN_ALLOWLIST_IGNORED: &str = "warn.allowlist_ignored";
/// An address on both the allowlist and the denylist: it is denied.
pub const WARN_ALLOW_AND_DENY: &str = "warn.allow_and_deny";
/// A key frozen in the file signs nothing.
pub const WARN_KEY_FROZEN: &str = "warn.key_frozen";
/// A cool-down while the allowlist is not required: it delays nothing that is not allowlisted.
pub const WARN_COOLDOWN_UNUSED: &str = "warn.cooldown_unused";

/// Every warning tag of `policy check` ([`crate::PolicyWarning::tag`]); warnings never make a
/// policy invalid.
pub const WARNINGS: [&str; 8] = [
    WARN_NO_KEYS,
    WARN_VELOCITY_MISSING,
    WARN_TIER_SPLIT,
    WARN_ALLOWLIST_NOT_REQUIRED,
    WARN_ALLOWLIST_IGNORED,
    WARN_ALLOW_AND_DENY,
    WARN_KEY_FROZEN,
    WARN_COOLDOWN_UNUSED,
];
