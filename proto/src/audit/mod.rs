//! The audit log's format: an append-only, hash-chained JSON-lines file, and its verifier.
//!
//! Signer nodes and the coordinator record every request, decoded intent, policy hash, rule
//! verdict, approval, veto, signature and error in such a log. Each line is one [`AuditRecord`]
//! whose `hash` covers [`AUDIT_DOMAIN`] and the canonical bytes of every other field, including
//! `prev`, the hash of the record before it. Editing any byte of any line breaks [`verify`].
//!
//! The hashes are unkeyed: someone who can write the file can cut trailing records, or rewrite the
//! chain and recompute every hash. Such edits are only detected by comparing the log's head with
//! a copy of it kept somewhere else (an [`Anchor`], checked by [`check_anchor`]).
//!
//! This module reads logs with `std` only, so offline tools can verify one without the daemons'
//! runtime. The writer (`AuditLog`, `SharedAudit`: appending, `fsync`, anchoring every new head)
//! is in the `runtime` crate.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod anchor;
pub use anchor::{check_anchor, Anchor, AnchorSink};

/// Domain separator hashed before the canonical bytes of each record.
pub const AUDIT_DOMAIN: &[u8] = b"custody/audit/v1\0";

/// `prev` of the first record, and the head of an empty log: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the log: 0-based and contiguous.
    pub seq: u64,
    /// Unix seconds, supplied by the caller.
    pub time: u64,
    /// What happened, e.g. `request.evaluated`, `signature`, `veto`.
    pub kind: String,
    /// Details of the event.
    pub data: serde_json::Value,
    /// Lowercase hex `hash` of the previous record, or 64 zeros for `seq` 0.
    pub prev: String,
    /// Lowercase hex SHA-256 of [`AUDIT_DOMAIN`] followed by the canonical bytes of this record
    /// without `hash`.
    pub hash: String,
}

/// The fields covered by `hash`, in canonical order.
#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    time: u64,
    kind: &'a str,
    data: &'a serde_json::Value,
    prev: &'a str,
}

/// Hex SHA-256 of [`AUDIT_DOMAIN`] followed by the canonical bytes of `rec` without `hash`.
pub fn hash_of(rec: &AuditRecord) -> Result<String, serde_json::Error> {
    let (seq, time, kind, data, prev) = (rec.seq, rec.time, &*rec.kind, &rec.data, &*rec.prev);
    let bytes = serde_json::to_vec(&Unhashed {
        seq,
        time,
        kind,
        data,
        prev,
    })?;
    Ok(hex::encode(
        Sha256::new()
            .chain_update(AUDIT_DOMAIN)
            .chain_update(bytes)
            .finalize(),
    ))
}

/// Why an audit log could not be opened, appended to, verified or exported.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the file failed.
    #[error("audit log `{path}`: {source}")]
    Io {
        /// The log file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something other than an intact chain of records.
    #[error("audit log `{path}` is broken at line {line}: {reason}")]
    Broken {
        /// The log file.
        path: String,
        /// 1-based line number of the first defect.
        line: u64,
        /// What is wrong with that line.
        reason: String,
    },
    /// The log holds fewer records than its anchor: trailing records were cut, or the file was
    /// replaced by an older copy.
    #[error(
        "audit.truncated: audit log `{path}` has {records} records, the store anchored {anchored}: \
         records were cut or the file was replaced by an older copy; put the complete log back"
    )]
    Truncated {
        /// The log file.
        path: String,
        /// Records in the file.
        records: u64,
        /// Records the anchor says it had.
        anchored: u64,
    },
    /// The record at the anchored position is not the anchored one: the log was rewritten.
    #[error(
        "audit.diverged: record {seq} of audit log `{path}` is not the one the store anchored: \
         the log was rewritten or replaced; put the original log back"
    )]
    Diverged {
        /// The log file.
        path: String,
        /// 0-based position of the anchored record.
        seq: u64,
    },
    /// The head could not be written to its anchor; the record itself is in the log.
    #[error("audit.anchor: audit log `{path}`: cannot anchor its head: {reason}")]
    Anchor {
        /// The log file.
        path: String,
        /// What failed.
        reason: String,
    },
}

impl AuditError {
    /// [`AuditError::Io`] about the file at `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        let path = path.display().to_string();
        AuditError::Io { path, source }
    }

    /// Stable machine code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            AuditError::Io { .. } => "audit.io",
            AuditError::Broken { .. } => "audit.broken",
            AuditError::Truncated { .. } => "audit.truncated",
            AuditError::Diverged { .. } => "audit.diverged",
            AuditError::Anchor { .. } => "audit.anchor",
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::io(path, source)
}

fn broken(path: &Path, line: u64, reason: String) -> AuditError {
    let path = path.display().to_string();
    AuditError::Broken { path, line, reason }
}

/// Checks that `line` (without its '\n') is the canonical record `seq` following `prev`; the
/// reason is in the error.
pub fn check_line(line: &[u8], seq: u64, prev: &str) -> Result<AuditRecord, String> {
    let rec: AuditRecord =
        serde_json::from_slice(line).map_err(|e| format!("not a valid record: {e}"))?;
    if rec.seq != seq {
        return Err(format!("expected seq {seq}, found {}", rec.seq));
    }
    if rec.prev != prev {
        return Err("`prev` does not match the hash of the previous record".into());
    }
    if hash_of(&rec).map_err(|e| e.to_string())? != rec.hash {
        return Err("`hash` does not match the record".into());
    }
    if serde_json::to_vec(&rec).map_err(|e| e.to_string())? != line {
        return Err("line is not in canonical form".into());
    }
    Ok(rec)
}

