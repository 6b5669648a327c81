//! A thread-safe handle on an [`AuditLog`], optionally anchoring every new head.

use std::sync::{Arc, Mutex, MutexGuard};

use proto::audit::{Anchor, AnchorSink, AuditError, AuditRecord};

use super::AuditLog;

/// Thread-safe handle on an [`AuditLog`], cheap to clone.
#[derive(Clone)]
pub struct SharedAudit(Arc<Mutex<AuditLog>>, Option<Arc<Anchoring>>);

/// Where heads go, and how many records the last head written there covered.
struct Anchoring {
    sink: AnchorSink,
    anchored: Mutex<u64>,
}

impl std::fmt::Debug for SharedAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAudit")
            .field("log", &self.0)
            .field("anchored", &self.1.is_some())
            .finish()
    }
}

impl SharedAudit {
    /// Shares `log`.
    pub fn new(log: AuditLog) -> Self {
        Self(Arc::new(Mutex::new(log)), None)
    }

    fn lock(&self) -> MutexGuard<'_, AuditLog> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record; see [`AuditLog::append`]. With an anchor, a failure to write the
    /// new head is [`AuditError::Anchor`] (the record is in the log).
    pub fn append(
        &self,
        time: u64,
        kind: &str,
        data: serde_json::Value,
    ) -> Result<AuditRecord, AuditError> {
        let rec = self.lock().append(time, kind, data)?;
        let Some(a) = &self.1 else {
            return Ok(rec);
        };
        // Lock order: `anchored`, then the log (never the other way round).
        let mut anchored = a.anchored.lock().unwrap_or_else(|p| p.into_inner());
        if *anchored > rec.seq {
            return Ok(rec); // another append's head already covers this record
        }
        let (head, path) = {
            let log = self.lock();
            let head = Anchor {
                count: log.len(),
                hash: log.head().to_owned(),
            };
            (head, log.path().display().to_string())
        };
        (a.sink)(&head).map_err(|reason| AuditError::Anchor { path, reason })?;
        *anchored = head.count;
        Ok(rec)
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

impl SharedAudit {
    /// Shares `log`, handing new heads to `sink`: an append returns only once a head covering
    /// its record was written there, and a head is read only after its records are on disk, so
    /// the anchor is never ahead of the file. Appends that finish while a head is being written
    /// share the next write (group commit); after a crash the file may be ahead of the anchor
    /// by the records that were being appended.
    pub fn with_anchor(log: AuditLog, sink: AnchorSink) -> Self {
        let anchored = Mutex::new(log.len());
        let anchoring = Anchoring { sink, anchored };
        Self(Arc::new(Mutex::new(log)), Some(Arc::new(anchoring)))
    }

    /// The current head as an [`Anchor`], read under one lock.
    pub fn anchor(&self) -> Anchor {
        let log = self.lock();
        Anchor {
            count: log.len(),
            hash: log.head().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::super::tests::{summary, TempDir};
    use super::*;
    use proto::audit::{verify, GENESIS};
    use serde_json::json;

    /// Appends 5 records from each of 4 threads at once.
    fn append_from_four_threads(shared: &SharedAudit) {
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
    }

    #[test]
    fn shared_handle_appends_from_threads() {
        let dir = TempDir::new();
        let (path, log) = dir.log_with(0);
        assert!(log.is_empty() && log.head() == GENESIS);
        let shared = SharedAudit::new(log);
        append_from_four_threads(&shared);
        assert_eq!(shared.len(), 20);
        assert_eq!(summary(verify(&path).unwrap()), (20, shared.head()));
    }

    #[test]
    fn a_shared_log_anchors_every_append() {
        let dir = TempDir::new();
        let (path, log) = dir.log_with(1);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = seen.clone();
        let shared = SharedAudit::with_anchor(
            log,
            Box::new(move |a: &Anchor| {
                sink_seen.lock().unwrap().push(a.clone());
                Ok(())
            }),
        );
        let rec = shared.append(1, "x", json!({})).unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Anchor {
                count: 2,
                hash: rec.hash.clone()
            }]
        );
        assert_eq!(
            shared.anchor(),
            Anchor {
                count: 2,
                hash: rec.hash
            }
        );
        // From threads: heads only move forward and the last covers every record.
        append_from_four_threads(&shared);
        let seen = seen.lock().unwrap().clone();
        assert!(seen.windows(2).all(|w| w[0].count < w[1].count), "{seen:?}");
        assert_eq!(seen.last(), Some(&shared.anchor()));
        assert_eq!(shared.anchor().count, 22);
        let failing = SharedAudit::with_anchor(
            AuditLog::open(&path).unwrap(),
            Box::new(|_: &Anchor| Err("store closed".into())),
        );
        let err = failing.append(2, "x", json!({})).unwrap_err();
        assert_eq!(err.code(), "audit.anchor");
    }
}
