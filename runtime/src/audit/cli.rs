//! The `audit verify|export` subcommand of both daemons' command lines.

use std::path::{Path, PathBuf};

use proto::audit::{export, verify, AuditError, VerifyReport};

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
pub fn audit_command(action: AuditCmd) -> Result<(), AuditError> {
    let (export, file) = match &action {
        AuditCmd::Verify { file } => (None, file),
        AuditCmd::Export { file, out } => (Some(out.as_deref()), file),
    };
    let report = command(export, file)?;
    let text = serde_json::json!({"valid": true, "records": report.records, "head": report.head});
    match export {
        None => println!("{text}"),
        Some(_) => eprintln!("{text}"),
    }
    Ok(())
}

/// The `audit verify|export` command of both binaries: verifies the chain, and for `export`
/// writes it as JSON lines to `out` (or stdout). Returns the report to print.
fn command(export_to: Option<Option<&Path>>, file: &Path) -> Result<VerifyReport, AuditError> {
    match export_to {
        None => verify(file),
        Some(None) => export(file, &mut std::io::stdout().lock()),
        Some(Some(out)) => {
            let mut f = std::fs::File::create(out).map_err(|e| AuditError::Io {
                path: out.display().to_string(),
                source: e,
            })?;
            export(file, &mut f)
        }
    }
}
