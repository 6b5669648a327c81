//! Catch-up after every (re)connection: a node signs nothing until it has caught up with what
//! the coordinator holds.
//!
//! A node may have been offline while orders were issued, restored from an old backup, or put
//! back from a VM snapshot: in each case its own store is missing things it must know before it
//! signs (a freeze, a veto, a newer policy, its own and its peers' ledger entries). It cannot
//! tell these cases apart from inside, so it treats every link the same way:
//!
//! 1. When a link comes up the node is *syncing*.
//! 2. The coordinator replays, in order on the node's ordered lane, the latest policy bundle,
//!    every stored order and every account, and ends with a [`SyncMark`] carrying its own
//!    ledger heads.
//! 3. Once the node has processed the mark and holds at least those heads (for every origin,
//!    its own included), it is *ready*. Until then sessions that sign fail `node.syncing` and
//!    evaluations are deferred with `node.syncing`.
//!
//! Because its own ledger head is caught up before it signs, a restored node never reuses one
//! of its own ledger sequence numbers while the coordinator is honest. A lying coordinator can
//! withhold the replay (the node then stays syncing and signs nothing) or send a false mark; the
//! join of every session still checks peers' heads (`ledger.behind`). See docs/durability.md.

use std::{collections::BTreeMap, sync::Mutex};

use proto::wire::SyncMark;

/// How long a node waits before asking again for entries above the same heads.
pub const ASK_AGAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Where this node stands with respect to its current link.
#[derive(Debug, Default)]
pub struct Sync {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Counts links: a mark received on an earlier link (still queued when it dropped) does
    /// not count for the current one.
    link: u64,
    /// The mark of the current link, once processed.
    mark: Option<SyncMark>,
    /// Heads this node last asked the coordinator to send entries above, and when.
    asked: Option<(BTreeMap<String, u64>, std::time::Instant)>,
}

/// Why a node is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The coordinator's replay for the current link has not ended yet.
    Replaying,
    /// The node lacks ledger entries the coordinator holds: `(origin, held, coordinator's)`.
    Behind(Vec<(String, u64, u64)>),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Replaying => write!(
                f,
                "this node is still receiving the coordinator's replay of orders, policy and ledger"
            ),
            NotReady::Behind(v) => {
                let list: Vec<String> = v
                    .iter()
                    .map(|(o, have, want)| format!("{o} {have}/{want}"))
                    .collect();
                write!(
                    f,
                    "this node is catching up ledger entries the coordinator holds ({})",
                    list.join(", ")
                )
            }
        }
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sync {
    /// A new link is up: syncing again until its mark is processed.
    pub fn link_up(&self) {
        let mut g = lock(&self.inner);
        g.link += 1;
        g.mark = None;
        g.asked = None;
    }

    /// The current link's number (to tag frames received on it).
    pub fn link(&self) -> u64 {
        lock(&self.inner).link
    }

    /// The coordinator's mark, received on link `link`, was processed (every order and policy
    /// before it already applied). A mark from an earlier link is ignored.
    pub fn marked(&self, link: u64, mark: SyncMark) {
        let mut g = lock(&self.inner);
        if g.link == link {
            g.mark = Some(mark);
        }
    }

    /// Whether the node may sign, given the ledger heads it holds.
    pub fn ready(&self, heads: &BTreeMap<String, u64>) -> Result<(), NotReady> {
        let g = lock(&self.inner);
        let Some(mark) = &g.mark else {
            return Err(NotReady::Replaying);
        };
        let behind: Vec<(String, u64, u64)> = mark
            .ledger_heads
            .iter()
            .filter_map(|(o, want)| {
                let have = heads.get(o).copied().unwrap_or(0);
                (have < *want).then(|| (o.clone(), have, *want))
            })
            .collect();
        match behind.is_empty() {
            true => Ok(()),
            false => Err(NotReady::Behind(behind)),
        }
    }

    /// Whether to ask the coordinator for entries above `heads`: the node is behind the mark
    /// and has not asked at exactly these heads within [`ASK_AGAIN`] (so a coordinator that
    /// cannot fill a gap is asked at a bounded rate, and a lost answer is asked for again).
    pub fn should_ask(&self, heads: &BTreeMap<String, u64>) -> bool {
        if !matches!(self.ready(heads), Err(NotReady::Behind(_))) {
            return false;
        }
        let mut g = lock(&self.inner);
        if let Some((asked, at)) = &g.asked {
            if asked == heads && at.elapsed() < ASK_AGAIN {
                return false;
            }
        }
        g.asked = Some((heads.clone(), std::time::Instant::now()));
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn heads(v: &[(&str, u64)]) -> BTreeMap<String, u64> {
        v.iter().map(|(o, s)| (o.to_string(), *s)).collect()
    }

    #[test]
    fn ready_only_after_the_mark_and_its_heads() {
        let s = Sync::default();
        assert_eq!(s.ready(&heads(&[])), Err(NotReady::Replaying));
        s.link_up();
        s.marked(
            1,
            SyncMark {
                ledger_heads: heads(&[("node-1", 3), ("node-2", 5)]),
                orders: 0,
            },
        );
        let held = heads(&[("node-1", 3), ("node-2", 4)]);
        assert_eq!(
            s.ready(&held),
            Err(NotReady::Behind(vec![("node-2".into(), 4, 5)]))
        );
        assert!(s.should_ask(&held));
        assert!(!s.should_ask(&held), "asks once per set of heads");
        assert!(s.ready(&heads(&[("node-1", 3), ("node-2", 6)])).is_ok());
        s.link_up();
        assert_eq!(
            s.ready(&heads(&[("node-1", 9), ("node-2", 9)])),
            Err(NotReady::Replaying),
            "every new link syncs again"
        );
        s.marked(1, SyncMark::default());
        assert_eq!(
            s.ready(&heads(&[])),
            Err(NotReady::Replaying),
            "a mark of the previous link does not count"
        );
        s.marked(2, SyncMark::default());
        assert!(s.ready(&heads(&[])).is_ok());
    }
}
