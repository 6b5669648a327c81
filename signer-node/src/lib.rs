//! signer-node
