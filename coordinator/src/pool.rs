//! The presignature pool: per key and signer subset, the coordinator keeps `depth` unused
//! presignatures ready, so an online signing costs each node one policy evaluation, one
//! durable write and a partial signature instead of the full interactive protocol.
//!
//! Refills are low priority: one starts only after `presign.idle_ms` without any online
//! signing session, at most `presign.max_parallel` at once, and nodes compute them apart from
//! their signing slots. The pool lives in the coordinator's store (public data only); each node
//! holds its own sealed share of every presignature.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use proto::{
    api::{KeyStatus, PresigPoolView, SubsetPoolView},
    presig::PresigPublic,
    sig::VerifiedSignature,
    wire::{SessionFailure, SessionKind, SessionOutput},
};

use crate::{
    metrics::{clean, Family},
    orchestrator::{subsets, Orchestrator},
    store::{KeyRecord, PoolEntry},
};

/// Refill counters and pacing (in memory; the pool itself is in the store).
#[derive(Default)]
pub struct Pool {
    made_at: Mutex<VecDeque<u64>>,
    made: AtomicU64,
    used: AtomicU64,
    failed: AtomicU64,
    running: AtomicUsize,
    /// Subsets whose last refill failed, and until when they wait.
    backoff: Mutex<HashMap<(String, Vec<String>), Instant>>,
    /// When the last online signing session ended (or started).
    last_online: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// Notes online signing activity (refills wait until it has been idle for a while).
    pub fn touch_online(&self) {
        *lock(&self.last_online) = Some(Instant::now());
    }

    /// Counts a presignature used for a signature.
    pub fn note_used(&self) {
        self.used.fetch_add(1, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        lock(&self.last_online)
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX)
    }

    fn made_last_minute(&self, now: u64) -> u64 {
        let mut q = lock(&self.made_at);
        while q.front().is_some_and(|t| *t + 60 <= now) {
            q.pop_front();
        }
        q.len() as u64
    }
}

/// The depth of a key's pool.
pub fn depth(orch: &Orchestrator, key: &KeyRecord) -> u32 {
    key.presign_depth.unwrap_or(orch.presign.default_depth)
}

/// The pool view of a key.
pub fn view(orch: &Orchestrator, key: &KeyRecord) -> PresigPoolView {
    let now = crate::control::unix_now();
    let counts = orch
        .store
        .presig_counts(&key.info.key_id)
        .unwrap_or_default();
    let mut by_subset: BTreeMap<Vec<String>, (u64, Option<u64>)> =
        subsets(&key.info.nodes, key.info.threshold as usize)
            .into_iter()
            .map(|s| (s, (0, None)))
            .collect();
    for (parties, (n, oldest)) in counts {
        by_subset.insert(parties, (n, Some(now.saturating_sub(oldest))));
    }
    let p = &orch.pool;
    PresigPoolView {
        key_id: key.info.key_id.clone(),
        depth: depth(orch, key),
        available: by_subset.values().map(|v| v.0).sum(),
        oldest_age_secs: by_subset.values().filter_map(|v| v.1).max(),
        refilled_last_minute: p.made_last_minute(now),
        made_total: p.made.load(Ordering::Relaxed),
        used_total: p.used.load(Ordering::Relaxed),
        failed_total: p.failed.load(Ordering::Relaxed),
        subsets: by_subset
            .into_iter()
            .map(|(parties, (available, oldest_age_secs))| SubsetPoolView {
                parties,
                available,
                oldest_age_secs,
            })
            .collect(),
    }
}

/// Every key's pool as metric families. Keys and subsets come from the store (key ids and
/// roster node ids).
pub fn families(orch: &Orchestrator) -> Vec<Family> {
    let mut available = Family::gauge(
        "custody_presig_available",
        "Unused presignatures per key and signer subset.",
    );
    let mut ages = Family::gauge(
        "custody_presig_oldest_age_seconds",
        "Age of the key's oldest unused presignature.",
    );
    for key in orch.store.keys().unwrap_or_default() {
        let v = view(orch, &key);
        for s in &v.subsets {
            available.push(
                vec![
                    ("key", clean(&v.key_id)),
                    ("subset", clean(&s.parties.join(","))),
                ],
                s.available,
            );
        }
        ages.push(
            vec![("key", clean(&v.key_id))],
            v.oldest_age_secs.unwrap_or(0),
        );
    }
    let p = &orch.pool;
    let now = crate::control::unix_now();
    vec![
        available,
        ages,
        Family::gauge(
            "custody_presig_refilled_last_minute",
            "Presignatures made in the last 60 seconds (the refill rate).",
        )
        .with(p.made_last_minute(now)),
        Family::counter(
            "custody_presig_made_total",
            "Presignatures made since the coordinator started.",
        )
        .with(p.made.load(Ordering::Relaxed)),
        Family::counter(
            "custody_presig_used_total",
            "Presignatures used for signatures since the coordinator started.",
        )
        .with(p.used.load(Ordering::Relaxed)),
        Family::counter(
            "custody_presig_failed_total",
            "Presignature refill sessions failed since the coordinator started.",
        )
        .with(p.failed.load(Ordering::Relaxed)),
    ]
}

