//! The audit-log writer: appends hash-chained records to a JSON-lines file, `fsync`s each one,
//! and hands every new head to an anchor kept elsewhere.
//!
//! The record format, the chain hashing, [`AuditError`], the verifier and the anchor types are
//! in [`proto::audit`], where offline tools use them without this crate.
//! [`AuditLog::open_anchored`] refuses a log shorter than its anchor ([`AuditError::Truncated`])
//! or one whose record at the anchored position differs ([`AuditError::Diverged`]);
//! [`SharedAudit::with_anchor`] writes every new head somewhere else (a signer node: its redb
//! store).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use proto::audit::{
    check_anchor, check_line, hash_of, scan, Anchor, AuditError, AuditRecord, Scan,
};

mod cli;
mod shared;

pub use cli::{audit_command, AuditCmd};
pub use shared::SharedAudit;

fn io_err(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::io(path, source)
}

fn invalid_data(path: &Path, msg: String) -> AuditError {
    io_err(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
    )
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
        Self::open_anchored(path, None)
    }

    /// [`AuditLog::open`], checked against `anchor`, a copy of an earlier head kept elsewhere.
    /// The log may have grown since (a crash between an append and its anchor), but it must
    /// still hold the anchored record at the anchored position: fewer records is
    /// [`AuditError::Truncated`], another record there is [`AuditError::Diverged`]. On either
    /// error the file is left untouched.
    pub fn open_anchored(path: &Path, anchor: Option<&Anchor>) -> Result<AuditLog, AuditError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_err(path, e))?;
        }
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|e| io_err(path, e))?;
        let at = anchor.and_then(|a| a.count.checked_sub(1));
        let mut found = None;
        let Scan {
            report,
            committed,
            torn,
        } = scan(path, &file, |rec, _| {
            if Some(rec.seq) == at {
                found = Some(rec.hash.clone());
            }
            Ok(())
        })?;
        if let Some(a) = anchor {
            check_anchor(path, a, report.records, found.as_deref())?;
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proto::audit::{export, verify, VerifyReport, GENESIS};
    use serde_json::json;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(super) struct TempDir(PathBuf);

    impl TempDir {
        pub(super) fn new() -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = format!("custody-audit-test-{}-{n}", std::process::id());
            let dir = std::env::temp_dir().join(dir);
            let _ = std::fs::remove_dir_all(&dir);
            Self(dir)
        }

        /// A log with `n` records in a directory `open` must create.
        pub(super) fn log_with(&self, n: u64) -> (PathBuf, AuditLog) {
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

    pub(super) fn summary(report: VerifyReport) -> (u64, String) {
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
    fn an_anchored_log_refuses_truncation_and_rewrites_but_accepts_growth() {
        let dir = TempDir::new();
        let (path, log) = dir.log_with(4);
        let anchor = Anchor {
            count: 3,
            hash: {
                let text = std::fs::read_to_string(&path).unwrap();
                let third: AuditRecord =
                    serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
                third.hash
            },
        };
        drop(log);
        // Ahead of the anchor (a crash between an append and its anchor): fine.
        assert_eq!(
            AuditLog::open_anchored(&path, Some(&anchor)).unwrap().len(),
            4
        );
        // Cut at a line boundary: the chain still verifies, the anchor catches it.
        let text = std::fs::read_to_string(&path).unwrap();
        let two: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, &two).unwrap();
        assert_eq!(verify(&path).unwrap().records, 2);
        let err = AuditLog::open_anchored(&path, Some(&anchor)).unwrap_err();
        assert_eq!(err.code(), "audit.truncated");
        assert!(
            err.to_string()
                .contains("has 2 records, the store anchored 3"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            two,
            "left untouched"
        );
        // Deleted outright: zero records.
        std::fs::remove_file(&path).unwrap();
        let err = AuditLog::open_anchored(&path, Some(&anchor)).unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Truncated {
                    records: 0,
                    anchored: 3,
                    ..
                }
            ),
            "{err}"
        );
        // A different chain of the same length: diverged.
        std::fs::remove_file(&path).unwrap();
        let mut other = AuditLog::open(&path).unwrap();
        for i in 0..3 {
            other.append(i, "other", json!({})).unwrap();
        }
        drop(other);
        let err = AuditLog::open_anchored(&path, Some(&anchor)).unwrap_err();
        assert_eq!(err.code(), "audit.diverged");
        // The original content back: opens again.
        std::fs::write(&path, &text).unwrap();
        assert_eq!(
            AuditLog::open_anchored(&path, Some(&anchor)).unwrap().len(),
            4
        );
    }
}
