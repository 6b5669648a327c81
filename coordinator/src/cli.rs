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
    /// Bootstrap API tokens (every scope): `token new` makes one.
    Token {
        #[command(subcommand)]
        action: TokenCmd,
    },
    /// The cluster's certificate authority and certificates with the names each side checks.
    Pki {
        #[command(subcommand)]
        action: PkiCmd,
    },
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

/// `token` subcommands.
#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Make a random bootstrap token (256 bits, hex) and print its SHA-256, the value for
    /// `api_token_sha256`. The token is written to `--out` (mode 0600, never overwritten), or
    /// printed on the first line when `--out` is omitted; it is shown nowhere else.
    New {
        /// Write the token to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `pki` subcommands.
#[derive(Subcommand, Debug)]
enum PkiCmd {
    /// Create the cluster CA: `ca.pem` and `ca.key` (mode 0600) in `--dir`.
    Ca {
        /// Directory of the CA (keep it offline between uses).
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "custody cluster CA")]
        name: String,
    },
    /// Issue the coordinator's server certificate (`coordinator.pem`/`.key`). Every name a node
    /// (`coordinator_name` in node.toml) or an API client dials must be listed.
    Server {
        #[command(flatten)]
        common: IssueArgs,
        /// Host name or IP address (repeat for several).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
    },
    /// Issue a signer node's client certificate (`<node_id>.pem`/`.key`, DNS name
    /// `<node_id>.node`: the coordinator accepts a node's link only with its own certificate).
    Node {
        #[command(flatten)]
        common: IssueArgs,
        /// The node id, as in its `node.toml` and its store.
        #[arg(long)]
        node_id: String,
    },
    /// Issue an API client certificate (`<name>.pem`/`.key`); list the name in the
    /// coordinator's `api_client_cert_names` to accept it (scopes `submit` and `read`).
    Client {
        #[command(flatten)]
        common: IssueArgs,
        /// The certificate's name.
        #[arg(long)]
        name: String,
    },
}

/// Flags shared by the `pki` commands that issue a certificate.
#[derive(clap::Args, Debug)]
struct IssueArgs {
    /// Directory of the CA (`ca.pem`, `ca.key`).
    #[arg(long)]
    ca_dir: PathBuf,
    /// Where to write the certificate (and its key); defaults to the CA's directory.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Certify the public key of this PEM certificate signing request instead of making a key
    /// (the key stays on the machine that made the request).
    #[arg(long)]
    csr: Option<PathBuf>,
    /// Days the certificate is valid for.
    #[arg(long, default_value_t = crate::pki::LEAF_DAYS)]
    days: u32,
}

fn pki_command(action: PkiCmd) -> anyhow::Result<()> {
    use crate::pki::{create_ca, issue, Leaf};
    let (common, leaf) = match action {
        PkiCmd::Ca { dir, name } => {
            println!("{}", create_ca(&dir, &name)?.display());
            return Ok(());
        }
        PkiCmd::Server { common, names } => (common, Leaf::Server(names)),
        PkiCmd::Node { common, node_id } => (common, Leaf::Node(node_id)),
        PkiCmd::Client { common, name } => (common, Leaf::ApiClient(name)),
    };
    let out = common.out_dir.as_deref().unwrap_or(&common.ca_dir);
    let cert = issue(
        &common.ca_dir,
        out,
        &leaf,
        common.csr.as_deref(),
        common.days,
    )?;
    println!("{}", cert.display());
    Ok(())
}

fn token_command(action: TokenCmd) -> anyhow::Result<()> {
    use rand::RngCore;
    let TokenCmd::New { out } = action;
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut raw[..]);
    let token = zeroize::Zeroizing::new(hex::encode(&raw[..]));
    match out {
        Some(path) => {
            if path.exists() {
                anyhow::bail!("`{}` exists; refusing to overwrite it", path.display());
            }
            crate::pki::write_private(&path, token.as_bytes())?;
        }
        None => println!("{}", token.as_str()),
    }
    println!("{}", token_sha256(&token));
    Ok(())
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
        Cmd::Token { action } => token_command(action),
        Cmd::Pki { action } => pki_command(action),
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
