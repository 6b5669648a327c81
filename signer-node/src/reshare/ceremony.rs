//! The redistribution ceremony on one node (`docs/lifecycle.md`): checks the officers' order,
//! deals (as a dealer), receives and checks sub-shares (as a new guardian), agrees with every
//! party on what each dealer showed, names a cheating dealer or complainer, and stores the new
//! share as *pending* under the next epoch. Activation is [`super::activate`].

use std::collections::BTreeMap;

use cggmp24::generic_ec::{NonZero, Point, Scalar, SecretScalar};
use ed25519_dalek::VerifyingKey;
use futures::{SinkExt, StreamExt};
use proto::{
    lifecycle::{session_parties, stored_digest, SignedMembershipOrder},
    wire::{SessionFailure, SessionId, SessionOutput, SessionStart},
};
use round_based::{MessageDestination, Outgoing};
use sha2::{Digest, Sha256};

use super::{
    messages::{
        check_points, commit_digest, key_info, parse_points, parse_scalar, point_bytes, signed_by,
        sub_digest, Complaint, Deal, Echo, KeyInfoWire, Msg, SubShare,
    },
    vss,
};
use crate::{
    guard::Guard,
    identity::NodeIdentity,
    mpc::{AuxInfo, KeyShare, E},
    plan::{aux_record, load_json, share_record},
    session::{fail, OutSinkFactory},
    store::{KeyMeta, PendingEpoch, Store},
};

/// A dealer that cheats, for adversarial tests only (the test binary `rogue-node` sets it; the
/// `signer-node` binary never does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DealerFault {
    /// Sends the last new guardian a sub-share off by one (signed, so the complaint proves it).
    WrongSubShare,
    /// Commits to a constant term that is not its weighted public share.
    WrongConstant,
    /// Shows every other party a different set of commitments (each signed).
    Equivocate,
    /// Reports its own public share falsely and commits to a constant term that matches the
    /// lie (so check 3 passes and the constant terms no longer add up to the key).
    WrongPublicShare,
}

/// Every dealer's commitments, in dealer order.
type Commitments = Vec<Vec<Point<E>>>;

/// A validated redistribution session on this node.
pub struct ResharePlan {
    key_id: String,
    order: SignedMembershipOrder,
    order_digest: [u8; 32],
    parties: Vec<String>,
    /// Party index of each dealer, and its old share point (1-based).
    dealers: Vec<(u16, u16)>,
    /// Party index of each new guardian, and its new share point (1-based).
    receivers: Vec<(u16, u16)>,
    me: u16,
    /// This node's old key (a dealer, or an old guardian); `None` for a new guardian.
    old: Option<KeyMeta>,
    /// Signing keys of every party, by party index.
    keys: Vec<VerifyingKey>,
    identity: std::sync::Arc<NodeIdentity>,
    fault: Option<DealerFault>,
}

fn order_fail(e: proto::lifecycle::OrderError) -> SessionFailure {
    fail(e.code(), e.to_string())
}

