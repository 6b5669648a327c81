//! REST API bodies of the coordinator. Documented in `docs/api.md` and `docs/openapi.json`.

use serde::{Deserialize, Serialize};

/// `POST /v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Caller-chosen key id: 1–64 characters of `[A-Za-z0-9._-]`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub key_id: String,
    /// Signers needed (t), 2 ≤ t ≤ n.
    #[cfg_attr(feature = "openapi", schema(minimum = 2))]
    pub threshold: u16,
    /// Registered node ids that will hold shares (n of them).
    pub nodes: Vec<String>,
}

/// Lifecycle of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// DKG or aux-info is running.
    Generating,
    /// Every node holds a complete share.
    Ready,
    /// The ceremony failed; see `error`.
    Failed,
}

/// `GET /v1/keys/{key_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyInfo {
    /// Key id.
    pub key_id: String,
    /// Lifecycle state.
    pub status: KeyStatus,
    /// t.
    pub threshold: u16,
    /// Share holders, in keygen index order.
    pub nodes: Vec<String>,
    /// Compressed secp256k1 public key, hex (present once ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// HD chain code from the DKG (hex): with `public_key`, the key's master xpub, from which
    /// every account's keys are derived (present once ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_code: Option<String>,
    /// Ethereum address of the key (present once ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethereum_address: Option<String>,
    /// P2WPKH address of the key per Bitcoin network (present once ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitcoin: Option<std::collections::BTreeMap<String, String>>,
    /// Why the ceremony failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Freeze state of the key as each connected node reports it (filled in on read).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub freeze: std::collections::BTreeMap<String, crate::authz::FreezeState>,
    /// Set after a security incident (a combined signature failed verification): the
    /// coordinator starts no signing with this key until an operator unlocks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<KeyLock>,
    /// The share epoch that signs: 0 from DKG, one more per activated refresh or reshare
    /// (`threshold` and `nodes` are the epoch's).
    #[serde(default)]
    pub epoch: u64,
    /// The latest refresh or reshare ceremony of the key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceremony: Option<CeremonyView>,
    /// The key's scheduled refresh, when the policy sets `refresh_every` for it (filled in on
    /// read from the latest policy the coordinator relayed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshView>,
}

/// A key's scheduled refresh (`refresh_every` in the signed policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshView {
    /// The policy's `refresh_every`, in seconds.
    pub every_secs: u64,
    /// When the current epoch became active here (unix seconds).
    pub since: u64,
    /// When the next refresh is due (unix seconds).
    pub due_at: u64,
    /// No refresh activated within the grace period after `due_at`
    /// ([`crate::lifecycle::refresh_grace`]): see the ceremony's error and the nodes.
    pub overdue: bool,
}

/// Where a refresh or reshare ceremony is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CeremonyPhase {
    /// Dealers deal, parties agree and new guardians store their pending shares; the old
    /// epoch keeps signing.
    Dealing,
    /// Every new guardian confirmed its share; the certificate is stored and nodes are
    /// activating the new epoch (the coordinator already signs in it).
    Activating,
    /// Every new guardian activated the new epoch.
    Active,
    /// Nothing changed: the old epoch keeps signing (see `error` and `blamed`).
    Failed,
}

/// A refresh or reshare ceremony as `GET /v1/keys/{key_id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CeremonyView {
    /// Refresh or reshare.
    pub kind: crate::lifecycle::MembershipKind,
    /// The epoch the ceremony creates.
    pub epoch: u64,
    /// Where it is.
    pub phase: CeremonyPhase,
    /// The new guardians.
    pub guardians: Vec<String>,
    /// The new threshold.
    pub threshold: u16,
    /// The dealers of the last attempt.
    #[serde(default)]
    pub dealers: Vec<String>,
    /// Per node: what it reported (`stored`, `activated`, or a refusal's code).
    #[serde(default)]
    pub progress: std::collections::BTreeMap<String, String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Parties the nodes named as cheating or absent.
    #[serde(default)]
    pub blamed: Vec<String>,
    /// Start (unix seconds).
    pub started_at: u64,
    /// Started by the policy's schedule (`refresh_every`), not by an officers' order.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scheduled: bool,
}

/// Why a key is locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyLock {
    /// Stable code of the incident, e.g. `signature.invalid`.
    pub code: String,
    /// What happened.
    pub message: String,
    /// The request whose signing raised it.
    pub request_id: String,
    /// The parties of the failed session.
    pub parties: Vec<String>,
    /// The nodes that reported it.
    pub reported_by: Vec<String>,
    /// When (coordinator clock, unix seconds).
    pub at: u64,
}

