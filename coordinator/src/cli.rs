//! Command line of `coordinator`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::CoordConfig;

/// The custody coordinator.
#[derive(Parser, Debug)]
#[command(name = "coordinator", version)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the REST API and the node link.
    Run {
        /// Path to coordinator.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Verify the hash-chained audit log, or export it as JSON lines.
    Audit {
        #[command(subcommand)]
        action: runtime::audit::AuditCmd,
    },
    /// Print the SHA-256 to put in `api_token_sha256` for a token read from stdin.
    HashToken,
    /// Manage scoped API credentials; a running coordinator picks up changes at once.
    Credential {
        #[command(subcommand)]
        action: CredentialCmd,
    },
    /// Key operations on a stopped coordinator's store (a running one: `POST
    /// /v1/keys/{id}/unlock`).
    Key {
        #[command(subcommand)]
        action: KeyCmd,
    },
}

/// `key` subcommands.
#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// Clear the lock a security incident put on a key, after investigating it.
    Unlock {
        /// Path to coordinator.toml.
        #[arg(long)]
        config: PathBuf,
        /// The key.
        #[arg(long)]
        key: String,
        /// Why (written to the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn key_command(action: KeyCmd) -> anyhow::Result<()> {
    let KeyCmd::Unlock {
        config,
        key,
        reason,
    } = action;
    let cfg = CoordConfig::load(&config)?;
    let store = crate::store::Store::open(&cfg.data_dir).map_err(|e| {
        anyhow::anyhow!("{e}; if the coordinator is running, use POST /v1/keys/{key}/unlock")
    })?;
    let Some(lock) = crate::faults::unlock(&store, &key)? else {
        anyhow::bail!("key `{key}` is not locked (or does not exist)");
    };
    let mut audit = runtime::audit::AuditLog::open(&cfg.data_dir.join(crate::AUDIT_FILE))?;
    audit.append(
        crate::control::unix_now(),
        "key.unlocked",
        serde_json::json!({"key_id": key, "by": "cli", "reason": reason, "lock": lock}),
    )?;
    eprintln!(
        "unlocked `{key}` (locked at {} for {} on request `{}`)",
        lock.at, lock.code, lock.request_id
    );
    Ok(())
}

/// `credential` subcommands.
#[derive(Subcommand, Debug)]
enum CredentialCmd {
    /// Create a credential and print its token once (only its SHA-256 is stored).
    Add {
        /// The credentials file (`credentials_file` in coordinator.toml).
        #[arg(long)]
        file: PathBuf,
        /// Name of the credential, e.g. `exchange-hot`.
        #[arg(long)]
        id: String,
        /// Scopes: `submit`, `approve`, `operate`, `read` (repeat for several).
        #[arg(long = "scope", value_enum, required = true)]
        scopes: Vec<crate::auth::Scope>,
        /// Requests per second (and burst); the configured default if omitted.
        #[arg(long)]
        rate: Option<u32>,
    },
    /// Revoke a credential.
    Revoke {
        /// The credentials file.
        #[arg(long)]
        file: PathBuf,
        /// Name of the credential.
        #[arg(long)]
        id: String,
    },
    /// List credentials (ids and scopes).
    List {
        /// The credentials file.
        #[arg(long)]
        file: PathBuf,
    },
}

fn credential_command(action: CredentialCmd) -> anyhow::Result<()> {
    match action {
        CredentialCmd::Add {
            file,
            id,
            scopes,
            rate,
        } => println!("{}", crate::auth::add(&file, &id, &scopes, rate)?),
        CredentialCmd::Revoke { file, id } => {
            if !crate::auth::revoke(&file, &id)? {
                anyhow::bail!("no credential `{id}` in `{}`", file.display());
            }
            eprintln!("revoked `{id}`");
        }
        CredentialCmd::List { file } => {
            for c in crate::auth::load(&file)? {
                let scopes: Vec<&str> = c.scopes.iter().map(|s| s.as_str()).collect();
                println!("{}\t{}", c.id, scopes.join(","));
            }
        }
    }
    Ok(())
}

/// Entry point shared by the `coordinator` binary and the devnet launcher.
pub fn main_with(args: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(args);
    match cli.cmd {
        Cmd::Run { config } => {
            init_tracing();
            let cfg = CoordConfig::load(&config)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let api = tokio::net::TcpListener::bind(&cfg.api_listen)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot bind API address `{}`: {e}", cfg.api_listen)
                    })?;
                let nodes = tokio::net::TcpListener::bind(&cfg.node_listen)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot bind node address `{}`: {e}", cfg.node_listen)
                    })?;
                crate::run(cfg, api, nodes, shutdown_signal()).await?;
                Ok::<(), anyhow::Error>(())
            })
        }
        Cmd::Audit { action } => Ok(runtime::audit::audit_command(action)?),
        Cmd::Credential { action } => credential_command(action),
        Cmd::Key { action } => key_command(action),
        Cmd::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            println!("{}", token_sha256(token.trim()));
            Ok(())
        }
    }
}

/// Hex SHA-256 of an API token, as stored in the config.
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

pub use runtime::{logging::init_tracing, signals::shutdown_signal};
