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
    /// Print this node's public identity and its fingerprint (from the sealed store, not from
    /// `identity.json`), or with `--roster` the fingerprint of every node of a roster, to compare
    /// out of band before anyone pins the roster.
    Identity {
        /// The node's store (needs its passphrase).
        #[arg(long, required_unless_present = "roster", conflicts_with = "roster")]
        data_dir: Option<PathBuf>,
        /// Read the passphrase from this file (else $SIGNER_NODE_PASSPHRASE, else a prompt).
        #[arg(long, requires = "data_dir")]
        passphrase_file: Option<PathBuf>,
        /// A roster (JSON array of public identities): print `node_id  fingerprint` per node.
        #[arg(long)]
        roster: Option<PathBuf>,
        /// Print JSON (the identity with its fingerprint, or an array of them).
        #[arg(long)]
        json: bool,
    },
    /// Verify the hash-chained audit log, or export it as JSON lines.
    Audit {
        #[command(subcommand)]
        action: runtime::audit::AuditCmd,
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
    /// Check a stopped node's state: every sealed record decrypts and parses, the audit log's
    /// chain holds, the stored policy verifies and the ledger is consistent. Prints a summary.
    Check {
        /// Path to node.toml.
        #[arg(long)]
        config: PathBuf,
        /// Read the passphrase from this file (else $SIGNER_NODE_PASSPHRASE, else a prompt).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Generate spare Paillier primes into a stopped node's store (about a minute), so that the
    /// next aux-info ceremony, a reshare to a new guardian set, does not wait for them. Does
    /// nothing if the node holds spare primes already.
    Primes {
        /// Path to node.toml.
        #[arg(long)]
        config: PathBuf,
        /// Read the passphrase from this file (else $SIGNER_NODE_PASSPHRASE, else a prompt).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

/// The public identity of the store at `dir`, derived from its sealed identity keys.
fn own_identity(
    dir: &std::path::Path,
    pass: &Passphrase,
) -> anyhow::Result<crate::identity::PublicIdentity> {
    let store = crate::store::Store::open(dir, pass)?;
    let bytes = store
        .get_secret(crate::identity::IDENTITY_RECORD)?
        .ok_or_else(|| anyhow::anyhow!("the store at `{}` holds no identity", dir.display()))?;
    let id =
        crate::identity::NodeIdentity::from_secret_bytes(store.node_id(), bytes.expose_secret())?;
    Ok(id.public())
}

/// A roster's identities, checked as a node checks them when it pins the roster.
fn read_roster(path: &std::path::Path) -> anyhow::Result<Vec<crate::identity::PublicIdentity>> {
    crate::identity::Roster::load(path)?;
    let text = std::fs::read_to_string(path)?;
    Ok(serde_json::from_str(&text)?)
}

/// Prints identities with their fingerprints; `one`: a single node's, as a JSON object.
fn print_identities(
    ids: &[crate::identity::PublicIdentity],
    json: bool,
    one: bool,
) -> anyhow::Result<()> {
    let with_fp: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "node_id": id.node_id,
                "sign_key": id.sign_key,
                "dh_key": id.dh_key,
                "fingerprint": id.fingerprint(),
            })
        })
        .collect();
    match (json, with_fp.as_slice()) {
        (true, [single]) if one => println!("{}", serde_json::to_string_pretty(single)?),
        (true, all) => println!("{}", serde_json::to_string_pretty(all)?),
        (false, _) => {
            for id in ids {
                println!("{}  {}", id.node_id, id.fingerprint());
            }
        }
    }
    Ok(())
}

