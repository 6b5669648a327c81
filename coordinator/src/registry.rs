//! Connected nodes and live sessions. The coordinator routes envelopes between the parties of a
//! session; it cannot read point-to-point payloads or forge any envelope (nodes verify both).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use proto::wire::{
    CoordFrame, Envelope, NodeFrame, SessionFailure, SessionId, SessionOutput, PROTOCOL_VERSION,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::TlsAcceptor;

/// A node's report about a session: `(node id, result)`.
pub type Report = (String, Result<SessionOutput, SessionFailure>);

/// Frames queued for one node at most. A node that falls this far behind is disconnected
/// (loudly) rather than have frames dropped or the coordinator's memory grow: it reconnects and
/// the coordinator replays orders, policy and ledger to it.
pub const NODE_QUEUE: usize = 8192;

/// Node events (verdicts, statuses, ledger entries, ...) queued for the control plane at most;
/// beyond it the links stop reading (back-pressure to the nodes).
pub const EVENT_QUEUE: usize = 4096;

/// Reports queued per session route at most (each party sends one).
const ROUTE_REPORTS: usize = 64;

struct NodeConn {
    tx: mpsc::Sender<CoordFrame>,
    conn_id: u64,
    /// Ends the link (its queue overflowed).
    kill: Arc<tokio::sync::Notify>,
}

struct Route {
    parties: Vec<String>,
    reports: mpsc::Sender<Report>,
}

/// Something a node said outside a session, or a node (re)connecting.
#[derive(Debug)]
pub enum NodeEvent {
    /// A node's link is up (after `Hello`), with the link's id.
    Connected(String, u64),
    /// A frame that is not session traffic: verdicts, status, order results, ledger.
    Frame(String, Box<NodeFrame>),
}

/// Connected nodes and session routes.
#[derive(Default)]
pub struct Registry {
    nodes: Mutex<HashMap<String, NodeConn>>,
    routes: Mutex<HashMap<SessionId, Route>>,
    next_conn: AtomicU64,
    events: Mutex<Option<mpsc::Sender<NodeEvent>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Where non-session frames go; returns the receiving end.
    pub fn subscribe(&self) -> mpsc::Receiver<NodeEvent> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        *lock(&self.events) = Some(tx);
        rx
    }

    /// Queues a node event, waiting for room (the node's link stops reading meanwhile).
    async fn event(&self, e: NodeEvent) {
        let tx = lock(&self.events).clone();
        if let Some(tx) = tx {
            let _ = tx.send(e).await;
        }
    }

    /// Queues a frame for a node's link; a full queue ends the link (never a silent drop).
    fn push(&self, id: &str, c: &NodeConn, frame: CoordFrame) -> bool {
        match c.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::error!(
                    node = id,
                    limit = NODE_QUEUE,
                    "node's frame queue is full; dropping its link (it reconnects and is replayed)"
                );
                c.kill.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Sends a frame to a node, waiting while its queue is full: for replays, which must not
    /// overflow the queue themselves. `false` once the node's link `conn_id` is gone.
    pub async fn send_paced(&self, node: &str, conn_id: u64, frame: CoordFrame) -> bool {
        let tx = lock(&self.nodes)
            .get(node)
            .filter(|c| c.conn_id == conn_id)
            .map(|c| c.tx.clone());
        match tx {
            Some(tx) => tx.send(frame).await.is_ok(),
            None => false,
        }
    }

    /// The id of a node's current link, if it is connected.
    pub fn conn_id(&self, node: &str) -> Option<u64> {
        lock(&self.nodes).get(node).map(|c| c.conn_id)
    }

    /// Sends a frame to every connected node except `except`.
    pub fn broadcast(&self, frame: &CoordFrame, except: Option<&str>) {
        for (id, c) in lock(&self.nodes).iter() {
            if Some(id.as_str()) != except {
                self.push(id, c, frame.clone());
            }
        }
    }

    /// Whether a node currently has a live link.
    pub fn is_connected(&self, node: &str) -> bool {
        lock(&self.nodes).contains_key(node)
    }

    /// Ids of connected nodes, sorted.
    pub fn connected(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.nodes).keys().cloned().collect();
        v.sort();
        v
    }

    /// Sends a frame to a node; `false` if it is not connected.
    pub fn send(&self, node: &str, frame: CoordFrame) -> bool {
        lock(&self.nodes)
            .get(node)
            .map(|c| self.push(node, c, frame))
            .unwrap_or(false)
    }

    /// Sends a session's start to each of its parties, in order; stops at the first that is not
    /// connected and returns it. Envelopes of the session are not routed meanwhile: a fast
    /// party's join must not reach a slower party's queue before that party's start, or the
    /// slower party drops it as belonging to no session it knows (the routes' lock is held
    /// while the starts are queued; `route_envelope` takes it first).
    pub fn start_session(&self, start: &proto::wire::SessionStart) -> Result<(), String> {
        let _routing = lock(&self.routes);
        for p in &start.parties {
            if !self.send(p, CoordFrame::Start(start.clone())) {
                return Err(p.clone());
            }
        }
        Ok(())
    }

    /// Opens a route for a session; reports arrive on the returned channel.
    pub fn open_route(&self, sid: SessionId, parties: Vec<String>) -> mpsc::Receiver<Report> {
        let (tx, rx) = mpsc::channel(ROUTE_REPORTS);
        lock(&self.routes).insert(
            sid,
            Route {
                parties,
                reports: tx,
            },
        );
        rx
    }

    /// Sessions running now.
    pub fn open_routes(&self) -> usize {
        lock(&self.routes).len()
    }

    /// Tells the parties of every running session to abort it (coordinator stopping).
    pub fn abort_all(&self, reason: &str) -> usize {
        let routes: Vec<(SessionId, Vec<String>)> = lock(&self.routes)
            .iter()
            .map(|(sid, r)| (*sid, r.parties.clone()))
            .collect();
        for (sid, parties) in &routes {
            for p in parties {
                self.send(
                    p,
                    CoordFrame::Abort {
                        session_id: *sid,
                        reason: reason.to_string(),
                    },
                );
            }
        }
        routes.len()
    }

    /// Closes a session's route; later envelopes for it are dropped.
    pub fn close_route(&self, sid: &SessionId) {
        lock(&self.routes).remove(sid);
    }

    fn route_envelope(&self, sender: &str, env: Envelope) {
        let targets: Vec<String> = {
            let routes = lock(&self.routes);
            let Some(route) = routes.get(&env.session_id) else {
                return;
            };
            if route.parties.get(env.from as usize).map(String::as_str) != Some(sender) {
                tracing::warn!(
                    node = sender,
                    from = env.from,
                    "node sent an envelope under another party's index; dropped"
                );
                return;
            }
            match env.to {
                Some(j) => route.parties.get(j as usize).cloned().into_iter().collect(),
                None => route
                    .parties
                    .iter()
                    .filter(|p| p.as_str() != sender)
                    .cloned()
                    .collect(),
            }
        };
        for t in targets {
            self.send(&t, CoordFrame::Envelope(env.clone()));
        }
    }

    fn report(&self, sender: &str, sid: SessionId, result: Result<SessionOutput, SessionFailure>) {
        let routes = lock(&self.routes);
        if let Some(route) = routes.get(&sid) {
            if route.parties.iter().any(|p| p == sender) {
                // A party reports once; a flood beyond the route's capacity is dropped.
                let _ = route.reports.try_send((sender.to_string(), result));
            }
        }
    }

    fn disconnected(&self, node: &str, conn_id: u64) {
        {
            let mut nodes = lock(&self.nodes);
            if nodes.get(node).map(|c| c.conn_id) != Some(conn_id) {
                return;
            }
            nodes.remove(node);
        }
        tracing::warn!(node, "node disconnected");
        for route in lock(&self.routes).values() {
            if route.parties.iter().any(|p| p == node) {
                let _ = route.reports.try_send((
                    node.to_string(),
                    Err(SessionFailure {
                        code: "node.disconnected".into(),
                        message: format!("node `{node}` disconnected during the session"),
                        blame: vec![node.to_string()],
                    }),
                ));
            }
        }
    }
}

