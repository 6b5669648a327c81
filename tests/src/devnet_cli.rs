//! Command line of the `devnet` launcher (`src/bin/devnet.rs`), in the library so that the
//! command reference (`docs/cli.md`) is generated from it.
//!
//! `devnet` is also a multi-call binary: `devnet signer-node …`, `devnet coordinator …` and
//! `devnet policy …` run the real node, coordinator and policy CLIs, and `devnet account-psbt ACCOUNT.json` prints a sample
//! sign request; those are dispatched before these arguments are parsed.

use std::path::PathBuf;

use clap::Parser;

/// Local custody cluster on loopback.
///
/// Also a multi-call binary: `devnet signer-node …`, `devnet coordinator …` and `devnet policy
/// …` run the `signer-node`, `coordinator` and `policy` commands, and `devnet account-psbt ACCOUNT.json`
/// prints a sign request withdrawing a regtest deposit from an account (as `GET
/// /v1/keys/{id}/accounts/{name}` returns it).
#[derive(Parser, Debug)]
#[command(name = "devnet")]
pub struct Args {
    /// Directory for all devnet state (reused by later runs).
    #[arg(long, default_value = "devnet")]
    pub dir: PathBuf,
    /// REST API port.
    #[arg(long, default_value_t = 8443)]
    pub api_port: u16,
    /// Node link port.
    #[arg(long, default_value_t = 8444)]
    pub node_port: u16,
    /// Number of signer nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Extra signer nodes that run but hold no share of the key (`node-4`, … after the
    /// key's nodes): a guardian to reshare the key to (README, "Replacing a guardian").
    #[arg(long, default_value_t = 0)]
    pub spare_nodes: usize,
    /// Signing threshold t.
    #[arg(long, default_value_t = 2)]
    pub threshold: u16,
    /// Key id of the devnet key.
    #[arg(long, default_value = "devnet-key")]
    pub key_id: String,
    /// Sign the sample request, print the result and exit (a smoke test of the README's path).
    #[arg(long)]
    pub smoke: bool,
    /// Only create certificates, node stores, configs and the sample request, then exit
    /// (docker-compose's setup step).
    #[arg(long)]
    pub prepare_only: bool,
    /// Host name nodes use to reach the coordinator (its certificate carries it too).
    #[arg(long, default_value = "127.0.0.1")]
    pub coordinator_host: String,
    /// Address the coordinator binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Presignatures kept ready per key and signer subset (refilled in the background).
    #[arg(long, default_value_t = 2)]
    pub presign_depth: u32,
    /// Let the nodes sign proof-of-reserves messages (`[scope] messages = true`; off by default).
    #[arg(long)]
    pub messages: bool,
}
