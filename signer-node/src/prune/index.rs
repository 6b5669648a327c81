//! Time-ordered indexes kept beside the records they index, so that a decision reads only the
//! window it needs and pruning finds what is old without scanning everything.
//!
//! The store derives them itself ([`crate::store::Store::commit`]) in the same transaction as
//! every write or delete of an indexed record, whatever code path writes it, so an index never
//! drifts from its records:
//!
//! - `ledger_t/<at:020>/<origin>/<seq:020>`: a ledger entry at the time it counts from (its
//!   `ledger_at/` arrival time when dated in this node's future, else its `signed_at`);
//! - `hist_t/<at:020>/<request>`: this node's own reservation at its time;
//! - `req_last/<request>`: the latest activity of a request id on this node (bound, first seen,
//!   reserved, or named by a ledger entry), with `req_t/<at:020>/<request>` its one index key.
//!
//! Index values are the JSON `0`: only the keys carry information.

use serde::Deserialize;

use redb::ReadableTable;

use crate::store::{json_bytes, StoreError};

/// Ledger entries by time.
pub const LEDGER_T: &str = "ledger_t/";
/// Own reservations by time.
pub const HIST_T: &str = "hist_t/";
/// Request ids by latest activity.
pub const REQ_T: &str = "req_t/";
/// Latest activity per request id.
pub const REQ_LAST: &str = "req_last/";
/// When this node first bound a request id (written by the guard with the binding).
pub const BOUND_AT: &str = "bound_at/";
/// The value of every index key.
pub const MARK: &[u8] = b"0";

/// A record whose write changes an index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// `ledger/<origin>/<seq>` (or its `ledger_at/` time).
    Ledger(String, String),
    /// `hist/<request>`.
    Hist(String),
    /// `seen/<request>` or `bound_at/<request>`: activity only.
    Activity(String, &'static str),
}

/// What a subject derives in its current state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Derived {
    /// Its index key, if any.
    pub index: Option<String>,
    /// The request it concerns and when.
    pub activity: Option<(String, u64)>,
}

/// The subject a state key belongs to, if it is indexed.
pub fn subject(key: &str) -> Option<Subject> {
    let ledger = |rest: &str| {
        rest.rsplit_once('/')
            .map(|(o, s)| Subject::Ledger(o.to_string(), s.to_string()))
    };
    if let Some(rest) = key.strip_prefix("ledger/") {
        return ledger(rest);
    }
    if let Some(rest) = key.strip_prefix("ledger_at/") {
        return ledger(rest);
    }
    if let Some(rid) = key.strip_prefix("hist/") {
        return Some(Subject::Hist(rid.to_string()));
    }
    if let Some(rid) = key.strip_prefix("seen/") {
        return Some(Subject::Activity(rid.to_string(), "seen/"));
    }
    key.strip_prefix(BOUND_AT)
        .map(|rid| Subject::Activity(rid.to_string(), BOUND_AT))
}

#[derive(Deserialize)]
struct EntryTime {
    request_id: String,
    signed_at: u64,
}

#[derive(Deserialize)]
struct ReservationTime {
    at: u64,
}

/// Derives a subject's index key and activity from the records `get` reads. A record that does
/// not parse derives nothing (it is reported as corrupt where it is read).
pub fn derive(
    subject: &Subject,
    get: impl Fn(&str) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<Derived, StoreError> {
    let parse = |k: &str| -> Result<Option<Vec<u8>>, StoreError> { get(k) };
    Ok(match subject {
        Subject::Ledger(origin, seq) => {
            let Some(e) = parse(&format!("ledger/{origin}/{seq}"))?
                .and_then(|b| serde_json::from_slice::<EntryTime>(&b).ok())
            else {
                return Ok(Derived::default());
            };
            let at = parse(&format!("ledger_at/{origin}/{seq}"))?
                .and_then(|b| serde_json::from_slice::<u64>(&b).ok())
                .unwrap_or(e.signed_at);
            Derived {
                index: Some(format!("{LEDGER_T}{at:020}/{origin}/{seq}")),
                activity: Some((e.request_id, at)),
            }
        }
        Subject::Hist(rid) => {
            let Some(r) = parse(&format!("hist/{rid}"))?
                .and_then(|b| serde_json::from_slice::<ReservationTime>(&b).ok())
            else {
                return Ok(Derived::default());
            };
            Derived {
                index: Some(format!("{HIST_T}{:020}/{rid}", r.at)),
                activity: Some((rid.clone(), r.at)),
            }
        }
        Subject::Activity(rid, prefix) => Derived {
            index: None,
            activity: parse(&format!("{prefix}{rid}"))?
                .and_then(|b| serde_json::from_slice::<u64>(&b).ok())
                .map(|at| (rid.clone(), at)),
        },
    })
}

/// `req_t/` key of a request's latest activity.
pub fn req_t_key(at: u64, rid: &str) -> String {
    format!("{REQ_T}{at:020}/{rid}")
}

/// Splits `<at:020>/<rest>` (an index key without its prefix).
pub fn split_time(tail: &str) -> Option<(u64, &str)> {
    let (at, rest) = tail.split_once('/')?;
    Some((at.parse().ok()?, rest))
}

/// The first key of an index at or after time `at`.
pub fn from_time(prefix: &str, at: u64) -> String {
    format!("{prefix}{at:020}/")
}

/// The node store's state table, open for writing.
pub type StateTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// One raw state value.
pub fn read_state(t: &StateTable<'_>, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(t.get(key)?.map(|v| v.value().to_vec()))
}

/// Applies state writes (`None` deletes) and keeps the time indexes of [`crate::prune::index`]
/// in step, in the caller's transaction.
pub fn write_indexed(
    t: &mut StateTable<'_>,
    items: &[(String, Option<Vec<u8>>)],
) -> Result<(), StoreError> {
    let mut subjects: Vec<Subject> = items.iter().filter_map(|(k, _)| subject(k)).collect();
    subjects.sort();
    subjects.dedup();
    let mut before = Vec::with_capacity(subjects.len());
    for s in &subjects {
        before.push(derive(s, |k| read_state(t, k))?);
    }
    for (k, v) in items {
        match v {
            Some(v) => t.insert(k.as_str(), v.as_slice())?,
            None => t.remove(k.as_str())?,
        };
    }
    for (s, old) in subjects.iter().zip(before) {
        let new = derive(s, |k| read_state(t, k))?;
        if let Some(k) = old
            .index
            .as_deref()
            .filter(|k| Some(*k) != new.index.as_deref())
        {
            t.remove(k)?;
        }
        if let Some(k) = &new.index {
            t.insert(k.as_str(), MARK)?;
        }
        if let Some((rid, at)) = new.activity.filter(|a| old.activity.as_ref() != Some(a)) {
            touch(t, &rid, at)?;
        }
    }
    Ok(())
}

/// Records activity of a request id at `at`, if later than what is recorded.
pub fn touch(t: &mut StateTable<'_>, rid: &str, at: u64) -> Result<(), StoreError> {
    let last_key = format!("{}{rid}", REQ_LAST);
    let last = read_state(t, &last_key)?.and_then(|b| serde_json::from_slice::<u64>(&b).ok());
    if last.is_some_and(|l| l >= at) {
        return Ok(());
    }
    if let Some(l) = last {
        t.remove(req_t_key(l, rid).as_str())?;
    }
    t.insert(last_key.as_str(), json_bytes(&at)?.as_slice())?;
    t.insert(req_t_key(at, rid).as_str(), MARK)?;
    Ok(())
}
