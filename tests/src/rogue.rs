//! A *malicious* coordinator for tests: it speaks the real node-link protocol (mutual TLS 1.3,
//! frames, envelopes) to real signer-node processes, but decides itself what each node is shown.
//! Tests use it to prove that nodes hold when the coordinator lies.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use proto::wire::{
    self, CoordFrame, Envelope, NodeFrame, SessionFailure, SessionId, SessionOutput,
};
use tokio::sync::mpsc;

/// A node's report: `(node, session, result)`.
pub type Report = (String, SessionId, Result<SessionOutput, SessionFailure>);

type Links = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<CoordFrame>>>>;

/// Rewrites what a node sent before it is relayed: `(sender, envelope)` → envelopes to route.
pub type Tamper = Box<dyn Fn(&str, Envelope) -> Vec<Envelope> + Send + Sync>;

/// Decides, per recipient, whether the relay delivers an envelope: `(sender, recipient,
/// envelope)` → deliver. A broadcast can so reach each party in a different version.
pub type Deliver = Box<dyn Fn(&str, &str, &Envelope) -> bool + Send + Sync>;

/// What the relay does with envelopes, shared with the connection tasks.
#[derive(Clone, Default)]
struct Relay {
    routes: Arc<Mutex<HashMap<SessionId, Vec<String>>>>,
    tamper: Arc<Mutex<Option<Tamper>>>,
    deliver: Arc<Mutex<Option<Deliver>>>,
    captured: Arc<Mutex<Vec<Envelope>>>,
    /// Each routed envelope waits a random time up to this before delivery (reordering).
    jitter: Arc<Mutex<Option<Duration>>>,
    /// Each node's latest reported status (ledger heads, policy, freezes).
    statuses: Arc<Mutex<HashMap<String, proto::authz::NodeStatus>>>,
    /// Every verdict the nodes sent: `(node, request id, verdict)`.
    verdicts: Arc<Mutex<Vec<(String, String, proto::authz::NodeVerdict)>>>,
    /// Every ledger entry the nodes sent, as sent.
    ledger: Arc<Mutex<Vec<proto::authz::LedgerEntry>>>,
    /// The replay mark sent after `Welcome` (nodes sign nothing before one); `None` withholds
    /// it. An empty mark by default, as an honest coordinator with no state would send.
    mark: Arc<Mutex<Option<wire::SyncMark>>>,
    /// Per-node overrides of `mark`.
    marks: Arc<Mutex<HashMap<String, Option<wire::SyncMark>>>>,
}