impl ResharePlan {
    /// Checks the order and the session's layout against this node's own state.
    pub fn prepare(
        store: &Store,
        start: &SessionStart,
        (order, dealers): (&SignedMembershipOrder, &[String]),
        guard: &Guard,
        keys: Vec<VerifyingKey>,
        fault: Option<DealerFault>,
    ) -> Result<Self, SessionFailure> {
        let (officers, quorum) = guard.officers();
        order
            .check(&officers, quorum, guard.now())
            .map_err(order_fail)?;
        let o = &order.order;
        if o.key_id != start.key_id {
            return Err(fail("session.invalid", "the order names another key"));
        }
        let old = store
            .key_meta(&start.key_id)
            .map_err(|e| fail("store.error", e.to_string()))?;
        let me_id = guard.node_id();
        match &old {
            Some(meta) if meta.group.contains(&me_id.to_string()) && meta.complete => {
                order
                    .check_key(meta.epoch, &meta.group)
                    .map_err(order_fail)?;
                o.check_due(
                    guard.refresh_every(&start.key_id)?,
                    meta.since,
                    meta.threshold,
                    guard.now(),
                )
                .map_err(order_fail)?;
                if meta.threshold as usize != dealers.len() {
                    return Err(fail(
                        "reshare.dealers",
                        format!(
                            "the key needs {} dealers, not {}",
                            meta.threshold,
                            dealers.len()
                        ),
                    ));
                }
            }
            Some(meta) if meta.epoch > o.epoch => {
                return Err(order_fail(proto::lifecycle::OrderError::Epoch {
                    order: o.epoch,
                    key: meta.epoch,
                }))
            }
            _ if o.scheduled => {
                return Err(order_fail(proto::lifecycle::OrderError::NotScheduled(
                    "this node holds no signing share of the key to refresh".into(),
                )))
            }
            _ if !o.new_set.iter().any(|g| g == me_id) => {
                return Err(fail(
                    "key.not_found",
                    "this node holds no share of this key",
                ));
            }
            _ => {}
        }
        if start.epoch != o.epoch {
            return Err(fail(
                "session.epoch",
                format!(
                    "the session runs in epoch {} but the order starts from {}",
                    start.epoch, o.epoch
                ),
            ));
        }
        let mut distinct = dealers.to_vec();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != dealers.len() || dealers.iter().any(|d| !o.old_set.contains(d)) {
            return Err(fail(
                "reshare.dealers",
                "dealers must be distinct old guardians",
            ));
        }
        if start.parties != session_parties(dealers, &o.new_set) {
            return Err(fail(
                "session.invalid",
                "the session's parties are not the dealers followed by the new guardians",
            ));
        }
        let index = |name: &String| {
            start
                .parties
                .iter()
                .position(|p| p == name)
                .map(|x| x as u16)
        };
        let mut dealer_points = Vec::new();
        for d in dealers {
            let point = o.old_set.iter().position(|g| g == d).map(|x| x as u16 + 1);
            match (index(d), point) {
                (Some(i), Some(p)) => dealer_points.push((i, p)),
                _ => return Err(fail("session.invalid", "a dealer is not a party")),
            }
        }
        let mut receivers = Vec::new();
        for (k, g) in o.new_set.iter().enumerate() {
            let i =
                index(g).ok_or_else(|| fail("session.invalid", "a new guardian is not a party"))?;
            receivers.push((i, k as u16 + 1));
        }
        let me = index(&me_id.to_string())
            .ok_or_else(|| fail("session.invalid", "this node is not a party"))?;
        if keys.len() != start.parties.len() {
            return Err(fail("session.internal", "party keys missing"));
        }
        Ok(Self {
            key_id: start.key_id.clone(),
            order_digest: o.digest(),
            order: order.clone(),
            parties: start.parties.clone(),
            dealers: dealer_points,
            receivers,
            me,
            old: old.filter(|m| m.group.contains(&me_id.to_string()) && m.complete),
            keys,
            identity: guard.identity(),
            fault,
        })
    }

    /// What every party must agree on before the protocol starts.
    pub fn context(&self, h: &mut Sha256) {
        h.update(b"reshare\0");
        h.update(self.order_digest);
        for (i, p) in &self.dealers {
            h.update(i.to_be_bytes());
            h.update(p.to_be_bytes());
        }
    }

    fn t_new(&self) -> u16 {
        self.order.order.new_threshold
    }

    fn new_points(&self) -> Vec<u16> {
        self.receivers.iter().map(|(_, p)| *p).collect()
    }

    fn dealer_points(&self) -> Vec<u16> {
        self.dealers.iter().map(|(_, p)| *p).collect()
    }

    fn my_point(&self) -> Option<u16> {
        self.receivers
            .iter()
            .find(|(i, _)| *i == self.me)
            .map(|(_, p)| *p)
    }

    /// Runs the ceremony. Blocking: call on a blocking thread.
    pub fn execute(
        self,
        store: &Store,
        early: Vec<crate::mpc::RawIncoming>,
        rx: tokio::sync::mpsc::Receiver<crate::mpc::RawIncoming>,
        out: OutSinkFactory,
        guard: &Guard,
    ) -> Result<SessionOutput, SessionFailure> {
        let sid = out.session_id();
        let watch = out.watch();
        let ch = out.channels::<Msg>(early, rx);
        let key_id = self.key_id.clone();
        let result = futures::executor::block_on(self.run(store, sid, ch));
        let result = result.map_err(|f| watch.deadline_failure().unwrap_or(f));
        let _ = guard.audit(
            match &result {
                Ok(_) => "reshare.pending",
                Err(_) => "reshare.failed",
            },
            serde_json::json!({"key_id": key_id, "session": hex::encode(sid),
                "code": result.as_ref().err().map(|f| f.code.clone()),
                "blame": result.as_ref().err().map(|f| f.blame.clone())}),
        );
        result
    }

