//! The control plane: what nodes report outside sessions (verdicts, status, order results,
//! ledger entries) and what the coordinator relays to them (evaluations, policy bundles, orders,
//! other nodes' ledger entries). The coordinator verifies none of the signatures it carries:
//! every node verifies them itself against keys pinned in its own configuration.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use proto::{
    audit::SharedAudit,
    authz::{NodeStatus, NodeVerdict, Order},
    wire::{CoordFrame, EvaluateRequest, NodeFrame, SessionFailure},
};
use serde_json::json;
use tokio::sync::{mpsc, Notify};

use crate::{
    registry::{NodeEvent, Registry},
    store::Store,
};

/// Store key of the latest policy bundle pushed through the API.
pub const POLICY_BUNDLE: &str = "policy/latest";

type Waiters<T> = Mutex<HashMap<String, mpsc::UnboundedSender<(String, T)>>>;

/// Shared control-plane state.
pub struct Control {
    store: Arc<Store>,
    registry: Arc<Registry>,
    statuses: Mutex<BTreeMap<String, (u64, NodeStatus)>>,
    evals: Waiters<NodeVerdict>,
    acks: Waiters<Result<(), SessionFailure>>,
    accounts: Waiters<Result<proto::hd::AccountKeys, SessionFailure>>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// The coordinator's audit log.
    pub audit: SharedAudit,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unix seconds by the coordinator's clock (audit timestamps only; nodes use their own).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Collects one answer from each asked node until all answered or `timeout` passed.
async fn gather<T>(
    mut rx: mpsc::UnboundedReceiver<(String, T)>,
    asked: &[&String],
    timeout: Duration,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < asked.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((node, v))) if asked.contains(&&node) => {
                out.insert(node, v);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    out
}

fn account_registration(acct: &crate::store::AccountRecord) -> proto::wire::AccountRegistration {
    proto::wire::AccountRegistration {
        key_id: acct.key_id.clone(),
        name: acct.name.clone(),
        index: acct.index,
    }
}

impl Control {
    /// Creates the control plane.
    pub fn new(store: Arc<Store>, registry: Arc<Registry>, audit: SharedAudit) -> Self {
        Self {
            store,
            registry,
            statuses: Mutex::new(BTreeMap::new()),
            evals: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            accounts: Mutex::new(HashMap::new()),
            wakers: Mutex::new(HashMap::new()),
            audit,
        }
    }

    /// Appends to the audit log, logging (not failing) on error: the coordinator's log is a
    /// record of what it relayed, while the nodes' logs are the ones that gate signing.
    pub fn record(&self, kind: &str, data: serde_json::Value) {
        if let Err(e) = self.audit.append(unix_now(), kind, data) {
            tracing::error!(error = %e, kind, "cannot write the coordinator audit log");
        }
    }

    /// Handles node events until the registry goes away.
    pub async fn run(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<NodeEvent>) {
        while let Some(e) = events.recv().await {
            match e {
                NodeEvent::Connected(node) => self.on_connected(&node),
                NodeEvent::Frame(node, frame) => self.on_frame(&node, *frame),
            }
        }
    }

    /// A node (re)connected: replay the latest policy bundle and every order.
    fn on_connected(&self, node: &str) {
        if let Ok(Some(bundle_json)) = self.store.meta::<String>(POLICY_BUNDLE) {
            self.registry.send(node, CoordFrame::Policy { bundle_json });
        }
        for order in self.store.orders().unwrap_or_default() {
            self.registry.send(node, CoordFrame::Order(order));
        }
        // Accounts of its keys the node may have missed: it registers each (or refuses a
        // conflict), in a few frames.
        let held: std::collections::BTreeSet<String> = self
            .store
            .keys()
            .unwrap_or_default()
            .into_iter()
            .filter(|k| k.info.nodes.iter().any(|n| n == node))
            .map(|k| k.info.key_id)
            .collect();
        let regs: Vec<_> = self
            .store
            .all_accounts()
            .unwrap_or_default()
            .iter()
            .filter(|a| held.contains(&a.key_id))
            .map(account_registration)
            .collect();
        for batch in regs.chunks(proto::wire::ACCOUNT_BATCH) {
            self.registry
                .send(node, CoordFrame::Accounts(batch.to_vec()));
        }
        self.wake_all();
    }

    fn on_frame(&self, node: &str, frame: NodeFrame) {
        match frame {
            NodeFrame::Verdict {
                request_id,
                verdict,
            } => {
                if let Some(tx) = lock(&self.evals).get(&request_id) {
                    let _ = tx.send((node.to_string(), verdict));
                }
            }
            NodeFrame::Status(st) => {
                let mut statuses = lock(&self.statuses);
                let seq = statuses.get(node).map(|s| s.0 + 1).unwrap_or(1);
                statuses.insert(node.to_string(), (seq, st));
            }
            NodeFrame::OrderResult { order_id, result } => {
                if let Some(tx) = lock(&self.acks).get(&order_id) {
                    let _ = tx.send((node.to_string(), result));
                }
            }
            NodeFrame::AccountResult {
                key_id,
                name,
                result,
            } => {
                if let Some(tx) = lock(&self.accounts).get(&format!("{key_id}\0{name}")) {
                    let _ = tx.send((node.to_string(), result));
                }
            }
            NodeFrame::Ledger(entry) => match self.store.put_ledger(&entry) {
                Ok(true) => {
                    self.registry
                        .broadcast(&CoordFrame::Ledger(entry), Some(node));
                    self.wake_all();
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "cannot store a ledger entry"),
            },
            NodeFrame::LedgerWant(heads) => {
                for entry in self.store.ledger_after(&heads).unwrap_or_default() {
                    self.registry.send(node, CoordFrame::Ledger(entry));
                }
            }
            other => {
                tracing::warn!(node, frame = ?std::mem::discriminant(&other), "unexpected frame")
            }
        }
    }

