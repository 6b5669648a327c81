//! Append-only, hash-chained audit log stored as a JSON-lines file.
//!
//! Signer nodes and the coordinator record every request, decoded intent, policy hash, rule
//! verdict, approval, veto, signature and error here. Each line is one [`AuditRecord`] whose
//! `hash` covers [`AUDIT_DOMAIN`] and the canonical bytes of every other field, including `prev`,
//! the hash of the record before it. Editing any byte of any line breaks [`verify`].
//!
//! The hashes are unkeyed: someone who can write the file can cut trailing records, or rewrite the
//! chain and recompute every hash. Such edits are only detected by comparing [`AuditLog::head`]
//! with a copy of it kept somewhere else.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain separator hashed before the canonical bytes of each record.
pub const AUDIT_DOMAIN: &[u8] = b"custody/audit/v1\0";

/// `prev` of the first record: 64 zeros.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
fn hash_of(rec: &AuditRecord) -> Result<String, serde_json::Error> {
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
}

fn io_err(path: &Path, source: std::io::Error) -> AuditError {
    let path = path.display().to_string();
    AuditError::Io { path, source }
}

fn invalid_data(path: &Path, msg: String) -> AuditError {
    io_err(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
    )
}

fn broken(path: &Path, line: u64, reason: String) -> AuditError {
    let path = path.display().to_string();
    AuditError::Broken { path, line, reason }
}

/// Checks that `line` (without its '\n') is the canonical record `seq` following `prev`.
fn check_line(line: &[u8], seq: u64, prev: &str) -> Result<AuditRecord, String> {
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

/// What a scan of the file found: the intact chain, its length in bytes, and the length of a
/// torn final line (bytes after the last '\n').
struct Scan(VerifyReport, u64, u64);

/// Reads every complete line of `file`, checking the chain and handing each record to `each`.
fn scan(
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
            return Ok(Scan(VerifyReport { records, head }, good_len, n));
        };
        let rec = check_line(line, records, &head).map_err(|r| broken(path, records + 1, r))?;
        each(&rec, line).map_err(|e| io_err(path, e))?;
        (records, head, good_len) = (records + 1, rec.hash, good_len + n);
    }
}

/// An open audit log, positioned to append the next record.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    next_seq: u64,
    head: String,
    /// Length of the file up to the end of the last record.
    committed: u64,
    torn: u64,
    /// An append failed midway; the log must be reopened (which repairs it) before more appends.
    poisoned: bool,
}