/// `POST /v1/sign-requests`. Exactly one of `unsigned_tx`, `psbt`, `message` or `typed_data`
/// is present.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignRequestBody {
    /// Client's idempotency key: 1–128 characters of `[A-Za-z0-9._:-]`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$"))]
    pub request_id: String,
    /// Which key signs.
    pub key_id: String,
    /// `ethereum` or `bitcoin`.
    #[cfg_attr(feature = "openapi", schema(example = "ethereum"))]
    pub chain: String,
    /// Bitcoin network: `mainnet`, `testnet`, `signet` or `regtest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Ethereum: hex (optionally `0x`-prefixed) unsigned EIP-2718 type-2 transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsigned_tx: Option<String>,
    /// Bitcoin: base64 unsigned PSBT whose inputs spend P2WPKH outputs of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psbt: Option<String>,
    /// Proof of reserves: a UTF-8 message (EIP-191 on ethereum, BIP-322 simple on bitcoin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Ethereum: EIP-712 typed data as `eth_signTypedData_v4` takes it (`types`, `primaryType`,
    /// `domain`, `message`); the nodes sign only what their policy's `[typed_data]` allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub typed_data: Option<serde_json::Value>,
    /// Segregated account the request spends from (its derived key signs; every input must be
    /// the account's). Absent: the key's master public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Bitcoin message of an account: which of its addresses (`m/a/i`) signs (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 7))]
    pub address_index: Option<u32>,
}

/// Status of a sign request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Accepted, waiting for signers.
    Pending,
    /// An MPC session is running.
    Signing,
    /// Signed and verified; final.
    Signed,
    /// Waiting: fewer than t nodes allow it yet (time-lock, approvals); see `not_before` and
    /// `missing_approvals`. Re-evaluated and signed automatically once signable.
    Deferred,
    /// Refused by policy on enough nodes that it can never be signed; final.
    Denied,
    /// Vetoed by a guardian; final.
    Cancelled,
    /// Failed; final. See `error`.
    Failed,
}

impl RequestStatus {
    /// Whether no further change can happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestStatus::Signed
                | RequestStatus::Denied
                | RequestStatus::Failed
                | RequestStatus::Cancelled
        )
    }
}

/// An Ethereum-style signature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignatureView {
    /// 0x-hex, 32 bytes.
    pub r: String,
    /// 0x-hex, 32 bytes, low-s.
    pub s: String,
    /// y parity (0 or 1); for EIP-1559 `v` equals `y_parity`.
    pub v: u8,
    /// y parity (0 or 1).
    pub y_parity: u8,
}

/// `GET /v1/sign-requests/{request_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignRequestView {
    /// Client's id.
    pub request_id: String,
    /// Key.
    pub key_id: String,
    /// Chain.
    pub chain: String,
    /// Current status.
    pub status: RequestStatus,
    /// Nodes of the session that produced (or is producing) the signature.
    #[serde(default)]
    pub signers: Vec<String>,
    /// Present when `signed` (the first signature, for multi-input Bitcoin transactions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureView>,
    /// Every signature, one per signed part (per input of a PSBT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureView>,
    /// BIP-322 simple signature, base64 (Bitcoin message requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bip322_signature: Option<String>,
    /// Hex raw signed transaction, ready to broadcast (when `signed`; `0x`-prefixed for Ethereum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_tx: Option<String>,
    /// Present when `failed`, `denied` or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Each node's latest verdict, with the rule tags behind it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub verdicts: std::collections::BTreeMap<String, crate::authz::NodeVerdict>,
    /// When `deferred`: the earliest time at which enough nodes' time-locks have passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// When `deferred`: approver group → approvals still missing.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub missing_approvals: std::collections::BTreeMap<String, u32>,
    /// Approvals received (the nodes decide which count).
    #[serde(default)]
    pub approvals: u32,
    /// Parts signed from presignatures (the rest by full interactive signing).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub presigned: u32,
}

/// Error body: a stable machine `code` and a message for humans.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable code, e.g. `request.bare_digest`.
    pub code: String,
    /// Human-readable explanation; never the text of an internal error.
    pub message: String,
}

/// Checks a key id: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn valid_key_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Approvals one request carries, at the coordinator's API and on every node: more are refused
/// (`approvals.too_many`). Each costs every node a signature check per evaluation and a line of
/// its audit log.
pub const MAX_APPROVALS_PER_REQUEST: usize = 32;