/// Accepts node links until the listener fails or the task is dropped.
pub async fn serve_nodes(
    registry: Arc<Registry>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "node listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) = handle_node(registry, acceptor, tcp).await {
                tracing::warn!(%peer, error = %e, "node link closed");
            }
        });
    }
}

async fn handle_node(
    registry: Arc<Registry>,
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let tls = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await??;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .ok_or_else(|| anyhow::anyhow!("no client certificate"))?;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let hello: NodeFrame =
        tokio::time::timeout(Duration::from_secs(10), runtime::frame::read_frame(&mut rd))
            .await??;
    let NodeFrame::Hello { node_id, version } = hello else {
        anyhow::bail!("first frame was not hello");
    };
    if version != PROTOCOL_VERSION {
        anyhow::bail!("node `{node_id}` speaks protocol {version}, expected {PROTOCOL_VERSION}");
    }
    if !runtime::tls::cert_is_for_node(&cert, &node_id) {
        anyhow::bail!("client certificate is not issued for node `{node_id}`");
    }
    runtime::frame::write_frame(&mut wr, &CoordFrame::Welcome).await?;
    let (tx, mut rx) = mpsc::channel(NODE_QUEUE);
    let conn_id = registry.next_conn.fetch_add(1, Ordering::SeqCst);
    let kill = Arc::new(tokio::sync::Notify::new());
    let conn = NodeConn {
        tx,
        conn_id,
        kill: kill.clone(),
    };
    if let Some(old) = lock(&registry.nodes).insert(node_id.clone(), conn) {
        // A node has one link: the older one ends.
        old.kill.notify_one();
    }
    tracing::info!(node = %node_id, "node connected");
    registry
        .event(NodeEvent::Connected(node_id.clone(), conn_id))
        .await;
    let writer = async {
        while let Some(f) = rx.recv().await {
            runtime::frame::write_frame(&mut wr, &f).await?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let reader = async {
        loop {
            match runtime::frame::read_frame::<_, NodeFrame>(&mut rd).await? {
                NodeFrame::Envelope(env) => registry.route_envelope(&node_id, env),
                NodeFrame::SessionResult { session_id, result } => {
                    registry.report(&node_id, session_id, result)
                }
                NodeFrame::Hello { .. } => anyhow::bail!("unexpected second hello"),
                other => {
                    registry
                        .event(NodeEvent::Frame(node_id.clone(), Box::new(other)))
                        .await
                }
            }
        }
    };
    let killed = async {
        kill.notified().await;
        Err(anyhow::anyhow!(
            "link dropped: the node's frame queue overflowed or it connected again"
        ))
    };
    let r = tokio::select! { r = reader => r, r = writer => r, r = killed => r };
    registry.disconnected(&node_id, conn_id);
    r
}
