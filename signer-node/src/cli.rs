//! Command line of `signer-node`.

use std::{io::IsTerminal, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{config::NodeConfig, seal::KdfParams, secret::Passphrase};

/// Environment variable that may hold the passphrase (never a CLI argument).
pub const PASSPHRASE_ENV: &str = "SIGNER_NODE_PASSPHRASE";

/// A guardian's signer node.
#[derive(Parser, Debug)]
#[command(name = "signer-node", version)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create the node's store, identity keys and Paillier primes (about a minute).
    Init {
        /// Directory for the node's store.
        #[arg(long)]
        data_dir: PathBuf,
        /// This node's id, e.g. `node-1`.
        #[arg(long)]
        node_id: String,
        /// Read the passphrase from this file (else $SIGNER_NODE_PASSPHRASE, else a prompt).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Print the public identity as JSON only.
        #[arg(long)]
        json: bool,
    },
    /// Verify the hash-chained audit log, or export it as JSON lines.
    Audit {
        #[command(subcommand)]
        action: proto::process::AuditCmd,
    },
    /// Create an offline recovery identity (age X25519) and print its recipient.
    RecoveryKeygen {
        /// Where to write the identity (mode 0600; never overwritten). Keep it offline.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write an encrypted backup of the node's whole state (stop the node first).
    Backup {
        /// Path to node.toml.
        #[arg(long)]
        config: PathBuf,
        /// Read the passphrase from this file (else $SIGNER_NODE_PASSPHRASE, else a prompt).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// The recovery recipient (`age1…`, from `recovery-keygen`).
        #[arg(long)]
        recipient: String,
        /// The backup file to create (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild a node's store from a backup and the recovery identity, under a new passphrase.
    Restore {
        /// The backup file.
        #[arg(long)]
        backup: PathBuf,
        /// The recovery identity file.
        #[arg(long)]
        identity: PathBuf,
        /// Directory for the restored store (must not hold one).
        #[arg(long)]
        data_dir: PathBuf,
        /// Read the new passphrase from this file (else $SIGNER_NODE_PASSPHRASE, else a prompt).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Run the node: dial the coordinator and take part in ceremonies and signing.
    Run {
        /// Path to node.toml.
        #[arg(long)]
        config: PathBuf,
        /// Read the passphrase from this file (else $SIGNER_NODE_PASSPHRASE, else a prompt).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

fn passphrase(file: Option<&PathBuf>, confirm: bool) -> anyhow::Result<Passphrase> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read passphrase file `{}`", f.display()))?;
        return Ok(Passphrase::new(s));
    }
    if let Ok(s) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Passphrase::new(s));
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "no passphrase: pass --passphrase-file, set {PASSPHRASE_ENV}, or run in a terminal"
        );
    }
    let p = Passphrase::new(rpassword::prompt_password("node passphrase: ")?);
    if confirm {
        let again = rpassword::prompt_password("repeat passphrase: ")?;
        if again != p.expose_secret() {
            anyhow::bail!("passphrases differ");
        }
    }
    if p.expose_secret().is_empty() {
        anyhow::bail!("empty passphrase");
    }
    Ok(p)
}

/// Entry point shared by the `signer-node` binary and the devnet launcher.
pub fn main_with(args: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(args);
    match cli.cmd {
        Cmd::Init {
            data_dir,
            node_id,
            passphrase_file,
            json,
        } => {
            let pass = passphrase(passphrase_file.as_ref(), true)?;
            let public = crate::init::init_node(
                &data_dir,
                &node_id,
                &pass,
                None,
                KdfParams::default(),
                !json && std::io::stderr().is_terminal(),
            )?;
            let text = serde_json::to_string_pretty(&public)?;
            if json {
                println!("{text}");
            } else {
                println!("initialised node `{node_id}` in `{}`", data_dir.display());
                println!("public identity (add it to every node's roster):\n{text}");
            }
            Ok(())
        }
        Cmd::RecoveryKeygen { out } => {
            println!("{}", crate::backup::recovery_keygen(&out)?);
            Ok(())
        }
        Cmd::Backup {
            config,
            passphrase_file,
            recipient,
            out,
        } => {
            let cfg = NodeConfig::load(&config)?;
            let pass = passphrase(passphrase_file.as_ref(), false)?;
            let (store, _) = crate::open_and_validate(&cfg, &pass).map_err(|e| {
                anyhow::anyhow!("{e} (a running node holds its store: stop it before a backup)")
            })?;
            let names = crate::backup::backup(&store, &recipient, &out)?;
            eprintln!(
                "backup of `{}` written to `{}` ({} secret records: {})",
                cfg.node_id,
                out.display(),
                names.len(),
                names.join(", ")
            );
            Ok(())
        }
        Cmd::Restore {
            backup,
            identity,
            data_dir,
            passphrase_file,
        } => {
            let pass = passphrase(passphrase_file.as_ref(), true)?;
            let node = crate::backup::restore(&backup, &identity, &data_dir, &pass)?;
            eprintln!("restored node `{node}` into `{}`", data_dir.display());
            Ok(())
        }
        Cmd::Audit { action } => Ok(proto::process::audit_command(action)?),
        Cmd::Run {
            config,
            passphrase_file,
        } => {
            crate::cli::init_tracing();
            let cfg = NodeConfig::load(&config)?;
            let pass = passphrase(passphrase_file.as_ref(), false)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(crate::run(cfg, pass, shutdown_signal()))?;
            Ok(())
        }
    }
}

pub use proto::process::{init_tracing, shutdown_signal};