/// The rogue coordinator; it runs on its own runtime until dropped.
pub struct Rogue {
    rt: tokio::runtime::Runtime,
    links: Links,
    relay: Relay,
    reports: Mutex<mpsc::UnboundedReceiver<Report>>,
    /// Port nodes dial.
    pub port: u16,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rogue {
    /// Listens on 127.0.0.1 with the cluster's coordinator certificate from `pki`.
    pub fn start(pki: &Path) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let tls = Arc::new(runtime::tls::node_server_config(
            &pki.join("ca.pem"),
            &pki.join("coordinator.pem"),
            &pki.join("coordinator.key"),
        )?);
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let links: Links = Arc::default();
        let relay = Relay::default();
        *lock(&relay.mark) = Some(wire::SyncMark::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let (l2, r2) = (links.clone(), relay.clone());
        rt.spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, links, routes, tx) =
                    (acceptor.clone(), l2.clone(), r2.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = serve(acceptor, tcp, links, routes, tx).await;
                });
            }
        });
        Ok(Self {
            rt,
            links,
            relay,
            reports: Mutex::new(rx),
            port,
        })
    }

    /// Sets the replay mark sent to nodes that connect from now on (`None`: withheld).
    pub fn set_mark(&self, mark: Option<wire::SyncMark>) {
        *lock(&self.relay.mark) = mark;
    }

    /// Sets the replay mark sent to `node` when it connects from now on (`None`: withheld).
    pub fn set_mark_for(&self, node: &str, mark: Option<wire::SyncMark>) {
        lock(&self.relay.marks).insert(node.to_string(), mark);
    }

    /// Waits until every node in `ids` is connected and has reported the status of its
    /// current link: ready to sign (it processed the replay mark), or, for a node whose mark
    /// is withheld, any status.
    pub fn wait_nodes(&self, ids: &[&str], timeout: Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let withheld = |i: &str| {
            let per_node = lock(&self.relay.marks).get(i).cloned();
            per_node
                .unwrap_or_else(|| lock(&self.relay.mark).clone())
                .is_none()
        };
        let up = |i: &str| {
            lock(&self.links).contains_key(i)
                && lock(&self.relay.statuses)
                    .get(i)
                    .is_some_and(|st| !st.syncing || withheld(i))
        };
        while !ids.iter().all(|i| up(i)) {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "nodes {ids:?} did not connect and catch up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Routes envelopes of `sid` among `parties` (index order), as an honest relay would.
    pub fn route(&self, sid: SessionId, parties: Vec<String>) {
        lock(&self.relay.routes).insert(sid, parties);
    }

    /// From now on, every envelope a node sends passes through `f` before it is routed.
    pub fn tamper(&self, f: Tamper) {
        *lock(&self.relay.tamper) = Some(f);
    }

    /// From now on, each envelope reaches only the recipients `f` accepts (`None`: all).
    pub fn deliver(&self, f: Option<Deliver>) {
        *lock(&self.relay.deliver) = f;
    }

    /// From now on, delays each delivery by a random time up to `max`, so messages arrive out
    /// of order (`None`: deliver at once).
    pub fn jitter(&self, max: Option<Duration>) {
        *lock(&self.relay.jitter) = max;
    }

    /// Every envelope the nodes sent so far, as sent.
    pub fn captured(&self) -> Vec<Envelope> {
        lock(&self.relay.captured).clone()
    }

    /// The latest status `node` reported, if any (a node reports after storing a relayed ledger
    /// entry, so tests can await that instead of sleeping).
    pub fn status(&self, node: &str) -> Option<proto::authz::NodeStatus> {
        lock(&self.relay.statuses).get(node).cloned()
    }

    /// Forgets `node`'s latest status, so that a test restarting the node can wait for the
    /// new process's status.
    pub fn forget_status(&self, node: &str) {
        lock(&self.relay.statuses).remove(node);
    }

    /// Every verdict the nodes sent so far (answers to `CoordFrame::Evaluate`), in arrival
    /// order: `(node, request id, verdict)`.
    pub fn verdicts(&self) -> Vec<(String, String, proto::authz::NodeVerdict)> {
        lock(&self.relay.verdicts).clone()
    }

    /// Every ledger entry the nodes sent so far, as sent (they are also relayed to the others).
    pub fn ledger_entries(&self) -> Vec<proto::authz::LedgerEntry> {
        lock(&self.relay.ledger).clone()
    }

    /// Sends a frame to one node.
    pub fn send(&self, node: &str, frame: CoordFrame) -> bool {
        lock(&self.links)
            .get(node)
            .is_some_and(|t| t.send(frame).is_ok())
    }

    /// Next report from any node, or `None` after `timeout`.
    pub fn next_report(&self, timeout: Duration) -> Option<Report> {
        let mut rx = lock(&self.reports);
        self.rt.block_on(async {
            tokio::time::timeout(timeout, rx.recv())
                .await
                .ok()
                .flatten()
        })
    }
}

/// Routes one envelope as an honest relay would: to its recipient, or to every other party.
fn relay_one(relay: &Relay, links: &Links, sender: &str, env: Envelope) {
    let targets: Vec<String> = match lock(&relay.routes).get(&env.session_id) {
        None => vec![],
        Some(parties) => match env.to {
            Some(j) => parties.get(j as usize).cloned().into_iter().collect(),
            None => parties.iter().filter(|p| *p != sender).cloned().collect(),
        },
    };
    let jitter = *lock(&relay.jitter);
    for t in targets {
        if lock(&relay.deliver)
            .as_ref()
            .is_some_and(|f| !f(sender, &t, &env))
        {
            continue;
        }
        let Some(l) = lock(links).get(&t).cloned() else {
            continue;
        };
        let frame = CoordFrame::Envelope(env.clone());
        match jitter {
            None => {
                let _ = l.send(frame);
            }
            Some(max) => {
                let wait = max.mul_f64(rand::random::<f64>());
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = l.send(frame);
                });
            }
        }
    }
}

