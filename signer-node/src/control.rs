//! Control frames on a node: what the coordinator asks outside sessions.
//!
//! Evaluations run in parallel, at most [`MAX_CONTROL_JOBS`] at once; one beyond that is dropped
//! and the coordinator asks again. Frames that carry state (policy bundles, orders, accounts,
//! ledger entries, the replay's [`proto::wire::SyncMark`]) go through one *ordered lane*: they
//! are applied one at a time in the order they arrived, each order is acknowledged, and none is
//! dropped. When the lane is full the link stops reading, so the coordinator's queue for this
//! node fills instead (it then drops the link and replays on reconnect, see
//! `coordinator::registry`).

use std::sync::Arc;

use proto::{
    authz::{NodeVerdict, VerdictKind},
    wire::{CoordFrame, EvaluateRequest, NodeFrame},
};
use tokio::sync::mpsc;

use crate::{
    plan,
    session::{NodeCore, MAX_CONTROL_JOBS},
};

/// Frames queued in the ordered lane at most; beyond it the link waits.
pub const LANE_DEPTH: usize = 256;

impl NodeCore {
    /// Handles a control frame: evaluations in parallel, everything else in the ordered lane.
    pub(crate) async fn control_frame(self: &Arc<Self>, frame: CoordFrame) {
        match frame {
            CoordFrame::Welcome => {}
            CoordFrame::Evaluate(req) => self.control_job(move |me| me.evaluate(req)),
            other => {
                let link = self.sync.link();
                if self.lane().send((link, other)).await.is_err() {
                    tracing::error!(
                        "the ordered lane has stopped; a control frame was not applied"
                    );
                }
            }
        }
    }

    /// The ordered lane's sender; its worker starts with the first frame.
    fn lane(self: &Arc<Self>) -> mpsc::Sender<(u64, CoordFrame)> {
        self.lane
            .get_or_init(|| {
                let (tx, mut rx) = mpsc::channel::<(u64, CoordFrame)>(LANE_DEPTH);
                // A weak reference: the core owns the sender, so the worker must not keep the
                // core alive.
                let weak = Arc::downgrade(self);
                tokio::spawn(async move {
                    while let Some((link, frame)) = rx.recv().await {
                        let Some(me) = weak.upgrade() else { break };
                        let more = !rx.is_empty();
                        let done = tokio::task::spawn_blocking(move || me.apply(link, frame, more));
                        if done.await.is_err() {
                            tracing::error!("a control frame's job panicked");
                        }
                    }
                });
                tx
            })
            .clone()
    }

    /// Applies one state-carrying frame received on link `link` (blocking). `more`: other
    /// frames wait behind it.
    fn apply(&self, link: u64, frame: CoordFrame, more: bool) {
        match frame {
            CoordFrame::Policy { bundle_json } => {
                self.guard.offer_policy(&bundle_json, "coordinator");
                self.send_status();
            }
            CoordFrame::Order(order) => {
                let result = self.guard.apply_order(&order);
                // Status first: once the coordinator has every acknowledgement, the state it
                // shows already includes the order.
                self.send_status();
                let _ = self.frames.send(NodeFrame::OrderResult {
                    order_id: order.id(),
                    result,
                });
            }
            CoordFrame::Accounts(regs) => self.register_accounts(regs),
            CoordFrame::Ledger(entry) => {
                match self.guard.receive_ledger(&entry) {
                    // A refused entry may have reported its origin: show it at once.
                    Ok(crate::ledger::Received::Stored | crate::ledger::Received::Refused) => {
                        self.send_status()
                    }
                    Ok(crate::ledger::Received::Duplicate) => {}
                    Err(e) => tracing::warn!(error = %e, "ledger entry refused"),
                }
                if !more {
                    self.ask_ledger_if_behind();
                }
            }
            CoordFrame::Activate(a) => {
                let result = crate::reshare::activate(&self.store, &self.guard, &a);
                match &result {
                    Ok(what) => {
                        tracing::info!(key = %a.order.order.key_id, epoch = a.epoch(), ?what, "share epoch activation")
                    }
                    Err(f) => {
                        tracing::warn!(key = %a.order.order.key_id, code = %f.code, message = %f.message, "share epoch activation refused");
                        let _ = self.guard.audit(
                            "reshare.activation_refused",
                            serde_json::json!({"key_id": a.order.order.key_id, "epoch": a.epoch(), "code": f.code}),
                        );
                    }
                }
                self.send_status();
                let _ = self.frames.send(NodeFrame::Activated {
                    key_id: a.order.order.key_id.clone(),
                    epoch: a.epoch(),
                    result: result.map(|_| ()),
                });
            }
            CoordFrame::Synced(mark) => {
                tracing::info!(
                    orders = mark.orders,
                    origins = mark.ledger_heads.len(),
                    "coordinator replay ended"
                );
                self.sync.marked(link, mark);
                self.ask_ledger_if_behind();
                self.send_status();
            }
            other => {
                tracing::warn!(frame = ?std::mem::discriminant(&other), "unexpected frame in the ordered lane")
            }
        }
    }

