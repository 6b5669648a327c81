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
    authz::{NodeStatus, NodeVerdict, Order},
    wire::{CoordFrame, EvaluateRequest, NodeFrame, SessionFailure},
};
use runtime::audit::SharedAudit;
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
    /// Per connected node: wakes its order feed (a new order was stored).
    feeds: Mutex<HashMap<String, Arc<Notify>>>,
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
            feeds: Mutex::new(HashMap::new()),
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
    pub async fn run(self: Arc<Self>, mut events: mpsc::Receiver<NodeEvent>) {
        while let Some(e) = events.recv().await {
            match e {
                NodeEvent::Connected(node, conn) => {
                    tokio::spawn(self.clone().feed(node, conn));
                }
                NodeEvent::Frame(node, frame) => self.on_frame(&node, *frame),
            }
        }
    }

    /// A node's link `conn` is up: replay the latest policy bundle, every order in the order
    /// log's order and every account of its keys, then a [`proto::wire::SyncMark`]; afterwards relay each
    /// new order as it is stored. Every frame waits for room in the node's queue, so a long
    /// replay never overflows it, and the node sees the order log exactly once, in order.
    async fn feed(self: Arc<Self>, node: String, conn: u64) {
        let notify = Arc::new(Notify::new());
        if let Some(old) = lock(&self.feeds).insert(node.clone(), notify.clone()) {
            old.notify_one();
        }
        if let Some(cursor) = self.replay(&node, conn).await {
            let mut cursor = cursor;
            self.wake_all();
            loop {
                notify.notified().await;
                if self.registry.conn_id(&node) != Some(conn) {
                    break;
                }
                match self.feed_orders(&node, conn, cursor).await {
                    Some(c) => cursor = c,
                    None => break,
                }
            }
        }
        let mut feeds = lock(&self.feeds);
        if feeds.get(&node).is_some_and(|n| Arc::ptr_eq(n, &notify)) {
            feeds.remove(&node);
        }
    }

    /// Sends the orders from position `from` on; returns the new cursor, or `None` if the link
    /// is gone or the store failed (the node then stays syncing until it reconnects).
    async fn feed_orders(&self, node: &str, conn: u64, from: u64) -> Option<u64> {
        let orders = match self.store.orders_from(from) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, node, "cannot read the order log");
                return None;
            }
        };
        let mut cursor = from;
        for order in orders {
            if !self
                .registry
                .send_paced(node, conn, CoordFrame::Order(order))
                .await
            {
                return None;
            }
            cursor += 1;
        }
        Some(cursor)
    }

    /// The replay after a connection; returns the order cursor once the mark went out.
    async fn replay(&self, node: &str, conn: u64) -> Option<u64> {
        let send = |f| self.registry.send_paced(node, conn, f);
        match self.store.meta::<String>(POLICY_BUNDLE) {
            Ok(Some(bundle_json)) => {
                if !send(CoordFrame::Policy { bundle_json }).await {
                    return None;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read the policy bundle; replay stopped");
                return None;
            }
        }
        let cursor = self.feed_orders(node, conn, 0).await?;
        // Share epochs activated while the node was away, before anything it would sign.
        for key in self.store.keys().unwrap_or_default() {
            if let Some(a) = key.activation {
                if !send(CoordFrame::Activate(Box::new(a))).await {
                    return None;
                }
            }
        }
        for batch in self
            .account_batches(node)
            .chunks(proto::wire::ACCOUNT_BATCH)
        {
            if !send(CoordFrame::Accounts(batch.to_vec())).await {
                return None;
            }
        }
        let ledger_heads = match self.store.ledger_heads() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the ledger heads; replay stopped");
                return None;
            }
        };
        let mark = proto::wire::SyncMark {
            ledger_heads,
            orders: cursor,
        };
        send(CoordFrame::Synced(mark)).await.then_some(cursor)
    }

    /// Every account of the keys `node` holds, to register (or refuse as a conflict).
    pub(crate) fn account_batches(&self, node: &str) -> Vec<proto::wire::AccountRegistration> {
        let held: std::collections::BTreeSet<String> = self
            .store
            .keys()
            .unwrap_or_default()
            .into_iter()
            .filter(|k| k.info.nodes.iter().any(|n| n == node))
            .map(|k| k.info.key_id)
            .collect();
        self.store
            .all_accounts()
            .unwrap_or_default()
            .iter()
            .filter(|a| held.contains(&a.key_id))
            .map(account_registration)
            .collect()
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
            NodeFrame::Activated {
                key_id,
                epoch,
                result,
            } => {
                if let Err(f) = &result {
                    tracing::warn!(node, key = %key_id, epoch, code = %f.code, message = %f.message, "a node refused an activation");
                }
                self.record(
                    "reshare.node_activation",
                    serde_json::json!({"node": node, "key_id": key_id, "epoch": epoch,
                        "code": result.as_ref().err().map(|f| f.code.clone())}),
                );
                crate::lifecycle::on_activated(
                    &self.store,
                    node,
                    &key_id,
                    epoch,
                    result.map_err(|f| f.code),
                );
            }
            NodeFrame::LedgerWant(heads) => {
                let page = self
                    .store
                    .ledger_after(&heads, proto::wire::LEDGER_PAGE)
                    .unwrap_or_default();
                for entry in page {
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

    /// Appends an order to the order log, has every connected node's feed relay it (in log
    /// order, after anything before it), and collects their answers. An order that cannot be
    /// stored is relayed to nobody (no node acknowledges it).
    pub async fn push_order(
        &self,
        order: &Order,
        timeout: Duration,
    ) -> BTreeMap<String, Result<(), SessionFailure>> {
        let id = order.id();
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.acks).insert(id.clone(), tx);
        let nodes = self.registry.connected();
        let asked: Vec<&String> = match self.store.append_order(order) {
            Ok(true) => {
                for n in lock(&self.feeds).values() {
                    n.notify_one();
                }
                nodes.iter().collect()
            }
            // Stored before: the feeds relayed it already; send it again to show its outcome
            // (applying an order twice changes nothing, and freeze epochs refuse stale ones).
            Ok(false) => nodes
                .iter()
                .filter(|n| self.registry.send(n, CoordFrame::Order(order.clone())))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot store an order; it is not relayed");
                vec![]
            }
        };
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
