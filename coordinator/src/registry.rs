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
    self, CoordFrame, Envelope, NodeFrame, SessionFailure, SessionId, SessionOutput,
    PROTOCOL_VERSION,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::TlsAcceptor;

/// A node's report about a session: `(node id, result)`.
pub type Report = (String, Result<SessionOutput, SessionFailure>);

struct NodeConn {
    tx: mpsc::UnboundedSender<CoordFrame>,
    conn_id: u64,
}

struct Route {
    parties: Vec<String>,
    reports: mpsc::UnboundedSender<Report>,
}

/// Something a node said outside a session, or a node (re)connecting.
#[derive(Debug)]
pub enum NodeEvent {
    /// A node's link is up (after `Hello`).
    Connected(String),
    /// A frame that is not session traffic: verdicts, status, order results, ledger.
    Frame(String, Box<NodeFrame>),
}

/// Connected nodes and session routes.
#[derive(Default)]
pub struct Registry {
    nodes: Mutex<HashMap<String, NodeConn>>,
    routes: Mutex<HashMap<SessionId, Route>>,
    next_conn: AtomicU64,
    events: Mutex<Option<mpsc::UnboundedSender<NodeEvent>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Where non-session frames go; returns the receiving end.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<NodeEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.events) = Some(tx);
        rx
    }

    fn event(&self, e: NodeEvent) {
        if let Some(tx) = lock(&self.events).as_ref() {
            let _ = tx.send(e);
        }
    }

    /// Sends a frame to every connected node except `except`.
    pub fn broadcast(&self, frame: &CoordFrame, except: Option<&str>) {
        for (id, c) in lock(&self.nodes).iter() {
            if Some(id.as_str()) != except {
                let _ = c.tx.send(frame.clone());
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
            .map(|c| c.tx.send(frame).is_ok())
            .unwrap_or(false)
    }

    /// Opens a route for a session; reports arrive on the returned channel.
    pub fn open_route(
        &self,
        sid: SessionId,
        parties: Vec<String>,
    ) -> mpsc::UnboundedReceiver<Report> {
        let (tx, rx) = mpsc::unbounded_channel();
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
                let _ = route.reports.send((sender.to_string(), result));
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
                let _ = route.reports.send((
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
        tokio::time::timeout(Duration::from_secs(10), wire::read_frame(&mut rd)).await??;
    let NodeFrame::Hello { node_id, version } = hello else {
        anyhow::bail!("first frame was not hello");
    };
    if version != PROTOCOL_VERSION {
        anyhow::bail!("node `{node_id}` speaks protocol {version}, expected {PROTOCOL_VERSION}");
    }
    if !proto::tls::cert_is_for_node(&cert, &node_id) {
        anyhow::bail!("client certificate is not issued for node `{node_id}`");
    }
    wire::write_frame(&mut wr, &CoordFrame::Welcome).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn_id = registry.next_conn.fetch_add(1, Ordering::SeqCst);
    if let Some(old) = lock(&registry.nodes).insert(node_id.clone(), NodeConn { tx, conn_id }) {
        drop(old);
    }
    tracing::info!(node = %node_id, "node connected");
    registry.event(NodeEvent::Connected(node_id.clone()));
    let writer = async {
        while let Some(f) = rx.recv().await {
            wire::write_frame(&mut wr, &f).await?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let reader = async {
        loop {
            match wire::read_frame::<_, NodeFrame>(&mut rd).await? {
                NodeFrame::Envelope(env) => registry.route_envelope(&node_id, env),
                NodeFrame::SessionResult { session_id, result } => {
                    registry.report(&node_id, session_id, result)
                }
                NodeFrame::Hello { .. } => anyhow::bail!("unexpected second hello"),
                other => registry.event(NodeEvent::Frame(node_id.clone(), Box::new(other))),
            }
        }
    };
    let r = tokio::select! { r = reader => r, r = writer => r };
    registry.disconnected(&node_id, conn_id);
    r
}