/// Keeps every ready key's pool at its depth until the coordinator stops.
pub async fn refill_loop(orch: Arc<Orchestrator>) {
    let idle = Duration::from_millis(orch.presign.idle_ms);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if orch.is_stopping() {
            return;
        }
        let p = &orch.pool;
        if p.running.load(Ordering::SeqCst) >= orch.presign.max_parallel.max(1)
            || p.idle_for() < idle
            || orch.online_sessions() > 0
        {
            continue;
        }
        let Some((key, parties)) = next_refill(&orch) else {
            continue;
        };
        p.running.fetch_add(1, Ordering::SeqCst);
        let o = orch.clone();
        tokio::spawn(async move {
            refill_one(&o, &key, &parties).await;
            o.pool.running.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// The emptiest subset (relative to its key's depth) whose nodes are all connected.
fn next_refill(orch: &Orchestrator) -> Option<(String, Vec<String>)> {
    let keys = orch.store.keys().ok()?;
    let backoff = lock(&orch.pool.backoff).clone();
    let mut best: Option<(u64, String, Vec<String>)> = None;
    for key in keys {
        let d = depth(orch, &key) as u64;
        if d == 0 || key.info.status != KeyStatus::Ready || key.info.locked.is_some() {
            continue;
        }
        let v = view(orch, &key);
        for s in v.subsets {
            let waiting = backoff
                .get(&(key.info.key_id.clone(), s.parties.clone()))
                .is_some_and(|until| Instant::now() < *until);
            if s.available >= d
                || waiting
                || !s.parties.iter().all(|n| orch.registry.is_connected(n))
            {
                continue;
            }
            if best.as_ref().is_none_or(|b| s.available < b.0) {
                best = Some((s.available, key.info.key_id.clone(), s.parties));
            }
        }
    }
    best.map(|(_, k, p)| (k, p))
}

async fn refill_one(orch: &Orchestrator, key_id: &str, parties: &[String]) {
    let timeout = Duration::from_secs(orch.presign.timeout_secs);
    let result = orch
        .run_session_with_id(key_id, parties, SessionKind::Presign, timeout)
        .await
        .and_then(|(sid, outs)| agreed_public(&outs).map(|p| (sid, p)));
    match result {
        Ok((sid, public)) => {
            let now = crate::control::unix_now();
            let entry = PoolEntry {
                id: hex::encode(sid),
                key_id: key_id.to_string(),
                parties: parties.to_vec(),
                public,
                created_at: now,
            };
            if let Err(e) = orch.store.put_presig(&entry) {
                tracing::error!(error = %e, "cannot store a presignature in the pool");
                return;
            }
            orch.pool.made.fetch_add(1, Ordering::Relaxed);
            lock(&orch.pool.made_at).push_back(now);
            tracing::debug!(key = key_id, ?parties, "presignature added to the pool");
        }
        Err(f) => {
            orch.pool.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key = key_id, ?parties, code = %f.code, message = %f.message, "pool refill failed");
            lock(&orch.pool.backoff).insert(
                (key_id.to_string(), parties.to_vec()),
                Instant::now() + Duration::from_secs(5),
            );
        }
    }
}

/// Every party must report the same public data.
fn agreed_public(outs: &[(String, SessionOutput)]) -> Result<PresigPublic, SessionFailure> {
    let mut agreed: Option<&PresigPublic> = None;
    for (node, out) in outs {
        let SessionOutput::Presignature(p) = out else {
            return Err(crate::orchestrator::plain_failure(
                "session.bad_output",
                &format!("node `{node}` returned no presignature"),
            ));
        };
        if agreed.is_some_and(|a| a != p) {
            return Err(SessionFailure {
                code: "presig.mismatch".into(),
                message: format!("node `{node}` reports different presignature data"),
                blame: vec![],
            });
        }
        agreed = Some(p);
    }
    agreed
        .cloned()
        .ok_or_else(|| crate::orchestrator::plain_failure("session.bad_output", "no outputs"))
}

/// Combines the partial signatures of a presigned session and verifies the result with
/// libsecp256k1. A partial that fails its commitment check names its node
/// (`signature.invalid`, an incident found by the coordinator's own check: it locks the key).
pub fn combined_signature(
    outs: &[(String, SessionOutput)],
    entry: &PoolEntry,
    pk: &[u8; 33],
    digest: &[u8; 32],
) -> Result<VerifiedSignature, SessionFailure> {
    let mut partials = Vec::with_capacity(entry.parties.len());
    for party in &entry.parties {
        let sigma = outs.iter().find_map(|(n, o)| match o {
            SessionOutput::Partial { sigma } if n == party => Some(*sigma),
            _ => None,
        });
        let sigma = sigma.ok_or_else(|| {
            crate::orchestrator::plain_failure(
                "session.bad_output",
                &format!("node `{party}` returned no partial signature"),
            )
        })?;
        partials.push(sigma);
    }
    let invalid = |message: String, blame: Vec<String>| SessionFailure {
        code: "signature.invalid".into(),
        message,
        blame,
    };
    let (r, s) = proto::presig::combine(&entry.public, &partials, digest).map_err(|e| {
        let blame = match &e {
            proto::presig::CombineError::Invalid(idx) => idx
                .iter()
                .filter_map(|i| entry.parties.get(*i).cloned())
                .collect(),
            _ => vec![],
        };
        let own = crate::faults::OWN_CHECK;
        invalid(
            format!("{own}partial signatures do not combine: {e}"),
            blame,
        )
    })?;
    proto::sig::verify(pk, digest, &r, &s).map_err(|e| {
        let own = crate::faults::OWN_CHECK;
        invalid(format!("{own}combined signature rejected: {e}"), vec![])
    })
}