    /// Asks `nodes` for their verdict on a request; returns the answers received in time.
    pub async fn evaluate(
        &self,
        req: &EvaluateRequest,
        nodes: &[String],
        timeout: Duration,
    ) -> BTreeMap<String, NodeVerdict> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.evals).insert(req.request_id.clone(), tx);
        let asked: Vec<&String> = nodes
            .iter()
            .filter(|n| self.registry.send(n, CoordFrame::Evaluate(req.clone())))
            .collect();
        let out = gather(rx, &asked, timeout).await;
        lock(&self.evals).remove(&req.request_id);
        out
    }

    /// Stores an order, relays it to every connected node, and collects their answers.
    pub async fn push_order(
        &self,
        order: &Order,
        timeout: Duration,
    ) -> BTreeMap<String, Result<(), SessionFailure>> {
        let id = order.id();
        if let Err(e) = self.store.append_order(order) {
            tracing::error!(error = %e, "cannot store an order");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.acks).insert(id.clone(), tx);
        let nodes = self.registry.connected();
        let asked: Vec<&String> = nodes
            .iter()
            .filter(|n| self.registry.send(n, CoordFrame::Order(order.clone())))
            .collect();
        let out = gather(rx, &asked, timeout).await;
        lock(&self.acks).remove(&id);
        self.record("order", json!({"order": order, "results": &out}));
        self.wake_all();
        out
    }

    /// Asks `nodes` to register an account; returns each answer received in time.
    pub async fn register_account(
        &self,
        acct: &crate::store::AccountRecord,
        nodes: &[String],
        timeout: Duration,
    ) -> BTreeMap<String, Result<proto::hd::AccountKeys, SessionFailure>> {
        let id = format!("{}\0{}", acct.key_id, acct.name);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.accounts).insert(id.clone(), tx);
        let reg = account_registration(acct);
        let asked: Vec<&String> = nodes
            .iter()
            .filter(|n| {
                self.registry
                    .send(n, CoordFrame::Accounts(vec![reg.clone()]))
            })
            .collect();
        let out = gather(rx, &asked, timeout).await;
        lock(&self.accounts).remove(&id);
        out
    }

    /// Stores a policy bundle, relays it, and waits (bounded) for every connected node's status.
    pub async fn push_policy(
        &self,
        bundle_json: &str,
        timeout: Duration,
    ) -> BTreeMap<String, NodeStatus> {
        if let Err(e) = self.store.set_meta(POLICY_BUNDLE, &bundle_json.to_string()) {
            tracing::error!(error = %e, "cannot store the policy bundle");
        }
        let nodes = self.registry.connected();
        let before: BTreeMap<String, u64> = self.status_seqs();
        for n in &nodes {
            self.registry.send(
                n,
                CoordFrame::Policy {
                    bundle_json: bundle_json.to_string(),
                },
            );
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let now = self.status_seqs();
            let all = nodes
                .iter()
                .all(|n| now.get(n).copied().unwrap_or(0) > before.get(n).copied().unwrap_or(0));
            if all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out: BTreeMap<String, NodeStatus> = self
            .statuses()
            .into_iter()
            .filter(|(n, _)| nodes.contains(n))
            .collect();
        self.record("policy.pushed", json!({"nodes": &out}));
        self.wake_all();
        out
    }

    fn status_seqs(&self) -> BTreeMap<String, u64> {
        lock(&self.statuses)
            .iter()
            .map(|(n, (seq, _))| (n.clone(), *seq))
            .collect()
    }

    /// Each node's latest status report.
    pub fn statuses(&self) -> BTreeMap<String, NodeStatus> {
        lock(&self.statuses)
            .iter()
            .map(|(n, (_, st))| (n.clone(), st.clone()))
            .collect()
    }

    /// The notifier a waiting request sleeps on.
    pub fn waker(&self, request_id: &str) -> Arc<Notify> {
        lock(&self.wakers)
            .entry(request_id.to_string())
            .or_default()
            .clone()
    }

    /// Forgets a finished request's notifier.
    pub fn forget(&self, request_id: &str) {
        lock(&self.wakers).remove(request_id);
    }

    /// Wakes one waiting request (an approval or a veto arrived).
    pub fn wake(&self, request_id: &str) {
        if let Some(n) = lock(&self.wakers).get(request_id) {
            n.notify_one();
        }
    }

    /// Wakes every waiting request (policy, freeze, ledger or connectivity changed).
    pub fn wake_all(&self) {
        for n in lock(&self.wakers).values() {
            n.notify_one();
        }
    }
}
