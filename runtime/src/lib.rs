//! Runtime plumbing shared by the two daemons, `signer-node` and `coordinator`: config files,
//! logging, shutdown signals, TLS configuration, length-prefixed frames on a socket and the
//! audit-log writer.
//!
//! What crosses a wire (frame and envelope types, the audit log's record format and its
//! verifier) stays in `proto`, which does no socket, TLS or async I/O, so offline tools and the
//! policy engine can use it without this crate. Only the daemons (and their tests) depend on it.

pub mod audit;
pub mod config;
pub mod frame;
pub mod logging;
pub mod signals;
pub mod tls;
