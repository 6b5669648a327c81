//! Cluster harness shared by the devnet launcher and the integration tests.

pub mod api;
pub mod cluster;
pub mod devnet_cli;
pub mod governance;
pub mod lifecycle;
pub mod pki;
pub mod rogue;
pub mod sample;

/// TEST-ONLY Paillier primes committed in `tests/fixtures`. Never use them outside tests: they
/// are public, so anyone can read the Paillier secret keys of a node built from them.
pub fn test_primes() -> anyhow::Result<Vec<signer_node::mpc::Primes>> {
    let text = include_str!("../fixtures/TEST-ONLY-paillier-primes.json");
    Ok(serde_json::from_str(text)?)
}