/// Longest request id (bytes); see [`valid_request_id`].
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Checks a request id: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn valid_request_id(s: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// Checks a node id: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn valid_node_id(s: &str) -> bool {
    valid_key_id(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(valid_key_id("treasury-1"));
        assert!(!valid_key_id(""));
        assert!(!valid_key_id("a/b"));
        assert!(!valid_key_id(&"x".repeat(65)));
        assert!(valid_request_id("wd:2026-11-24.001"));
        assert!(!valid_request_id("has space"));
    }

    #[test]
    fn sign_body_rejects_unknown_fields() {
        let r: Result<SignRequestBody, _> = serde_json::from_str(
            r#"{"request_id":"a","key_id":"k","chain":"ethereum","unsigned_tx":"02","digest":"00"}"#,
        );
        assert!(r.is_err());
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// `GET /v1/keys/{key_id}/presignatures`: the key's presignature pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresigPoolView {
    /// Key.
    pub key_id: String,
    /// Target number of unused presignatures per signer subset (0: no pool).
    pub depth: u32,
    /// Unused presignatures in all subsets.
    pub available: u64,
    /// Age in seconds of the oldest unused presignature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_secs: Option<u64>,
    /// Presignatures made in the last 60 seconds (the refill rate per minute).
    pub refilled_last_minute: u64,
    /// Presignatures made since the coordinator started.
    pub made_total: u64,
    /// Presignatures used for signatures since the coordinator started.
    pub used_total: u64,
    /// Refill sessions failed since the coordinator started.
    pub failed_total: u64,
    /// Per signer subset.
    pub subsets: Vec<SubsetPoolView>,
}

/// The pool of one signer subset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubsetPoolView {
    /// The t nodes whose presignatures these are.
    pub parties: Vec<String>,
    /// Unused presignatures.
    pub available: u64,
    /// Age in seconds of the oldest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_secs: Option<u64>,
}

/// Body of `PUT /v1/keys/{key_id}/presignatures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PresigDepthBody {
    /// Target unused presignatures per signer subset; 0 turns the pool off.
    #[cfg_attr(feature = "openapi", schema(maximum = 64))]
    pub depth: u32,
}

/// `POST /v1/keys/{key_id}/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAccountBody {
    /// Account name: 1–64 characters of `[A-Za-z0-9._-]`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub name: String,
}

/// One address of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountAddress {
    /// Address index `i`.
    pub index: u32,
    /// `m/a/i`.
    pub path: String,
    /// Compressed public key (hex).
    pub public_key: String,
    /// Ethereum address of this key (the account's Ethereum address is index 0's).
    pub ethereum_address: String,
    /// P2WPKH address per Bitcoin network.
    pub bitcoin: std::collections::BTreeMap<String, String>,
}

/// `GET /v1/keys/{key_id}/accounts/{account}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    /// Key.
    pub key_id: String,
    /// Account name.
    pub name: String,
    /// Account number `a`.
    pub index: u32,
    /// `m/a`.
    pub path: String,
    /// `ready` once at least t nodes derived the same keys; `pending` before.
    pub status: String,
    /// Compressed public key of `m/a` (hex), as the nodes derived it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Chain code of `m/a` (hex): with `public_key`, the account's xpub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_code: Option<String>,
    /// The account's Ethereum address (`m/a/0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethereum_address: Option<String>,
    /// Its addresses `m/a/0 ..`.
    #[serde(default)]
    pub addresses: Vec<AccountAddress>,
    /// Nodes that registered the account and derived these keys.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Creation (unix seconds).
    pub created_at: u64,
}

/// `POST /v1/keys/{key_id}/reserves`: start a proof-of-reserves report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReservesBody {
    /// Report id (idempotency key): 1–64 characters of `[A-Za-z0-9._-]`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._-]{1,64}$"))]
    pub report_id: String,
    /// Accounts to cover.
    pub accounts: Vec<String>,
    /// The auditor's statement (a date, a block height, a nonce) every attestation includes.
    pub statement: String,
    /// Bitcoin network of the P2WPKH addresses (default `mainnet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitcoin_network: Option<String>,
    /// Bitcoin addresses per account, `m/a/0 ..` (default and maximum: the account's 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 8))]
    pub bitcoin_addresses: Option<u32>,
}

/// `GET /v1/keys/{key_id}/reserves/{report_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReservesView {
    /// Report id.
    pub report_id: String,
    /// `signing`, `complete` or `failed`.
    pub status: String,
    /// Attestations signed so far.
    pub signed: usize,
    /// Attestations in the report.
    pub total: usize,
    /// The sign requests behind it (one per address).
    pub requests: Vec<String>,
    /// Why it failed (the first failed attestation's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// The report, once complete: verify it offline with `policy reserves-verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::reserves::ReservesReport>,
}
