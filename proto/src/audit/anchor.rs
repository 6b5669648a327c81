//! Anchors: a copy of an audit log's head kept outside the log, so that a log cut short or
//! rewritten (which its unkeyed hash chain alone cannot reveal) is refused when it is opened.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AuditError, GENESIS};

/// A copy of a log's head kept outside the log: its number of records and the hash of the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// Records in the log when the copy was taken.
    pub count: u64,
    /// Hex hash of record `count - 1` (64 zeros when `count` is 0).
    pub hash: String,
}

/// Where the audit-log writer hands each new head; an error names what failed.
pub type AnchorSink = Box<dyn Fn(&Anchor) -> Result<(), String> + Send + Sync>;

/// Checks a scanned log at `path` against `a`: the log holds `records` records and `found` is
/// the hash of its record at the anchored position (`a.count - 1`), if it has one. Fewer records
/// than anchored is [`AuditError::Truncated`]; another record there is [`AuditError::Diverged`].
pub fn check_anchor(
    path: &Path,
    a: &Anchor,
    records: u64,
    found: Option<&str>,
) -> Result<(), AuditError> {
    let path_s = || path.display().to_string();
    if records < a.count {
        let (path, anchored) = (path_s(), a.count);
        return Err(AuditError::Truncated {
            path,
            records,
            anchored,
        });
    }
    let expected = match a.count {
        0 => GENESIS,
        _ => found.unwrap_or_default(),
    };
    match expected == a.hash {
        true => Ok(()),
        false => Err(AuditError::Diverged {
            path: path_s(),
            seq: a.count.saturating_sub(1),
        }),
    }
}
