//! The signed policy this node runs: verified against the officer keys pinned in its own
//! configuration, never downgraded, optionally activated after a delay, and stored durably.
//!
//! A refused bundle leaves the running policy untouched; the reason is kept for the status
//! report and logged. A node with no valid policy signs nothing.

use policy::{Bundle, Policy};
use proto::authz::PolicyInfo;
use serde::{Deserialize, Serialize};

use crate::store::{json_bytes, Store, StoreError};

const ACTIVE: &str = "policy/active";
const PENDING: &str = "policy/pending";

/// Officer keys and rules for accepting bundles.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// Officers' Ed25519 keys.
    pub officers: Vec<[u8; 32]>,
    /// Signatures a bundle needs.
    pub threshold: usize,
    /// Seconds before a new version becomes active.
    pub activation_delay: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Installed {
    bundle_json: String,
    version: u64,
    hash: String,
    active_from: u64,
}

struct Loaded {
    rec: Installed,
    policy: Policy,
}

impl Loaded {
    fn info(&self) -> PolicyInfo {
        PolicyInfo {
            version: self.rec.version,
            hash: self.rec.hash.clone(),
            active_from: self.rec.active_from,
        }
    }
}

/// What an offered bundle did.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Same policy as the active or pending one.
    Unchanged,
    /// Installed and active now.
    Activated(PolicyInfo),
    /// Installed; becomes active at `active_from`.
    Pending(PolicyInfo),
}

/// Active and pending policy.
pub struct PolicyBook {
    pinned: Pinned,
    active: Option<Loaded>,
    pending: Option<Loaded>,
    /// Why the last offered bundle was refused.
    pub last_error: Option<String>,
}

impl PolicyBook {
    /// Loads the stored policies, re-verifying them against the pinned officers (which may have
    /// changed in the configuration since they were installed).
    pub fn load(store: &Store, pinned: Pinned) -> Result<Self, StoreError> {
        let mut book = Self {
            pinned,
            active: None,
            pending: None,
            last_error: None,
        };
        for (name, slot) in [(ACTIVE, true), (PENDING, false)] {
            let Some(rec) = store.state_get::<Installed>(name)? else {
                continue;
            };
            match book.verify(&rec.bundle_json) {
                Ok(policy) => {
                    let loaded = Some(Loaded { rec, policy });
                    match slot {
                        true => book.active = loaded,
                        false => book.pending = loaded,
                    }
                }
                Err(e) => {
                    book.last_error = Some(format!("stored policy no longer verifies: {e}"));
                }
            }
        }
        Ok(book)
    }

    fn verify(&self, json: &str) -> Result<Policy, String> {
        let bundle = Bundle::from_json(json).map_err(|e| e.to_string())?;
        bundle
            .verify(&self.pinned.officers, self.pinned.threshold)
            .map_err(|e| e.to_string())
    }

    /// Verifies and installs a bundle. A refusal keeps the running policy.
    pub fn offer(&mut self, store: &Store, json: &str, now: u64) -> Result<Offer, String> {
        let result = self.try_offer(store, json, now);
        match &result {
            Err(e) => self.last_error = Some(e.clone()),
            Ok(Offer::Unchanged) => {}
            Ok(_) => self.last_error = None,
        }
        result
    }

    fn try_offer(&mut self, store: &Store, json: &str, now: u64) -> Result<Offer, String> {
        let policy = self.verify(json)?;
        let hash = policy.hash().to_string();
        let held: Vec<&Loaded> = self.active.iter().chain(self.pending.iter()).collect();
        if held.iter().any(|l| l.rec.hash == hash) {
            return Ok(Offer::Unchanged);
        }
        if let Some(top) = held.iter().map(|l| l.rec.version).max() {
            if policy.version() <= top {
                return Err(format!(
                    "policy version {} does not increase the installed version {top}; rollback refused",
                    policy.version()
                ));
            }
        }
        let immediate = self.active.is_none() || self.pinned.activation_delay == 0;
        let rec = Installed {
            bundle_json: json.to_string(),
            version: policy.version(),
            hash,
            active_from: if immediate {
                now
            } else {
                now.saturating_add(self.pinned.activation_delay)
            },
        };
        let bytes = json_bytes(&rec).map_err(|e| e.to_string())?;
        let loaded = Loaded { rec, policy };
        let info = loaded.info();
        if immediate {
            store
                .state_write(&[(ACTIVE.into(), Some(bytes)), (PENDING.into(), None)])
                .map_err(|e| e.to_string())?;
            self.active = Some(loaded);
            self.pending = None;
            Ok(Offer::Activated(info))
        } else {
            store
                .state_write(&[(PENDING.into(), Some(bytes))])
                .map_err(|e| e.to_string())?;
            self.pending = Some(loaded);
            Ok(Offer::Pending(info))
        }
    }

