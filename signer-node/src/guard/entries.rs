//! Ledger entries, as the guard handles them: this node's own (recorded as it signs) and its
//! peers' (received, and their claimed heads noted), with the gaps that defer velocity limits.

use std::collections::BTreeMap;

use proto::{authz::LedgerEntry, intent::WithdrawalIntent, wire::SessionFailure};
use serde_json::json;

use super::{lock, signed_key, Guard};
use crate::{
    ledger,
    store::{json_bytes, StoreError},
};

impl Guard {
    /// Gaps that still defer velocity-limited requests; each expired claim is reported once.
    pub(super) fn open_gaps(&self, now: u64) -> Result<Vec<String>, StoreError> {
        let gaps = ledger::gaps_at(&self.store, now, self.gap_timeout)?;
        for (origin, by, claim) in &gaps.expired {
            let key = format!("gap_reported/{origin}/{by}");
            if self.store.state_get::<u64>(&key)?.is_none() {
                self.store.state_write(&[(key, Some(json_bytes(&now)?))])?;
                self.report(
                    by,
                    "ledger.gap_expired",
                    &format!(
                        "claimed at {} that `{origin}` has {} ledger entries; they never arrived and velocity no longer waits for them",
                        claim.since, claim.seq
                    ),
                );
            }
        }
        Ok(gaps.open)
    }

    /// Records this node's ledger entry for a completed signature (once per request), and
    /// audits the signature. The entry is recorded whether or not the audit could be written;
    /// the second value is `Err(audit.unavailable)` if it could not, and the signature must not
    /// then leave this node.
    pub fn record_signed(
        &self,
        request_id: &str,
        part: u32,
        (intent, payload_hash): (&WithdrawalIntent, &[u8; 32]),
        signature: &proto::sig::VerifiedSignature,
    ) -> (Option<LedgerEntry>, Result<(), SessionFailure>) {
        let audited = self.audit(
            "signature",
            json!({"request_id": request_id, "key_id": intent.key_id, "part": part,
                   "r": hex::encode(signature.r), "s": hex::encode(signature.s),
                   "recovery_id": signature.recovery_id}),
        );
        let also = match json_bytes(signature) {
            Ok(b) => vec![(signed_key(request_id, part), Some(b))],
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the signature");
                vec![]
            }
        };
        let entry = self
            .record_spend(request_id, (intent, payload_hash), None, also, &[])
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, request = request_id, "cannot record the ledger entry");
                None
            });
        (entry, audited)
    }

    /// Appends this node's ledger entry in one durable transaction with `also`, consuming the
    /// sealed records `consume`: if one is gone already, nothing is written
    /// ([`StoreError::Missing`]). Once per request for an online signature; once per
    /// consumption for a presignature (`presig`: its id and the part it signs), which is
    /// refused ([`StoreError::Missing`]) if the ledger records it spent on another message.
    pub fn record_spend(
        &self,
        request_id: &str,
        (intent, payload_hash): (&WithdrawalIntent, &[u8; 32]),
        presig: Option<([u8; 32], u32)>,
        also: Vec<(String, Option<Vec<u8>>)>,
        consume: &[String],
    ) -> Result<Option<LedgerEntry>, StoreError> {
        // The moves this node reserved when it allowed the request: what its policy counted
        // (a contract call's decoded amount, an allowance), not the transaction's raw value.
        let reserved = self
            .store
            .state_get::<ledger::Reservation>(&format!("hist/{request_id}"))?
            .filter(|r| r.payload_hash.as_ref() == Some(payload_hash));
        let own = ledger::OwnEntry {
            request_id,
            key_id: &intent.key_id,
            moves: reserved.map_or_else(|| ledger::moves_of(intent), |r| r.moves),
            payload_hash: Some(*payload_hash),
            presig,
            audit: self.audit_head(),
        };
        let _serial = lock(&self.ledger_writes);
        ledger::record_own(&self.store, &self.identity, own, self.now(), also, consume)
    }

    /// Stores another node's ledger entry, or this node's own replayed to it (after a rollback).
    pub fn receive_ledger(&self, entry: &LedgerEntry) -> Result<ledger::Received, String> {
        let (received, findings) = {
            let _serial = lock(&self.ledger_writes);
            let me = self.identity.node_id.as_str();
            // A guardian that joined by a reshare is a peer too: its entries count.
            let peers = self.peers().map_err(|f| f.message)?;
            ledger::receive(&self.store, &peers, me, entry, self.now())?
        };
        for f in findings {
            let (node, code, message) = f.describe();
            self.report(node, code, &message);
        }
        Ok(received)
    }

    /// Notes the ledger heads a peer (`by`) claims in its join message; `Err` names the origins
    /// this node lacks. A claim beyond what could be true is ignored and `by` is reported.
    pub fn note_peer_heads(
        &self,
        by: &str,
        heads: &BTreeMap<String, u64>,
    ) -> Result<(), Vec<String>> {
        let mut behind = Vec::new();
        let now = self.now();
        let peers = self.peers().unwrap_or_else(|_| self.roster.clone());
        for (origin, seq) in heads {
            if peers.get(origin).is_none() {
                continue;
            }
            match ledger::note_seen(&self.store, origin, *seq, by, now) {
                Ok(ledger::Claim::Behind) => behind.push(origin.clone()),
                Ok(ledger::Claim::Known) => {}
                Ok(ledger::Claim::Impossible) => self.report(
                    by,
                    "ledger.impossible_head",
                    &format!("claimed that `{origin}` has {seq} ledger entries"),
                ),
                Err(e) => tracing::error!(error = %e, "cannot record a peer's ledger head"),
            }
        }
        // Gaps nobody filled within the timeout no longer hold the session up.
        if let Ok(open) = self.open_gaps(now) {
            behind.retain(|o| open.contains(o));
        }
        match behind.is_empty() {
            true => Ok(()),
            false => Err(behind),
        }
    }

    /// This node's ledger heads.
    pub fn ledger_heads(&self) -> BTreeMap<String, u64> {
        ledger::heads(&self.store).unwrap_or_default()
    }
}