    fn register_accounts(&self, regs: Vec<proto::wire::AccountRegistration>) {
        if regs.len() > proto::wire::ACCOUNT_BATCH {
            tracing::warn!(
                count = regs.len(),
                "account batch over the limit: only the first {} are registered",
                proto::wire::ACCOUNT_BATCH
            );
        }
        for reg in regs.into_iter().take(proto::wire::ACCOUNT_BATCH) {
            let result = crate::accounts::register(&self.store, &reg);
            if let Err(f) = &result {
                tracing::warn!(key = %reg.key_id, account = %reg.name, code = %f.code, "account registration refused");
            }
            let _ = self.frames.send(NodeFrame::AccountResult {
                key_id: reg.key_id,
                name: reg.name,
                result,
            });
        }
    }

    /// Asks the coordinator for the next page of ledger entries while behind its mark.
    fn ask_ledger_if_behind(&self) {
        let heads = self.guard.ledger_heads();
        if self.sync.should_ask(&heads) {
            let _ = self.frames.send(NodeFrame::LedgerWant(heads));
        }
    }

    /// Runs a blocking evaluation if fewer than [`MAX_CONTROL_JOBS`] run; otherwise drops it.
    fn control_job(self: &Arc<Self>, job: impl FnOnce(&NodeCore) + Send + 'static) {
        let Ok(permit) = self.control.clone().try_acquire_owned() else {
            tracing::warn!("{MAX_CONTROL_JOBS} evaluations running; one was dropped (the coordinator asks again)");
            return;
        };
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            job(&me);
            drop(permit);
        });
    }

    /// Called once the link to the coordinator is up: syncing until the replay's mark, and
    /// report state.
    pub fn on_connected(self: &Arc<Self>) {
        self.sync.link_up();
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.send_status());
    }

    /// Whether this node may sign now; `node.syncing` says why not.
    pub fn check_synced(&self) -> Result<(), proto::wire::SessionFailure> {
        self.sync
            .ready(&self.guard.ledger_heads())
            .map_err(|why| crate::session::fail("node.syncing", why.to_string()))
    }

    /// Sends the node's policy, freeze, ledger and sync state to the coordinator.
    pub fn send_status(&self) {
        match self.guard.status() {
            Ok(mut st) => {
                st.syncing = self.sync.ready(&st.ledger_heads).is_err();
                let _ = self.frames.send(NodeFrame::Status(st));
            }
            Err(e) => tracing::error!(error = %e, "cannot read the node status"),
        }
    }

    /// Answers an evaluation request. Blocking (decodes the transaction, reads the store).
    fn evaluate(&self, req: EvaluateRequest) {
        let verdict = match self.check_synced() {
            // Deferred, not denied: the node will be able to judge once it has caught up.
            // Asked while behind: ask for the missing entries again (at a bounded rate).
            Err(f) => {
                self.ask_ledger_if_behind();
                NodeVerdict::plain(VerdictKind::Defer, &f.code, f.message, self.guard.now())
            }
            Ok(()) => match plan::decode_request(
                &self.store,
                &req.key_id,
                &req.request_id,
                &req.payload,
                req.account.as_deref(),
            ) {
                Ok(decoded) => self
                    .guard
                    .judge(&req.request_id, &decoded, &req.approvals, false),
                Err(f) => {
                    NodeVerdict::plain(VerdictKind::Deny, &f.code, f.message, self.guard.now())
                }
            },
        };
        let _ = self.frames.send(NodeFrame::Verdict {
            request_id: req.request_id,
            verdict,
        });
    }
}