    /// The policy in force at `now`, promoting a pending one whose delay has passed.
    pub fn current(&mut self, store: &Store, now: u64) -> Result<Option<&Policy>, StoreError> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.rec.active_from <= now)
        {
            if let Some(p) = self.pending.take() {
                store.state_write(&[
                    (ACTIVE.into(), Some(json_bytes(&p.rec)?)),
                    (PENDING.into(), None),
                ])?;
                tracing::info!(version = p.rec.version, hash = %p.rec.hash, "pending policy is now active");
                self.active = Some(p);
            }
        }
        Ok(self.active.as_ref().map(|l| &l.policy))
    }

    /// Active policy info.
    pub fn active_info(&self) -> Option<PolicyInfo> {
        self.active.as_ref().map(Loaded::info)
    }

    /// Pending policy info.
    pub fn pending_info(&self) -> Option<PolicyInfo> {
        self.pending.as_ref().map(Loaded::info)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use ed25519_dalek::SigningKey;

    const POLICY: &str = "version = VERSION\n[chains.eth]\nid = \"ethereum:1\"\nmax_fee = 1000\n[assets.eth]\nchain = \"eth\"\nasset = \"native\"\nper_tx = 10\n[keys.k]\nassets = [\"eth\"]\n[destinations]\nrequire_allowlist = false\n";

    fn bundle(version: u64, signers: &[&SigningKey]) -> String {
        let mut b = Bundle::new(POLICY.replace("VERSION", &version.to_string()));
        for k in signers {
            b.sign(k).unwrap();
        }
        b.to_json()
    }

    fn setup(delay: u64) -> (Store, PolicyBook, [SigningKey; 2], std::path::PathBuf) {
        let (store, dir) = crate::store::test_store(&format!("policy-book-{delay}"));
        let keys = [
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        ];
        let pinned = Pinned {
            officers: keys.iter().map(|k| k.verifying_key().to_bytes()).collect(),
            threshold: 2,
            activation_delay: delay,
        };
        let book = PolicyBook::load(&store, pinned).unwrap();
        (store, book, keys, dir)
    }

    #[test]
    fn tampered_undersigned_and_rollback_bundles_are_refused_and_the_old_policy_stays() {
        let (store, mut book, [a, b], dir) = setup(0);
        assert!(book.current(&store, 100).unwrap().is_none());
        assert!(matches!(
            book.offer(&store, &bundle(2, &[&a, &b]), 100),
            Ok(Offer::Activated(_))
        ));
        let v2 = book.active_info().unwrap();
        let tampered = bundle(3, &[&a, &b]).replace("per_tx = 10", "per_tx = 99");
        let err = book.offer(&store, &tampered, 101).unwrap_err();
        assert!(err.contains("pinned officers signed"), "{err}");
        let err = book.offer(&store, &bundle(3, &[&a]), 101).unwrap_err();
        assert!(err.contains("only 1 of the required 2"), "{err}");
        let err = book.offer(&store, &bundle(1, &[&a, &b]), 101).unwrap_err();
        assert!(err.contains("rollback refused"), "{err}");
        assert_eq!(book.active_info(), Some(v2.clone()));
        assert_eq!(
            book.offer(&store, &bundle(2, &[&b, &a]), 102),
            Ok(Offer::Unchanged)
        );
        // Durable: a restart loads the same active policy.
        let pinned = book.pinned.clone();
        let reloaded = PolicyBook::load(&store, pinned).unwrap();
        assert_eq!(reloaded.active_info(), Some(v2));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_new_version_waits_for_the_activation_delay() {
        let (store, mut book, [a, b], dir) = setup(3600);
        // The first policy is active at once.
        assert!(matches!(
            book.offer(&store, &bundle(1, &[&a, &b]), 1000),
            Ok(Offer::Activated(_))
        ));
        assert!(matches!(
            book.offer(&store, &bundle(2, &[&a, &b]), 1000),
            Ok(Offer::Pending(_))
        ));
        assert_eq!(book.current(&store, 4599).unwrap().unwrap().version(), 1);
        assert_eq!(book.current(&store, 4600).unwrap().unwrap().version(), 2);
        assert!(book.pending_info().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
