//! Withdrawal policy engine: the rules every signer node applies, on its own, to the withdrawal
//! it decoded itself.
//!
//! The engine is a pure function ([`evaluate`]): time, freeze state, the history of past signed
//! withdrawals and the approvals are all arguments, so that two nodes given the same inputs reach
//! byte-for-byte the same [`Decision`]. The library does no I/O, spawns no threads and has no
//! async; the `policy` binary is the only place that touches files.
//!
//! Policies are TOML files ([`Policy::from_toml`]) hashed over a canonical form
//! ([`Policy::hash`]) and distributed as [`Bundle`]s signed by k-of-m security officers.
//! The rule catalogue, with every stable tag in [`tags`], is in `docs/policy.md`.

mod address;
mod approval;
mod bundle;
mod calls;
mod decision;
mod error;
mod eval;
mod input;
mod literals;
mod model;
mod parse;
pub mod tags;

pub use approval::{
    approval_digest, sign_approval, ApprovalSubject, APPROVAL_DOMAIN, MAX_APPROVAL_LIFETIME_SECS,
};
pub use bundle::{
    officer_message, Bundle, BundleError, BundleReport, OfficerSignature, OFFICER_DOMAIN,
};
pub use decision::{Decision, Outcome, RuleResult, Verdict};
pub use error::{PolicyError, PolicyWarning};
pub use eval::{counted_intent, decoded_call, evaluate, evaluate_counted};
pub use input::{Approval, EvalContext, HistoryEntry};
pub use model::{Horizons, Policy, PolicyHash, POLICY_DOMAIN};

#[cfg(test)]
mod testutil;
