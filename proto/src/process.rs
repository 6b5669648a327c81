//! Process plumbing shared by the `signer-node` and `coordinator` binaries: config files,
//! logging and shutdown signals.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config file that does not load, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("config `{path}`: {msg}")]
pub struct ConfigError {
    path: String,
    msg: String,
}

impl ConfigError {
    /// An error about the file at `path`.
    pub fn new(path: &Path, msg: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            msg: msg.into(),
        }
    }
}

/// Reads a TOML file. Relative paths in `paths(&mut cfg)` are resolved against the file's
/// directory, so a config works from any working directory.
pub fn load_toml<T: DeserializeOwned>(
    path: &Path,
    paths: impl FnOnce(&mut T) -> Vec<&mut PathBuf>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, e.to_string()))?;
    let mut cfg: T = toml::from_str(&text).map_err(|e| ConfigError::new(path, e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in paths(&mut cfg) {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(cfg)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `audit` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// Check every record's hash and link; exit 1 naming the first broken line.
    Verify {
        /// The audit log (`audit.jsonl` in the data directory).
        #[arg(long)]
        file: PathBuf,
    },
    /// Verify, then write every record as one JSON line (to `--out`, else stdout).
    Export {
        /// The audit log.
        #[arg(long)]
        file: PathBuf,
        /// Output file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs an `audit` subcommand; prints the report as JSON on stderr for `export`, stdout otherwise.
pub fn audit_command(action: AuditCmd) -> Result<(), crate::audit::AuditError> {
    let (export, file) = match &action {
        AuditCmd::Verify { file } => (None, file),
        AuditCmd::Export { file, out } => (Some(out.as_deref()), file),
    };
    let report = crate::audit::command(export, file)?;
    let text = serde_json::json!({"valid": true, "records": report.records, "head": report.head});
    match export {
        None => println!("{text}"),
        Some(_) => eprintln!("{text}"),
    }
    Ok(())
}