impl AuditLog {
    /// Opens the log at `path` and verifies the whole chain, creating the file (mode 0o600 on
    /// unix) and its parent directories if missing.
    ///
    /// A final line without a trailing '\n' is a torn write from a crash: it is truncated away
    /// and its length reported by [`AuditLog::torn_bytes`]. Any other defect is
    /// [`AuditError::Broken`], and the file is left untouched.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_err(path, e))?;
        }
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|e| io_err(path, e))?;
        let Scan(report, committed, torn) = scan(path, &file, |_, _| Ok(()))?;
        if torn > 0 {
            file.set_len(committed).map_err(|e| io_err(path, e))?;
            file.sync_data().map_err(|e| io_err(path, e))?;
        }
        let (next_seq, head, path) = (report.records, report.head, path.to_owned());
        Ok(AuditLog {
            file,
            path,
            next_seq,
            head,
            committed,
            torn,
            poisoned: false,
        })
    }

    /// Appends one record, written as a single JSON line and synced to disk before returning.
    ///
    /// If the write or sync fails, the log refuses further appends until it is reopened.
    pub fn append(
        &mut self,
        time: u64,
        kind: &str,
        data: serde_json::Value,
    ) -> Result<AuditRecord, AuditError> {
        if self.poisoned {
            let msg = "an earlier append failed; reopen the log".into();
            return Err(invalid_data(&self.path, msg));
        }
        let (seq, kind, prev) = (self.next_seq, kind.to_owned(), self.head.clone());
        let mut rec = AuditRecord {
            seq,
            time,
            kind,
            data,
            prev,
            hash: String::new(),
        };
        let encoded = hash_of(&rec).and_then(|hash| {
            rec.hash = hash;
            serde_json::to_vec(&rec)
        });
        let mut line = encoded.map_err(|e| invalid_data(&self.path, e.to_string()))?;
        // Refuse a record that `verify` would reject (e.g. a float that does not round-trip).
        check_line(&line, rec.seq, &rec.prev)
            .map_err(|r| invalid_data(&self.path, format!("record would not verify: {r}")))?;
        line.push(b'\n');
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            self.poisoned = true;
            // Best effort: drop a partial line now rather than at the next open.
            let _ = self.file.set_len(self.committed);
            return Err(io_err(&self.path, e));
        }
        self.committed += line.len() as u64;
        self.next_seq += 1;
        self.head.clone_from(&rec.hash);
        Ok(rec)
    }

    /// Number of records in the log.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    /// Hex hash of the last record, or 64 zeros for an empty log. Keep a copy elsewhere to
    /// detect truncation or a rewritten chain.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Bytes of a torn final line dropped by [`AuditLog::open`] (0 if none).
    pub fn torn_bytes(&self) -> u64 {
        self.torn
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
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
    let Scan(report, _, torn) = scan(path, &file, |_, _| Ok(()))?;
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

/// The `audit verify|export` command of both binaries: verifies the chain, and for `export`
/// writes it as JSON lines to `out` (or stdout). Returns the report to print.
pub fn command(export_to: Option<Option<&Path>>, file: &Path) -> Result<VerifyReport, AuditError> {
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

/// Thread-safe handle on an [`AuditLog`], cheap to clone.
#[derive(Clone, Debug)]
pub struct SharedAudit(Arc<Mutex<AuditLog>>);

impl SharedAudit {
    /// Shares `log`.
    pub fn new(log: AuditLog) -> Self {
        Self(Arc::new(Mutex::new(log)))
    }

    fn lock(&self) -> MutexGuard<'_, AuditLog> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record; see [`AuditLog::append`].
    pub fn append(
        &self,
        time: u64,
        kind: &str,
        data: serde_json::Value,
    ) -> Result<AuditRecord, AuditError> {
        self.lock().append(time, kind, data)
    }

    /// Number of records in the log.
    pub fn len(&self) -> u64 {
        self.lock().len()
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Hex hash of the last record, or 64 zeros for an empty log.
    pub fn head(&self) -> String {
        self.lock().head().to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = format!("custody-audit-test-{}-{n}", std::process::id());
            let dir = std::env::temp_dir().join(dir);
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }

        /// A log with `n` records in a directory `open` must create.
        fn log_with(&self, n: u64) -> (PathBuf, AuditLog) {
            let path = self.0.join("sub").join("audit.jsonl");
            let mut log = AuditLog::open(&path).unwrap();
            for i in 0..n {
                let data = json!({"request": format!("r{i}"), "rules": {"b": "deny", "a": "ok"}});
                log.append(1_700_000_000 + i, "request.evaluated", data)
                    .unwrap();
            }
            (path, log)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn assert_broken(path: &Path, what: &str) {
        let result = verify(path);
        assert!(
            matches!(result, Err(AuditError::Broken { .. })),
            "{what}: {result:?}"
        );
    }

    fn summary(report: VerifyReport) -> (u64, String) {
        (report.records, report.head)
    }

    #[test]
    fn append_reopen_verify_export() {
        let dir = TempDir::new();
        let (path, log) = dir.log_with(5);
        drop(log);
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!((log.len(), log.torn_bytes()), (5, 0));
        let last = log
            .append(9, "signature", json!({"x": 0.1, "y": -1e300}))
            .unwrap();
        assert_eq!((last.seq, log.head()), (5, last.hash.as_str()));
        assert_eq!(summary(verify(&path).unwrap()), (6, last.hash.clone()));

        let mut out = Vec::new();
        assert_eq!(
            summary(export(&path, &mut out).unwrap()),
            (6, last.hash.clone())
        );
        let text = String::from_utf8(out).unwrap();
        let records: Vec<AuditRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!((records.len(), records[0].prev.as_str()), (6, GENESIS));
        assert_eq!(records[5], last);
        assert_eq!(text, std::fs::read_to_string(&path).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let dir = TempDir::new();
        let (path, _log) = dir.log_with(6);
        let original = std::fs::read(&path).unwrap();
        for offset in (0..original.len()).step_by(7) {
            for mask in [0x01u8, 0x20, 0x80] {
                let mut bytes = original.clone();
                bytes[offset] ^= mask;
                std::fs::write(&path, &bytes).unwrap();
                assert_broken(&path, &format!("byte {offset} ^ {mask:#04x}"));
            }
        }
        std::fs::write(&path, &original).unwrap();
        assert_eq!(verify(&path).unwrap().records, 6);
    }

    #[test]
    fn edited_lines_are_detected() {
        let dir = TempDir::new();
        let (path, _log) = dir.log_with(5);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        type Edit = fn(&mut Vec<String>);
        let edits: [(&str, Edit); 4] = [
            ("deleted line", |ls| drop(ls.remove(2))),
            ("swapped lines", |ls| ls.swap(1, 3)),
            ("added whitespace", |ls| {
                ls[4] = ls[4].replacen(',', ", ", 1)
            }),
            ("unknown field", |ls| {
                ls[4] = ls[4].replacen('{', "{\"extra\":1,", 1)
            }),
        ];
        for (what, edit) in edits {
            let mut edited = lines.clone();
            edit(&mut edited);
            std::fs::write(&path, edited.join("\n") + "\n").unwrap();
            assert_broken(&path, what);
            assert!(matches!(
                AuditLog::open(&path),
                Err(AuditError::Broken { .. })
            ));
        }
        std::fs::write(&path, &text).unwrap();
        assert_eq!(verify(&path).unwrap().records, 5);
    }

    #[test]
    fn torn_final_line_is_dropped_on_open() {
        let dir = TempDir::new();
        let (path, log) = dir.log_with(3);
        let head = log.head().to_owned();
        drop(log);
        let torn = b"{\"seq\":3,\"time\":17";
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(torn).unwrap();
        assert_broken(&path, "torn line");

        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!((log.torn_bytes(), log.len()), (torn.len() as u64, 3));
        let rec = log.append(9, "veto", json!({"by": "node-2"})).unwrap();
        assert_eq!(rec.prev, head);
        assert_eq!(summary(verify(&path).unwrap()), (4, rec.hash));
    }

    #[test]
    fn shared_handle_appends_from_threads() {
        let dir = TempDir::new();
        let (path, log) = dir.log_with(0);
        assert!(log.is_empty() && log.head() == GENESIS);
        let shared = SharedAudit::new(log);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for i in 0..5 {
                        shared.append(i, "approval", json!({"thread": t})).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(shared.len(), 20);
        assert_eq!(summary(verify(&path).unwrap()), (20, shared.head()));
    }
}
