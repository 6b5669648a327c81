//! Guardian and officer orders: vetoes, freezes and unfreezes, verified against the pinned
//! [`Authorities`](super::Authorities) and applied under the decision lock.

use ed25519_dalek::{Signature, VerifyingKey};
use proto::{
    authz::{self, FreezeState, Order},
    wire::SessionFailure,
};
use serde_json::json;

use super::{lock, Guard};
use crate::{
    session::fail,
    store::{json_bytes, StoreError},
};

fn verify_ed25519(key: &[u8; 32], digest: &[u8; 32], sig: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(key)
        .is_ok_and(|k| k.verify_strict(digest, &Signature::from_bytes(sig)).is_ok())
}

impl Guard {
    pub(super) fn freeze_state(&self, key_id: &str) -> Result<FreezeState, StoreError> {
        Ok(self
            .store
            .state_get::<FreezeState>(&format!("freeze/{key_id}"))?
            .unwrap_or_default())
    }

    /// Verifies and applies a veto, freeze or unfreeze.
    pub fn apply_order(&self, order: &Order) -> Result<(), SessionFailure> {
        let se = |e: StoreError| fail("store.error", e.to_string());
        let result = match order {
            Order::Veto(v) => {
                if !self.auth.guardians.contains(&v.guardian)
                    || !verify_ed25519(
                        &v.guardian,
                        &authz::veto_digest(&v.request_id),
                        &v.signature,
                    )
                {
                    Err(fail(
                        "veto.invalid",
                        "the veto is not signed by a pinned guardian",
                    ))
                } else {
                    let key = format!("veto/{}", v.request_id);
                    let _serial = lock(&self.decide);
                    self.store
                        .state_write(&[(key, Some(json_bytes(v).map_err(se)?))])
                        .map_err(se)
                }
            }
            Order::Freeze(f) => self.apply_freeze(f),
            Order::Unfreeze(u) => self.apply_unfreeze(u),
        };
        let _ = self.audit(
            "order",
            json!({"order": order, "accepted": result.is_ok(),
                   "error": result.as_ref().err().map(|f| f.code.clone())}),
        );
        match &result {
            Ok(()) => tracing::info!(order = %order.id(), "order applied"),
            Err(f) => tracing::warn!(order = %order.id(), code = %f.code, "order refused"),
        }
        result
    }

    fn apply_freeze(&self, f: &authz::Freeze) -> Result<(), SessionFailure> {
        let se = |e: StoreError| fail("store.error", e.to_string());
        if !self.auth.guardians.contains(&f.guardian)
            || !verify_ed25519(
                &f.guardian,
                &authz::freeze_digest(&f.key_id, f.epoch),
                &f.signature,
            )
        {
            return Err(fail(
                "freeze.invalid",
                "the freeze is not signed by a pinned guardian",
            ));
        }
        let _serial = lock(&self.decide);
        let mut state = self.freeze_state(&f.key_id).map_err(se)?;
        if f.epoch != state.epoch {
            return Err(fail(
                "freeze.stale",
                format!(
                    "the freeze names epoch {} but the key is in epoch {}",
                    f.epoch, state.epoch
                ),
            ));
        }
        state.frozen = true;
        self.store
            .state_write(&[(
                format!("freeze/{}", f.key_id),
                Some(json_bytes(&state).map_err(se)?),
            )])
            .map_err(se)
    }

    fn apply_unfreeze(&self, u: &authz::Unfreeze) -> Result<(), SessionFailure> {
        let se = |e: StoreError| fail("store.error", e.to_string());
        let digest = authz::unfreeze_digest(&u.key_id, u.epoch);
        let mut valid: Vec<[u8; 32]> = u
            .signatures
            .iter()
            .filter(|s| self.auth.officers.contains(&s.officer))
            .filter(|s| verify_ed25519(&s.officer, &digest, &s.signature))
            .map(|s| s.officer)
            .collect();
        valid.sort();
        valid.dedup();
        if self.auth.threshold == 0 || valid.len() < self.auth.threshold {
            return Err(fail(
                "unfreeze.quorum",
                format!(
                    "{} valid officer signature(s); unfreezing needs {}",
                    valid.len(),
                    self.auth.threshold
                ),
            ));
        }
        let _serial = lock(&self.decide);
        let mut state = self.freeze_state(&u.key_id).map_err(se)?;
        if !state.frozen || u.epoch != state.epoch {
            return Err(fail(
                "unfreeze.stale",
                format!("the key is not frozen in epoch {}", u.epoch),
            ));
        }
        state = FreezeState {
            frozen: false,
            epoch: state.epoch + 1,
        };
        self.store
            .state_write(&[(
                format!("freeze/{}", u.key_id),
                Some(json_bytes(&state).map_err(se)?),
            )])
            .map_err(se)
    }
}