/// What a [`scan`] of a file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The intact chain.
    pub report: VerifyReport,
    /// Length in bytes of the file up to the end of the chain's last record.
    pub committed: u64,
    /// Length of a torn final line (bytes after the last '\n'; 0 if none).
    pub torn: u64,
}

/// Reads every complete line of `file` (the file at `path`, read from its current position),
/// checking the chain and handing each record and its line to `each`. Stops at the first defect
/// ([`AuditError::Broken`]) or at a torn final line, which it measures but does not judge.
pub fn scan(
    path: &Path,
    file: &File,
    mut each: impl FnMut(&AuditRecord, &[u8]) -> std::io::Result<()>,
) -> Result<Scan, AuditError> {
    let mut reader = BufReader::new(file);
    let (mut records, mut head, mut good_len) = (0, GENESIS.to_owned(), 0);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_err(path, e))? as u64;
        let Some(line) = buf.strip_suffix(b"\n") else {
            let report = VerifyReport { records, head };
            return Ok(Scan {
                report,
                committed: good_len,
                torn: n,
            });
        };
        let rec = check_line(line, records, &head).map_err(|r| broken(path, records + 1, r))?;
        each(&rec, line).map_err(|e| io_err(path, e))?;
        (records, head, good_len) = (records + 1, rec.hash, good_len + n);
    }
}

/// Result of a successful [`verify`] or [`export`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Number of records.
    pub records: u64,
    /// Hex hash of the last record, or 64 zeros for an empty log.
    pub head: String,
}

/// Verifies every line of the file at `path`: each parses (unknown fields rejected) and is in
/// canonical form, `seq` is contiguous from 0, `prev` links to the previous hash and `hash`
/// recomputes. Does not modify the file; a torn final line is [`AuditError::Broken`].
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let Scan { report, torn, .. } = scan(path, &file, |_, _| Ok(()))?;
    if torn > 0 {
        let reason = format!("torn final line ({torn} bytes without a trailing newline)");
        return Err(broken(path, report.records + 1, reason));
    }
    Ok(report)
}

/// Verifies the file at `path`, then writes each of its records to `out` as one canonical JSON
/// line. Records appended after the verification are not exported.
pub fn export(path: &Path, out: &mut dyn Write) -> Result<VerifyReport, AuditError> {
    let report = verify(path)?;
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut last = GENESIS.to_owned();
    scan(path, &file, |rec, line| {
        if rec.seq < report.records {
            out.write_all(line)?;
            out.write_all(b"\n")?;
            last.clone_from(&rec.hash);
        }
        Ok(())
    })?;
    if last != report.head {
        let reason = "file changed during export".into();
        return Err(broken(path, report.records, reason));
    }
    out.flush().map_err(|e| io_err(path, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    /// `n` chained records as the canonical lines a writer appends.
    fn chain(n: u64) -> (Vec<AuditRecord>, String) {
        let (mut records, mut text, mut prev) = (Vec::new(), String::new(), GENESIS.to_owned());
        for seq in 0..n {
            let mut rec = AuditRecord {
                seq,
                time: 1_700_000_000 + seq,
                kind: "request.evaluated".into(),
                data: json!({"request": format!("r{seq}")}),
                prev: prev.clone(),
                hash: String::new(),
            };
            rec.hash = hash_of(&rec).unwrap();
            let line = serde_json::to_string(&rec).unwrap();
            check_line(line.as_bytes(), seq, &prev).unwrap();
            text.push_str(&line);
            text.push('\n');
            prev.clone_from(&rec.hash);
            records.push(rec);
        }
        (records, text)
    }

    #[test]
    fn a_chain_written_without_the_runtime_verifies_exports_and_checks_its_anchor() {
        let path = std::env::temp_dir().join(format!("custody-audit-fmt-{}", std::process::id()));
        let (records, text) = chain(3);
        std::fs::write(&path, &text).unwrap();
        let head = records[2].hash.clone();
        assert_eq!(verify(&path).unwrap(), VerifyReport { records: 3, head });
        let mut out = Vec::new();
        export(&path, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), text);
        let anchor = Anchor {
            count: 2,
            hash: records[1].hash.clone(),
        };
        assert!(check_anchor(&path, &anchor, 3, Some(&records[1].hash)).is_ok());
        let err = check_anchor(&path, &anchor, 1, None).unwrap_err();
        assert_eq!(err.code(), "audit.truncated");
        let err = check_anchor(&path, &anchor, 3, Some(&records[0].hash)).unwrap_err();
        assert_eq!(err.code(), "audit.diverged");
        // A torn final line is broken for the verifier (the writer drops it on open).
        std::fs::write(&path, format!("{text}{{\"seq\":3")).unwrap();
        assert!(matches!(
            verify(&path),
            Err(AuditError::Broken { line: 4, .. })
        ));
        let _ = std::fs::remove_file(&path);
    }
}