    async fn run(
        self,
        store: &Store,
        sid: SessionId,
        ch: crate::mpc::Channels<Msg>,
    ) -> Result<SessionOutput, SessionFailure> {
        let crate::mpc::Channels {
            mut incoming,
            mut outgoing,
        } = ch;
        let send = |to: Option<u16>, msg: Msg| Outgoing {
            recipient: match to {
                Some(j) => MessageDestination::OneParty(j),
                None => MessageDestination::AllParties,
            },
            msg,
        };
        let lost = |_| fail("session.disconnected", "coordinator link closed");
        // 1. Deal.
        let mut deals: BTreeMap<u16, Deal> = BTreeMap::new();
        if let Some(mine) = self.deal(store, &sid)? {
            for (to, deal) in mine {
                if to == self.me {
                    deals.insert(self.me, deal);
                } else {
                    outgoing
                        .send(send(Some(to), Msg::Deal(Box::new(deal))))
                        .await
                        .map_err(lost)?;
                }
            }
        }
        // 2. Receive every dealer's deal; echoes that come early are kept.
        let mut echoes: BTreeMap<u16, Echo> = BTreeMap::new();
        let is_dealer = |j: u16| self.dealers.iter().any(|(i, _)| *i == j);
        while deals.len() < self.dealers.len() {
            match next(&mut incoming).await? {
                (from, false, Msg::Deal(d)) if is_dealer(from) => {
                    deals.entry(from).or_insert(*d);
                }
                (from, true, Msg::Echo(e)) => {
                    echoes.entry(from).or_insert(e);
                }
                (from, _, _) => return Err(self.malformed(from)),
            }
        }
        // 3. Echo what each dealer showed, with complaints about sub-shares.
        let echo = self.echo(&deals)?;
        outgoing
            .send(send(None, Msg::Echo(echo.clone())))
            .await
            .map_err(lost)?;
        echoes.insert(self.me, echo);
        while echoes.len() < self.parties.len() {
            match next(&mut incoming).await? {
                (from, true, Msg::Echo(e)) => {
                    echoes.entry(from).or_insert(e);
                }
                (from, _, _) => return Err(self.malformed(from)),
            }
        }
        // 4. Agreement, constant terms, complaints: the same data gives every party the same
        //    verdict.
        self.agree(&sid, &echoes)?;
        let reference = self.own_key(store)?;
        let (key, commitments) = self.check_deals(&deals, reference.as_ref())?;
        self.judge_complaints(&sid, &echoes, &commitments)?;
        let view = views_hash(&echoes[&self.me]);
        // 5. New guardians build, validate and store their pending share.
        let confirmation = match self.my_point() {
            Some(point) => {
                Some(self.store_pending(store, &key, &commitments, &deals, point, &view)?)
            }
            None => None,
        };
        Ok(SessionOutput::Reshared {
            epoch: self.order.order.epoch + 1,
            commitments: view.to_vec(),
            confirmation,
        })
    }

    fn malformed(&self, from: u16) -> SessionFailure {
        let who = self.name(from);
        let mut f = fail(
            "reshare.malformed",
            format!("`{who}` sent a message out of turn or of the wrong kind"),
        );
        f.blame = vec![who];
        f
    }

    fn name(&self, i: u16) -> String {
        self.parties
            .get(usize::from(i))
            .cloned()
            .unwrap_or_else(|| "?".into())
    }

    fn blame(&self, code: &str, who: &[u16], what: String) -> SessionFailure {
        let mut f = fail(code, what);
        f.blame = who.iter().map(|i| self.name(*i)).collect();
        f.blame.sort();
        f.blame.dedup();
        f
    }