fn check(config: &std::path::Path, pass: Passphrase) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(config)?;
    let (store, _identity) = crate::open_and_validate(&cfg, &pass)?;
    drop(pass);
    let roster = crate::identity::Roster::load(&cfg.roster)?;
    let audit_path = cfg.data_dir.join(crate::AUDIT_FILE);
    let anchored = store.state_get::<proto::audit::Anchor>(crate::AUDIT_ANCHOR)?;
    // Opening drops a torn final record left by a crash and checks the anchored head, exactly
    // as the node does at start.
    let (audit, torn) = match audit_path.exists() || anchored.is_some() {
        true => {
            let torn = crate::open_audit(&cfg, &store)?.torn_bytes();
            (Some(proto::audit::verify(&audit_path)?.records), torn)
        }
        false => (None, 0),
    };
    let roster = crate::reshare::known_peers(&store, &roster).map_err(anyhow::Error::msg)?;
    let ledger = crate::ledger::check(&store, &roster, &cfg.node_id)
        .map_err(|e| anyhow::anyhow!("ledger inconsistent: {e}"))?;
    let pinned = crate::policy_book::Pinned {
        officers: cfg.policy.officer_keys().map_err(anyhow::Error::msg)?,
        threshold: cfg.policy.threshold,
        activation_delay: cfg.policy.activation_delay_secs,
    };
    let book = crate::policy_book::PolicyBook::load(&store, pinned)?;
    let keys = check_keys(&store)?;
    let summary = serde_json::json!({
        "node_id": cfg.node_id,
        "secret_records": store.secret_names()?.len(),
        "audit_records": audit,
        "audit_torn_bytes_dropped": torn,
        "audit_anchor": anchored,
        "policy": book.active_info(),
        "ledger": ledger,
        "keys": keys,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// Each key's share epoch, guardians and threshold, with the share of its active epoch (and any
/// pending one) opened and parsed: a key that signs without a readable share of its epoch, or
/// with a share of another public key, is an error.
fn check_keys(store: &crate::store::Store) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for meta in store.key_metas()? {
        let active = meta.complete.then_some(meta.epoch);
        let pending = meta.pending.as_ref().map(|p| p.epoch);
        for epoch in active.into_iter().chain(pending) {
            let record = crate::plan::share_record(&meta.key_id, epoch);
            let share: crate::mpc::KeyShare = crate::plan::load_json(store, &record)
                .map_err(|f| anyhow::anyhow!("{}: {}", f.code, f.message))?
                .with_context(|| format!("key `{}` has no share of epoch {epoch}", meta.key_id))?;
            let public = share.core.key_info.shared_public_key.to_bytes(true);
            anyhow::ensure!(
                public.as_bytes() == meta.public_key.as_slice(),
                "key `{}`: the share of epoch {epoch} is of another public key",
                meta.key_id
            );
        }
        out.push(serde_json::json!({
            "key_id": meta.key_id,
            "epoch": meta.epoch,
            "holds_share": meta.complete,
            "guardians": meta.group,
            "threshold": meta.threshold,
            "pending_epoch": pending,
        }));
    }
    Ok(out)
}

/// The passphrase from `--passphrase-file`, else `$SIGNER_NODE_PASSPHRASE` (taken out of the
/// environment by [`main_with`] before anything else ran), else a prompt. An empty or
/// whitespace-only passphrase is refused whatever its source.
fn passphrase(
    file: Option<&PathBuf>,
    env: Option<anyhow::Result<Passphrase>>,
    confirm: bool,
) -> anyhow::Result<Passphrase> {
    if let Some(f) = file {
        return non_empty(
            read_passphrase_file(f)?,
            &format!("passphrase file `{}`", f.display()),
        );
    }
    if let Some(p) = env {
        return p;
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
    non_empty(p, "the passphrase prompt")
}

/// Reads the passphrase from the environment variable `name`, then removes the variable from
/// this process's environment so that child processes do not inherit it. (On Linux,
/// `/proc/<pid>/environ` keeps the value the process started with; `--passphrase-file` avoids
/// that.)
fn take_env(name: &str) -> anyhow::Result<Option<Passphrase>> {
    let Some(value) = std::env::var_os(name) else {
        return Ok(None);
    };
    std::env::remove_var(name);
    let bytes = zeroize::Zeroizing::new(value.into_encoded_bytes());
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow::anyhow!("${name} is not valid UTF-8"))?;
    non_empty(Passphrase::new(text.to_owned()), &format!("${name}")).map(Some)
}

/// Reads a passphrase file into a buffer sized from the file's length and wiped on drop, so
/// that no reallocation leaves a copy behind.
fn read_passphrase_file(f: &std::path::Path) -> anyhow::Result<Passphrase> {
    use std::io::Read;
    let what = || format!("cannot read passphrase file `{}`", f.display());
    let file = std::fs::File::open(f).with_context(what)?;
    let len = file.metadata().with_context(what)?.len();
    let mut buf =
        zeroize::Zeroizing::new(Vec::with_capacity(usize::try_from(len)?.saturating_add(1)));
    file.take(len).read_to_end(&mut buf).with_context(what)?;
    let text = std::str::from_utf8(&buf)
        .map_err(|_| anyhow::anyhow!("passphrase file `{}` is not valid UTF-8", f.display()))?;
    Ok(Passphrase::new(text.to_owned()))
}

/// What every subcommand does first, while the process has one thread: takes the passphrase
/// out of the environment (whether or not this subcommand reads it, so that no child process
/// or later code finds it there), and applies the process hardening of [`crate::run`] to every
/// subcommand that handles secrets (all but `audit`).
fn secure_start(cmd: &Cmd) -> anyhow::Result<Option<anyhow::Result<Passphrase>>> {
    let env = take_env(PASSPHRASE_ENV).transpose();
    if !matches!(cmd, Cmd::Audit { .. }) {
        crate::hygiene::harden_process().map_err(|e| anyhow::anyhow!("process hardening: {e}"))?;
    }
    Ok(env)
}

/// Refuses an empty or whitespace-only passphrase, naming where it came from.
fn non_empty(p: Passphrase, source: &str) -> anyhow::Result<Passphrase> {
    if p.expose_secret().trim().is_empty() {
        anyhow::bail!(
            "empty passphrase from {source}: a passphrase that is empty or only whitespace is refused"
        );
    }
    Ok(p)
}

/// Entry point shared by the `signer-node` binary and the devnet launcher.
pub fn main_with(args: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    main_with_primes(args, &|_| None)
}

/// [`main_with`], with `init` taking a node's Paillier primes from `primes` (by node id) when it
/// returns some. Only the test-only `fixture-node` binary passes a source: no flag, variable or
/// file of a shipped binary can choose the primes.
pub fn main_with_primes(
    args: impl IntoIterator<Item = String>,
    primes: &dyn Fn(&str) -> Option<crate::mpc::Primes>,
) -> anyhow::Result<()> {
    let cli = Cli::parse_from(args);
    let env = secure_start(&cli.cmd)?;
    match cli.cmd {
        Cmd::Init {
            data_dir,
            node_id,
            passphrase_file,
            json,
        } => {
            let pass = passphrase(passphrase_file.as_ref(), env, true)?;
            let public = crate::init::init_node(
                &data_dir,
                &node_id,
                &pass,
                primes(&node_id),
                KdfParams::default(),
                !json && std::io::stderr().is_terminal(),
            )?;
            let text = serde_json::to_string_pretty(&public)?;
            if json {
                println!("{text}");
            } else {
                println!("initialised node `{node_id}` in `{}`", data_dir.display());
                println!("public identity (add it to every node's roster):\n{text}");
                println!(
                    "fingerprint (compare it out of band): {}",
                    public.fingerprint()
                );
            }
            Ok(())
        }
        Cmd::Identity {
            data_dir,
            passphrase_file,
            roster,
            json,
        } => {
            let (ids, one) = match (data_dir, roster) {
                (Some(dir), _) => {
                    let pass = passphrase(passphrase_file.as_ref(), env, false)?;
                    (vec![own_identity(&dir, &pass)?], true)
                }
                (None, Some(path)) => (read_roster(&path)?, false),
                (None, None) => anyhow::bail!("pass --data-dir or --roster"),
            };
            print_identities(&ids, json, one)
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
            let pass = passphrase(passphrase_file.as_ref(), env, false)?;
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
            let pass = passphrase(passphrase_file.as_ref(), env, true)?;
            let node = crate::backup::restore(&backup, &identity, &data_dir, &pass)?;
            eprintln!("restored node `{node}` into `{}`", data_dir.display());
            Ok(())
        }
        Cmd::Audit { action } => Ok(runtime::audit::audit_command(action)?),
        Cmd::Check {
            config,
            passphrase_file,
        } => check(&config, passphrase(passphrase_file.as_ref(), env, false)?),
        Cmd::Primes {
            config,
            passphrase_file,
        } => {
            let cfg = NodeConfig::load(&config)?;
            let pass = passphrase(passphrase_file.as_ref(), env, false)?;
            let (store, _) = crate::open_and_validate(&cfg, &pass).map_err(|e| {
                anyhow::anyhow!("{e} (a running node holds its store: stop it first)")
            })?;
            let stored = crate::init::spare_primes(
                &store,
                primes(&cfg.node_id),
                std::io::stderr().is_terminal(),
            )?;
            match stored {
                true => println!(
                    "`{}`: spare Paillier primes stored; the next aux-info ceremony uses them",
                    cfg.node_id
                ),
                false => println!(
                    "`{}` holds spare Paillier primes already; nothing changed",
                    cfg.node_id
                ),
            }
            Ok(())
        }
        Cmd::Run {
            config,
            passphrase_file,
        } => {
            crate::cli::init_tracing();
            let cfg = NodeConfig::load(&config)?;
            let pass = passphrase(passphrase_file.as_ref(), env, false)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let health = match &cfg.health_listen {
                    Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                        anyhow::anyhow!("cannot listen on health_listen `{addr}`: {e}")
                    })?),
                    None => None,
                };
                crate::run(cfg, pass, health, shutdown_signal()).await?;
                Ok::<(), anyhow::Error>(())
            })?;
            // Sessions aborted by the stop end at their next message wait; do not hang on one.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            Ok(())
        }
    }
}

