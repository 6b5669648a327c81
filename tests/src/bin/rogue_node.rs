//! `rogue-node`: a *compromised guardian* for adversarial tests. It is the real signer node
//! (`signer_node::run_with_hook`) with one change: every partial signature it broadcasts in the
//! last signing round is off by one. Its own identity keys sign and encrypt the tampered message,
//! so the relay and the envelope checks pass it on; only the combined signature can expose it.
//!
//! Usage: `rogue-node --config node.toml --passphrase-file FILE [--tamper-gamma]`. With
//! `--tamper-gamma` it alters its round-2 `Γ` instead, which honest peers' proof checks catch
//! and attribute to it. With `--equivocate` it signs two versions of its round-1 broadcast (for a
//! relay that shows each to different parties). With `--dealer-fault F[,F…]` (each `wrong-sub-share`, `wrong-constant`,
//! `wrong-public-share` or `equivocate`) it cheats as a dealer in refresh and reshare ceremonies instead, with the
//! next fault of the list in each dealing. Never part of a deployment.

use std::{path::PathBuf, sync::Arc};

use cggmp24::{
    generic_ec::{Point, Scalar},
    signing::msg::Msg,
    supported_curves::Secp256k1,
};
use sha2::Sha256;

/// Which message the rogue alters.
#[derive(Clone, Copy)]
enum Mode {
    /// Its last-round partial signature, off by one: only the combined signature shows it.
    Partial,
    /// Its round-2 `Γ`, moved by the generator: the peers' proof checks name it as the culprit.
    Gamma,
    /// Its round-1 broadcast sent twice under one sequence number, the second with `Y` moved by
    /// the generator (both signed): a relay that shows each version to different parties makes
    /// them hold different round-1 broadcasts.
    Equivocate,
}

/// Alters the message in place, or returns a second version of it.
fn tamper(mode: Mode, bytes: &mut Vec<u8>) -> Option<Vec<u8>> {
    let Ok(mut msg) = ciborium::from_reader::<Msg<Secp256k1, Sha256>, _>(bytes.as_slice()) else {
        return None;
    };
    if let (Msg::Round1a(m), Mode::Equivocate) = (&mut msg, mode) {
        m.Y += Point::<Secp256k1>::generator();
        let mut twin = Vec::new();
        ciborium::into_writer(&msg, &mut twin).ok()?;
        eprintln!("rogue-node: signed a second round-1 broadcast");
        return Some(twin);
    }
    let changed = match (&mut msg, mode) {
        (Msg::Round4(m), Mode::Partial) => {
            m.partial_sig.sigma += Scalar::one();
            true
        }
        (Msg::Round2(m), Mode::Gamma) => {
            m.Gamma += Point::<Secp256k1>::generator();
            true
        }
        _ => false,
    };
    let mut out = Vec::new();
    if changed && ciborium::into_writer(&msg, &mut out).is_ok() {
        eprintln!("rogue-node: tampered a round message");
        *bytes = out;
    }
    None
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("usage: rogue-node --config F --passphrase-file F"))
    };
    let cfg = signer_node::config::NodeConfig::load(&arg("--config")?)?;
    let pass = std::fs::read_to_string(arg("--passphrase-file")?)?;
    let pass = signer_node::secret::Passphrase::new(pass);
    signer_node::cli::init_tracing();
    let rt = tokio::runtime::Runtime::new()?;
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let mode = match (has("--tamper-gamma"), has("--equivocate")) {
        (true, _) => Mode::Gamma,
        (_, true) => Mode::Equivocate,
        _ => Mode::Partial,
    };
    use signer_node::reshare::ceremony::DealerFault;
    let faults = match args
        .iter()
        .position(|a| a == "--dealer-fault")
        .and_then(|i| args.get(i + 1))
    {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|f| match f {
                "wrong-sub-share" => Ok(DealerFault::WrongSubShare),
                "wrong-constant" => Ok(DealerFault::WrongConstant),
                "equivocate" => Ok(DealerFault::Equivocate),
                "wrong-public-share" => Ok(DealerFault::WrongPublicShare),
                other => Err(anyhow::anyhow!("unknown dealer fault `{other}`")),
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let hook: Option<signer_node::mpc::OutgoingHook> = match faults.is_empty() {
        false => None,
        true => Some(Arc::new(move |b: &mut Vec<u8>| tamper(mode, b))),
    };
    rt.block_on(async {
        let health = match &cfg.health_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        signer_node::run_adversarial(
            cfg,
            pass,
            health,
            signer_node::cli::shutdown_signal(),
            (hook, faults),
        )
        .await?;
        Ok::<(), anyhow::Error>(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