    /// As a dealer: one [`Deal`] per party (this node's own included).
    fn deal(
        &self,
        store: &Store,
        sid: &SessionId,
    ) -> Result<Option<Vec<(u16, Deal)>>, SessionFailure> {
        let Some(my_old) = self
            .dealers
            .iter()
            .find(|(i, _)| *i == self.me)
            .map(|(_, p)| *p)
        else {
            return Ok(None);
        };
        let meta = self
            .old
            .as_ref()
            .ok_or_else(|| fail("key.not_found", "no share to deal"))?;
        let share: KeyShare = load_json(store, &share_record(&meta.key_id, meta.epoch))?
            .ok_or_else(|| fail("key.not_found", "key share missing"))?;
        check_points(&share)?;
        let mut key = key_info(&share);
        let vfail = |e: vss::VssError| fail("reshare.internal", e.to_string());
        let mut dealing = vss::deal::<E>(
            &mut crate::mpc::rng(),
            &self.dealer_points(),
            my_old,
            &share.core.x,
            self.t_new(),
            &self.new_points(),
        )
        .map_err(vfail)?;
        drop(share);
        if self.fault == Some(DealerFault::WrongPublicShare) {
            let lambda = vss::lagrange::<E>(&self.dealer_points(), my_old).map_err(vfail)?;
            let own = key
                .public_shares
                .get_mut(usize::from(my_old) - 1)
                .and_then(|b| Some((Point::<E>::from_bytes(&*b).ok()?, b)));
            if let (Some((x, b)), Some(c)) = (own, dealing.commitments.first_mut()) {
                let lied = x + Point::generator();
                *b = point_bytes(&lied);
                *c = lied * lambda;
            }
        }
        if self.fault == Some(DealerFault::WrongConstant) {
            if let Some(c) = dealing.commitments.first_mut() {
                *c += Point::generator().to_point();
            }
        }
        let commitments: Vec<Vec<u8>> = dealing.commitments.iter().map(point_bytes).collect();
        let mut out = Vec::new();
        for j in 0..self.parties.len() as u16 {
            let mut commitments = commitments.clone();
            if self.fault == Some(DealerFault::Equivocate) && j % 2 == 1 {
                let mut c = dealing.commitments.clone();
                if let Some(last) = c.last_mut() {
                    *last += Point::generator().to_point();
                }
                commitments = c.iter().map(point_bytes).collect();
            }
            let mut deal = Deal {
                key: key.clone(),
                commitments,
                commit_sig: vec![],
                sub: None,
            };
            deal.commit_sig = self
                .identity
                .sign(&commit_digest(sid, self.me, &deal.view()))
                .to_vec();
            if let Some(k) = self.receivers.iter().position(|(i, _)| *i == j) {
                let mut value: Scalar<E> = *dealing.sub_shares[k].as_ref();
                if self.fault == Some(DealerFault::WrongSubShare) && k + 1 == self.receivers.len() {
                    value += Scalar::<E>::one();
                }
                let bytes = value.to_be_bytes().as_bytes().to_vec();
                zeroize::Zeroize::zeroize(&mut value);
                let sig = self
                    .identity
                    .sign(&sub_digest(sid, self.me, j, &bytes))
                    .to_vec();
                deal.sub = Some(SubShare { value: bytes, sig });
            }
            out.push((j, deal));
        }
        for s in dealing.sub_shares.iter_mut() {
            *s = SecretScalar::new(&mut Scalar::zero());
        }
        Ok(Some(out))
    }

    fn echo(&self, deals: &BTreeMap<u16, Deal>) -> Result<Echo, SessionFailure> {
        let mut views = Vec::new();
        let mut complaints = Vec::new();
        for (d, _) in &self.dealers {
            let deal = deals
                .get(d)
                .ok_or_else(|| fail("session.internal", "a deal is missing"))?;
            views.push((deal.view().to_vec(), deal.commit_sig.clone()));
            if let Some(point) = self.my_point() {
                let ok = match (&deal.sub, parse_points(&deal.commitments)) {
                    (Some(sub), Some(c)) => parse_scalar(&sub.value)
                        .map(|s| vss::check_sub_share::<E>(0, point, &c, &s).is_ok())
                        .unwrap_or(false),
                    _ => false,
                };
                if !ok {
                    let sub = deal.sub.clone().unwrap_or(SubShare {
                        value: vec![],
                        sig: vec![],
                    });
                    complaints.push(Complaint { dealer: *d, sub });
                }
            }
        }
        Ok(Echo { views, complaints })
    }