pub use runtime::{logging::init_tracing, signals::shutdown_signal};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn an_empty_passphrase_file_is_refused_and_named() {
        for (name, text) in [("pp-empty", ""), ("pp-blank", " \t\n")] {
            let path = temp_file(name, text);
            let err = passphrase(Some(&path), None, false)
                .unwrap_err()
                .to_string();
            std::fs::remove_file(&path).unwrap();
            assert!(
                err.starts_with(&format!(
                    "empty passphrase from passphrase file `{}`",
                    path.display()
                )),
                "{err}"
            );
        }
        let path = temp_file("pp-ok", "correct horse\n");
        let p = passphrase(Some(&path), None, true).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(p.expose_secret(), "correct horse");
    }

    // Each test uses its own variable: tests share the process environment.
    #[test]
    fn the_environment_passphrase_is_read_once_and_removed() {
        const VAR: &str = "SIGNER_NODE_PASSPHRASE_TEST_TAKE";
        std::env::set_var(VAR, "correct horse");
        let p = take_env(VAR).unwrap().unwrap();
        assert_eq!(p.expose_secret(), "correct horse");
        assert!(std::env::var_os(VAR).is_none(), "removed after reading");
        assert!(take_env(VAR).unwrap().is_none());
        #[cfg(unix)]
        {
            std::env::set_var(VAR, "correct horse");
            take_env(VAR).unwrap();
            let child = std::process::Command::new("env").output().unwrap();
            let env = String::from_utf8_lossy(&child.stdout);
            assert!(!env.contains(VAR), "a child process does not inherit it");
        }
    }

    /// The only test that sets the real variable (tests share the process environment).
    #[test]
    fn every_subcommand_takes_the_passphrase_out_of_the_environment_first() {
        let missing = std::env::temp_dir().join(format!("no-such-dir-{}", std::process::id()));
        let m = |f: &str| missing.join(f).display().to_string();
        let commands: [Vec<String>; 4] = [
            vec![
                "check".into(),
                "--config".into(),
                m("node.toml"),
                "--passphrase-file".into(),
                m("pp"),
            ],
            vec![
                "backup".into(),
                "--config".into(),
                m("node.toml"),
                "--recipient".into(),
                "age1x".into(),
                "--out".into(),
                m("b"),
            ],
            vec![
                "run".into(),
                "--config".into(),
                m("node.toml"),
                "--passphrase-file".into(),
                m("pp"),
            ],
            vec![
                "audit".into(),
                "verify".into(),
                "--file".into(),
                m("audit.jsonl"),
            ],
        ];
        for args in commands {
            std::env::set_var(PASSPHRASE_ENV, "correct horse");
            let argv = std::iter::once("signer-node".to_string()).chain(args.iter().cloned());
            assert!(main_with(argv).is_err(), "{args:?} fails on missing files");
            assert!(
                std::env::var_os(PASSPHRASE_ENV).is_none(),
                "{args:?} left the passphrase in the environment"
            );
        }
    }

    #[test]
    fn an_empty_environment_passphrase_is_refused_named_and_removed() {
        const VAR: &str = "SIGNER_NODE_PASSPHRASE_TEST_EMPTY";
        for value in ["", "  ", "\n"] {
            std::env::set_var(VAR, value);
            let err = take_env(VAR).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("empty passphrase from ${VAR}")),
                "{err}"
            );
            assert!(std::env::var_os(VAR).is_none());
        }
    }
}
