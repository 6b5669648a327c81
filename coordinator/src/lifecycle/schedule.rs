//! Scheduled refresh (`docs/lifecycle.md`, "Scheduled refresh"): when the signed policy sets
//! `refresh_every` for a key, the coordinator starts a refresh of it when it falls due, retries
//! one that failed, and reports one that is overdue (`GET /v1/keys/{id}`'s `refresh`, the
//! `custody_refresh_overdue` metric, a `refresh.overdue` audit record).
//!
//! The coordinator is not the authority: a scheduled order carries no officer signature, and
//! every node accepts it only as a plain refresh of its own key, under the policy it runs
//! itself, once its own record of the epoch's activation is `refresh_every` old. A compromised
//! coordinator can at most refresh on time, or not at all (then the key is reported overdue).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use proto::{
    api::{KeyStatus, RefreshView},
    lifecycle::{
        refresh_grace, MembershipKind, MembershipOrder, SignedMembershipOrder, SCHEDULED_TTL_SECS,
    },
};

use crate::{
    control::{unix_now, POLICY_BUNDLE},
    orchestrator::Orchestrator,
    store::{KeyRecord, Store},
};

/// How often the schedule is looked at.
pub const TICK: Duration = Duration::from_secs(1);

/// The policy the coordinator relayed last, read for its schedule only. It is not verified
/// here: the nodes verify it, and each refuses a scheduled refresh its own policy does not set.
pub fn relayed_policy(store: &Store) -> Option<policy::Policy> {
    let json = store.meta::<String>(POLICY_BUNDLE).ok().flatten()?;
    policy::Bundle::from_json(&json).ok()?.policy().ok()
}

/// The key's refresh schedule under `policy` at `now`; `None` when it has none.
pub fn schedule(rec: &KeyRecord, policy: Option<&policy::Policy>, now: u64) -> Option<RefreshView> {
    if rec.info.status != KeyStatus::Ready {
        return None;
    }
    let every = policy?.refresh_every(&rec.info.key_id)?;
    let since = rec.epoch_since.unwrap_or(now);
    let due_at = since.saturating_add(every);
    Some(RefreshView {
        every_secs: every,
        since,
        due_at,
        overdue: now > due_at.saturating_add(refresh_grace(every)),
    })
}

/// Every key's schedule, by key id (for the metric).
pub fn schedules(store: &Store) -> BTreeMap<String, RefreshView> {
    let policy = relayed_policy(store);
    let now = unix_now();
    store
        .keys()
        .unwrap_or_default()
        .iter()
        .filter_map(|k| Some((k.info.key_id.clone(), schedule(k, policy.as_ref(), now)?)))
        .collect()
}

/// The order of a scheduled refresh of the key as it is now.
pub fn scheduled_order(rec: &KeyRecord, now: u64) -> SignedMembershipOrder {
    SignedMembershipOrder {
        order: MembershipOrder {
            key_id: rec.info.key_id.clone(),
            epoch: rec.info.epoch,
            kind: MembershipKind::Refresh,
            old_set: rec.info.nodes.clone(),
            new_set: rec.info.nodes.clone(),
            new_threshold: rec.info.threshold,
            identities: Default::default(),
            // A third of the longest life a node accepts, for clock skew.
            not_after: now.saturating_add(SCHEDULED_TTL_SECS / 3),
            scheduled: true,
        },
        signatures: vec![],
    }
}

/// What the schedule remembers between ticks (in memory: after a restart a due refresh
/// starts at once, and an overdue key is reported again).
#[derive(Default)]
struct Memory {
    /// When a scheduled refresh of the key last started.
    tried: HashMap<String, u64>,
    /// Keys (and epochs) already reported overdue.
    reported: HashSet<(String, u64)>,
}

impl Orchestrator {
    /// Runs the refresh schedule for the coordinator's life.
    pub async fn run_refresh_schedule(self: Arc<Self>) {
        let mut memory = Memory::default();
        loop {
            tokio::time::sleep(TICK).await;
            self.refresh_tick(&mut memory, unix_now());
        }
    }

    fn refresh_tick(self: &Arc<Self>, memory: &mut Memory, now: u64) {
        let Ok(keys) = self.store.keys() else { return };
        let policy = relayed_policy(&self.store);
        for rec in keys {
            let key_id = rec.info.key_id.clone();
            if rec.info.status != KeyStatus::Ready || rec.info.locked.is_some() {
                continue;
            }
            if rec.epoch_since.is_none() {
                // A key from before the schedule existed: its epoch counts from now.
                let _ = self.store.update_key(&key_id, |k| {
                    k.epoch_since.get_or_insert(now);
                });
                continue;
            }
            let Some(view) = schedule(&rec, policy.as_ref(), now) else {
                continue;
            };
            if view.overdue && memory.reported.insert((key_id.clone(), rec.info.epoch)) {
                tracing::warn!(key = %key_id, epoch = rec.info.epoch, due_at = view.due_at, "scheduled refresh overdue");
                self.control.record(
                    "refresh.overdue",
                    serde_json::json!({"key_id": key_id, "epoch": rec.info.epoch,
                        "due_at": view.due_at, "every_secs": view.every_secs,
                        "last_error": rec.info.ceremony.as_ref().and_then(|c| c.error.as_ref()).map(|e| &e.code)}),
                );
            }
            let retry = (view.every_secs / 10).clamp(2, 600);
            let recent = memory
                .tried
                .get(&key_id)
                .is_some_and(|t| now < t.saturating_add(retry));
            if now < view.due_at || recent {
                continue;
            }
            let order = scheduled_order(&rec, now);
            if self.claim_ceremony(&order).is_err() {
                continue; // a ceremony is running, or the key changed: the next tick sees.
            }
            memory.tried.insert(key_id.clone(), now);
            tracing::info!(key = %key_id, epoch = rec.info.epoch, "scheduled refresh");
            self.control.record(
                "refresh.scheduled",
                serde_json::json!({"key_id": key_id, "epoch": rec.info.epoch,
                    "due_at": view.due_at, "order": hex::encode(order.order.digest())}),
            );
            tokio::spawn(self.clone().change_membership(order));
        }
    }
}