    /// Every party was shown the same thing by each dealer, or the dealer equivocated (two
    /// views it signed) or an echoing party lied (a view its dealer did not sign).
    fn agree(&self, sid: &SessionId, echoes: &BTreeMap<u16, Echo>) -> Result<(), SessionFailure> {
        for (k, (d, _)) in self.dealers.iter().enumerate() {
            let key = &self.keys[usize::from(*d)];
            let mut seen: Vec<Vec<u8>> = Vec::new();
            for (from, echo) in echoes {
                let Some((view, sig)) = echo.views.get(k) else {
                    return Err(self.blame(
                        "reshare.malformed",
                        &[*from],
                        format!("`{}` echoed too few views", self.name(*from)),
                    ));
                };
                if !signed_by(key, &commit_digest(sid, *d, view), sig) {
                    return Err(self.blame(
                        "reshare.false_echo",
                        &[*from],
                        format!(
                            "`{}` echoed a view that dealer `{}` did not sign",
                            self.name(*from),
                            self.name(*d)
                        ),
                    ));
                }
                if !seen.contains(view) {
                    seen.push(view.clone());
                }
            }
            if seen.len() > 1 {
                return Err(self.blame(
                    "reshare.dealer_equivocation",
                    &[*d],
                    format!(
                        "dealer `{}` signed {} different sets of commitments",
                        self.name(*d),
                        seen.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An old guardian's own record of the key: public key, chain code and every public
    /// share, read from its share of the epoch (public data; the share is dropped at once).
    fn own_key(&self, store: &Store) -> Result<Option<KeyInfoWire>, SessionFailure> {
        let Some(meta) = &self.old else {
            return Ok(None);
        };
        let share: KeyShare = load_json(store, &share_record(&meta.key_id, meta.epoch))?
            .ok_or_else(|| fail("key.not_found", "key share missing"))?;
        Ok(Some(key_info(&share)))
    }

    /// Whether a reported key's public shares lie on one polynomial of the old degree through
    /// its public key ([`vss::check_public_shares`]).
    fn consistent(&self, key: &KeyInfoWire) -> bool {
        let y = Point::<E>::from_bytes(&key.public_key).ok();
        let publics: Option<Vec<Point<E>>> = key
            .public_shares
            .iter()
            .map(|b| Point::<E>::from_bytes(b).ok())
            .collect();
        match (y, publics) {
            (Some(y), Some(p)) => {
                vss::check_public_shares::<E>(&y, &p, self.dealers.len() as u16).is_ok()
            }
            _ => false,
        }
    }

    /// Checks each dealer's (agreed) deal: the old key it reports (public key, chain code and
    /// public shares) is the one this node holds (old guardians), or fits together and is the
    /// one every dealer reports (new guardians); `t'` commitments; and a constant term equal to
    /// the dealer's weighted public share. A dealer that lies about its own public share, to
    /// commit to a constant term that would change the key, is named by every old guardian, and
    /// by the new ones too when the old group has more guardians than its threshold.
    fn check_deals(
        &self,
        deals: &BTreeMap<u16, Deal>,
        reference: Option<&KeyInfoWire>,
    ) -> Result<(KeyInfoWire, Commitments), SessionFailure> {
        for (d, _) in &self.dealers {
            let deal = deals
                .get(d)
                .ok_or_else(|| fail("session.internal", "a deal is missing"))?;
            let lie = match reference {
                Some(own) => (deal.key != *own).then_some("reports another key than this node holds (public key, chain code or public shares)"),
                None => (!self.consistent(&deal.key)).then_some("reports public shares that do not fit its public key"),
            };
            if let Some(what) = lie {
                return Err(self.blame(
                    "reshare.dealer_key",
                    &[*d],
                    format!("dealer `{}` {what}", self.name(*d)),
                ));
            }
        }
        let mut key: Option<KeyInfoWire> = None;
        let mut all = Vec::new();
        for (d, point) in &self.dealers {
            let deal = deals
                .get(d)
                .ok_or_else(|| fail("session.internal", "a deal is missing"))?;
            if key.as_ref().is_some_and(|k| *k != deal.key) {
                // Each report fits together but they differ: a new guardian cannot tell which
                // is the key (the old guardians, who hold it, name the dealer).
                return Err(fail(
                    "reshare.dealer_key",
                    "the dealers report different keys, each consistent; the old guardians name the one that lies",
                ));
            }
            key.get_or_insert_with(|| deal.key.clone());
            let bad = |code: &str, what: &str| {
                self.blame(code, &[*d], format!("dealer `{}`: {what}", self.name(*d)))
            };
            let commitments = parse_points(&deal.commitments)
                .ok_or_else(|| bad("reshare.malformed", "commitments are not curve points"))?;
            let public = deal
                .key
                .public_shares
                .get(usize::from(*point) - 1)
                .and_then(|b| Point::<E>::from_bytes(b).ok())
                .ok_or_else(|| bad("reshare.dealer_key", "its public share is missing"))?;
            match vss::check_commitments::<E>(&self.dealer_points(), *point, &public, &commitments, self.t_new()) {
                Ok(()) => {}
                Err(vss::VssError::Constant { .. }) => {
                    return Err(bad("reshare.dealer_constant", "its constant term is not its weighted public share: it tried to change the key"))
                }
                Err(e) => return Err(bad("reshare.malformed", &e.to_string())),
            }
            all.push(commitments);
        }
        let key = key.ok_or_else(|| fail("session.internal", "no dealer"))?;
        Ok((key, all))
    }

    /// A complaint with a valid dealer signature over a sub-share that fails its check names
    /// the dealer; any other complaint names the complainer.
    fn judge_complaints(
        &self,
        sid: &SessionId,
        echoes: &BTreeMap<u16, Echo>,
        commitments: &[Vec<Point<E>>],
    ) -> Result<(), SessionFailure> {
        for (from, echo) in echoes {
            // The first complaint decides: it names its dealer or its complainer.
            if let Some(c) = echo.complaints.first() {
                let Some(k) = self.dealers.iter().position(|(i, _)| *i == c.dealer) else {
                    return Err(self.blame(
                        "reshare.false_complaint",
                        &[*from],
                        "a complaint about a non-dealer".into(),
                    ));
                };
                let point = self
                    .receivers
                    .iter()
                    .find(|(i, _)| i == from)
                    .map(|(_, p)| *p);
                let signed = signed_by(
                    &self.keys[usize::from(c.dealer)],
                    &sub_digest(sid, c.dealer, *from, &c.sub.value),
                    &c.sub.sig,
                );
                let valid = match (point, parse_scalar(&c.sub.value)) {
                    (Some(p), Some(s)) => {
                        vss::check_sub_share::<E>(0, p, &commitments[k], &s).is_ok()
                    }
                    _ => false,
                };
                if signed && !valid {
                    return Err(self.blame(
                        "reshare.dealer_share",
                        &[c.dealer],
                        format!(
                            "dealer `{}` sent `{}` a sub-share that does not match its commitments",
                            self.name(c.dealer),
                            self.name(*from)
                        ),
                    ));
                }
                return Err(self.blame(
                    "reshare.false_complaint",
                    &[*from],
                    format!(
                        "`{}` complained about a valid or unsigned sub-share from `{}`",
                        self.name(*from),
                        self.name(c.dealer)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn store_pending(
        &self,
        store: &Store,
        key: &KeyInfoWire,
        commitments: &[Vec<Point<E>>],
        deals: &BTreeMap<u16, Deal>,
        point: u16,
        view: &[u8; 32],
    ) -> Result<Vec<u8>, SessionFailure> {
        let vfail = |e: vss::VssError| fail("reshare.internal", e.to_string());
        let new_points = self.new_points();
        let y = Point::<E>::from_bytes(&key.public_key)
            .ok()
            .and_then(NonZero::from_point)
            .ok_or_else(|| fail("reshare.dealer_key", "the key's public key does not parse"))?;
        let publics = vss::new_public_shares::<E>(commitments, &y, &new_points).map_err(vfail)?;
        let mut subs = Vec::new();
        for (d, _) in &self.dealers {
            let s = deals
                .get(d)
                .and_then(|deal| deal.sub.as_ref())
                .and_then(|s| parse_scalar(&s.value))
                .ok_or_else(|| fail("session.internal", "a sub-share is missing"))?;
            subs.push(s);
        }
        let x = vss::new_share::<E>(&subs).map_err(vfail)?;
        drop(subs);
        let chain_code: Option<[u8; 32]> = key.chain_code.clone().try_into().ok();
        let old_info = cggmp24::key_share::DirtyKeyInfo::<E> {
            curve: Default::default(),
            shared_public_key: y,
            public_shares: vec![],
            vss_setup: None,
            chain_code,
        };
        let core =
            vss::build_core_share::<E>(&old_info, self.t_new(), &new_points, point, publics, x)
                .map_err(vfail)?;
        let o = &self.order.order;
        let aux = self.aux(store)?;
        let full = KeyShare::from_parts((core, aux)).map_err(|_| {
            fail(
                "reshare.internal",
                "the new share and the group's aux info do not fit",
            )
        })?;
        let epoch = o.epoch + 1;
        let mut meta = self.old.clone().unwrap_or_else(|| KeyMeta {
            key_id: self.key_id.clone(),
            group: o.old_set.clone(),
            threshold: 0,
            public_key: key.public_key.clone(),
            complete: false,
            chain_code: key.chain_code.clone(),
            epoch: o.epoch,
            pending: None,
            since: 0,
        });
        meta.pending = Some(PendingEpoch {
            epoch,
            group: o.new_set.clone(),
            threshold: o.new_threshold,
            commitments: hex::encode(view),
            order: hex::encode(self.order_digest),
        });
        let bytes = crate::secret::to_secret_json(&full)
            .map_err(|_| fail("session.internal", "serialising a secret failed"))?;
        drop(full);
        store
            .commit_key(
                &meta,
                (&share_record(&self.key_id, epoch), bytes.expose_secret()),
                &[],
            )
            .map_err(|e| fail("store.error", e.to_string()))?;
        let digest = stored_digest(&self.order_digest, epoch, view, &self.name(self.me));
        Ok(self.identity.sign(&digest).to_vec())
    }

    /// The new group's aux info: the old share's when the group is unchanged, else the aux
    /// info this node holds for the new group.
    fn aux(&self, store: &Store) -> Result<AuxInfo, SessionFailure> {
        let o = &self.order.order;
        if o.new_set == o.old_set {
            if let Some(meta) = &self.old {
                let share: KeyShare = load_json(store, &share_record(&meta.key_id, meta.epoch))?
                    .ok_or_else(|| fail("key.not_found", "key share missing"))?;
                return cggmp24::key_share::Valid::validate(share.aux.clone())
                    .map_err(|_| fail("reshare.internal", "stored aux info is invalid"));
            }
        }
        load_json(store, &aux_record(&o.new_set))?.ok_or_else(|| {
            fail("reshare.aux_missing", "this node holds no aux info for the new guardian set; run its aux-info ceremony first")
        })
    }
}

async fn next(
    incoming: &mut (impl futures::Stream<Item = Result<round_based::Incoming<Msg>, crate::mpc::DeliveryError>>
              + Unpin),
) -> Result<(u16, bool, Msg), SessionFailure> {
    match incoming.next().await {
        Some(Ok(m)) => Ok((
            m.sender,
            m.msg_type == round_based::MessageType::Broadcast,
            m.msg,
        )),
        Some(Err(crate::mpc::DeliveryError::Decode(from))) => Err(SessionFailure {
            code: "reshare.malformed".into(),
            message: format!("party {from} sent a message that does not decode"),
            blame: vec![],
        }),
        Some(Err(e)) => Err(fail("session.timeout", e.to_string())),
        None => Err(fail("session.aborted", "session aborted")),
    }
}

fn views_hash(echo: &Echo) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"custody/reshare/agreed/v1\0");
    for (v, _) in &echo.views {
        h.update(v);
    }
    h.finalize().into()
}