async fn serve(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    links: Links,
    relay: Relay,
    reports: mpsc::UnboundedSender<Report>,
) -> anyhow::Result<()> {
    let tls = acceptor.accept(tcp).await?;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let NodeFrame::Hello { node_id, .. } = runtime::frame::read_frame(&mut rd).await? else {
        anyhow::bail!("no hello");
    };
    runtime::frame::write_frame(&mut wr, &CoordFrame::Welcome).await?;
    // A status from an earlier link says nothing about this one.
    lock(&relay.statuses).remove(&node_id);
    let mark = lock(&relay.marks)
        .get(&node_id)
        .cloned()
        .unwrap_or_else(|| lock(&relay.mark).clone());
    if let Some(mark) = mark {
        runtime::frame::write_frame(&mut wr, &CoordFrame::Synced(mark)).await?;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&links).insert(node_id.clone(), tx.clone());
    tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if runtime::frame::write_frame(&mut wr, &f).await.is_err() {
                break;
            }
        }
    });
    let result = read_loop(&mut rd, (&node_id, &tx), &links, &relay, &reports).await;
    // The link is gone: forget it (unless the node has reconnected meanwhile).
    let mut l = lock(&links);
    if l.get(&node_id).is_some_and(|t| t.same_channel(&tx)) {
        l.remove(&node_id);
    }
    drop(l);
    result
}

async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    (node_id, link): (&str, &mpsc::UnboundedSender<CoordFrame>),
    links: &Links,
    relay: &Relay,
    reports: &mpsc::UnboundedSender<Report>,
) -> anyhow::Result<()> {
    let node_id = node_id.to_string();
    loop {
        match runtime::frame::read_frame::<_, NodeFrame>(rd).await? {
            NodeFrame::Envelope(env) => {
                lock(&relay.captured).push(env.clone());
                let out = match lock(&relay.tamper).as_ref() {
                    Some(f) => f(&node_id, env),
                    None => vec![env],
                };
                for env in out {
                    relay_one(relay, links, &node_id, env);
                }
            }
            NodeFrame::SessionResult { session_id, result } => {
                let _ = reports.send((node_id.clone(), session_id, result));
            }
            NodeFrame::Hello { .. } => anyhow::bail!("second hello"),
            // Ledger entries are relayed as an honest coordinator would, so that sessions after
            // a completed one are not refused with `ledger.behind`.
            NodeFrame::Ledger(entry) => {
                lock(&relay.ledger).push(entry.clone());
                for (id, l) in lock(links).iter() {
                    if *id != node_id {
                        let _ = l.send(CoordFrame::Ledger(entry.clone()));
                    }
                }
            }
            // Only the current link's statuses count (a killed process's last words do not).
            NodeFrame::Status(st) => {
                let current = lock(links)
                    .get(&node_id)
                    .is_some_and(|t| t.same_channel(link));
                if current {
                    lock(&relay.statuses).insert(node_id.clone(), st);
                }
            }
            // Answered from the entries seen, as an honest coordinator would.
            NodeFrame::LedgerWant(heads) => {
                let held: Vec<_> = lock(&relay.ledger)
                    .iter()
                    .filter(|e| e.seq > heads.get(&e.origin).copied().unwrap_or(0))
                    .cloned()
                    .collect();
                if let Some(l) = lock(links).get(&node_id) {
                    for e in held {
                        let _ = l.send(CoordFrame::Ledger(e));
                    }
                }
            }
            NodeFrame::Verdict {
                request_id,
                verdict,
            } => {
                lock(&relay.verdicts).push((node_id.clone(), request_id, verdict));
            }
            _ => {}
        }
    }
}
