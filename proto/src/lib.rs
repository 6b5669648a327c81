//! Wire formats shared by every component of the custody signer.
//!
//! `proto` holds what crosses a wire: REST API bodies, node↔coordinator frames and envelopes,
//! and the decoders for settlement transactions. It holds no secrets and does no I/O.

pub mod intent;
