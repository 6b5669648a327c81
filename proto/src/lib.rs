//! Wire formats shared by every component of the custody signer.
//!
//! `proto` holds what crosses a wire: REST API bodies, node↔coordinator frames and envelopes,
//! and the decoders for settlement transactions. It holds no secrets and does no I/O beyond
//! reading an audit log to verify it: sockets, TLS, config files, logging and the audit-log
//! writer are in the `runtime` crate.

pub mod api;
pub mod audit;
pub mod authz;
pub mod btc;
pub mod call;
pub mod eth;
pub mod hd;
pub mod intent;
pub mod lifecycle;
pub mod message;
pub mod payload;
pub mod presig;
pub mod reserves;
pub mod sig;
pub mod typed;
pub mod wire;

/// Chains a sign request may name.
pub const SUPPORTED_CHAINS: &[&str] = &["ethereum", "bitcoin"];
