//! Policy bundles: a policy file plus k-of-m security-officer signatures over its hash.
//!
//! The officers' public keys are pinned in each node's configuration, never in the policy, so
//! that a policy cannot vouch for itself.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::model::{Policy, PolicyHash};
pub use proto::authz::OfficerSignature;

/// Domain-separation prefix of the message an officer signs.
pub const OFFICER_DOMAIN: &[u8] = b"custody-policy/officer-signature/v1\0";

/// The bytes an officer signs: the domain prefix and the policy hash.
pub fn officer_message(hash: &PolicyHash) -> Vec<u8> {
    [OFFICER_DOMAIN, &hash.0].concat()
}

/// A policy file and its signatures (JSON on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// The policy file, verbatim (comments included; they do not affect the hash).
    pub policy_toml: String,
    /// Officer signatures, in signing order.
    pub signatures: Vec<OfficerSignature>,
}

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bundle is not valid JSON of the expected shape.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// The policy inside the bundle does not validate.
    #[error("invalid policy in bundle: {0}")]
    Policy(#[from] PolicyError),
    /// The threshold cannot be met by the pinned officers, or is 0.
    #[error("invalid threshold {threshold} for {officers} pinned officers")]
    InvalidThreshold {
        /// Requested threshold.
        threshold: usize,
        /// Distinct pinned officers.
        officers: usize,
    },
    /// Too few pinned officers signed.
    #[error("only {valid} of the required {threshold} pinned officers signed policy `{hash}`")]
    NotEnoughSignatures {
        /// Distinct pinned officers with a valid signature.
        valid: usize,
        /// Required.
        threshold: usize,
        /// The policy hash they should have signed.
        hash: PolicyHash,
    },
    /// The bundle's version is not above the installed one.
    #[error("policy version {proposed} does not increase the installed version {installed}")]
    VersionNotIncreasing {
        /// The running version.
        installed: u64,
        /// The bundle's version.
        proposed: u64,
    },
}

/// The outcome of checking signatures, for tooling that shows who signed.
#[derive(Debug, Clone)]
pub struct BundleReport {
    /// The validated policy.
    pub policy: Policy,
    /// Pinned officers with a valid signature, sorted.
    pub valid: Vec<[u8; 32]>,
    /// Signatures that are invalid, duplicate, or from officers who are not pinned.
    pub ignored: usize,
}

/// The name used for the policy file inside a bundle in error messages.
const BUNDLED_FILE: &str = "<bundle>/policy_toml";

impl Bundle {
    /// A bundle with no signatures yet.
    pub fn new(policy_toml: String) -> Bundle {
        Bundle {
            policy_toml,
            signatures: Vec::new(),
        }
    }

    /// Parses bundle JSON.
    pub fn from_json(text: &str) -> Result<Bundle, BundleError> {
        serde_json::from_str(text).map_err(|e| BundleError::Malformed(e.to_string()))
    }

    /// Pretty JSON, ending with a newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The validated policy, without checking signatures.
    pub fn policy(&self) -> Result<Policy, BundleError> {
        Ok(Policy::from_toml(&self.policy_toml, BUNDLED_FILE)?)
    }

    /// Adds (or replaces) `key`'s signature over the policy hash; returns the hash.
    pub fn sign(&mut self, key: &SigningKey) -> Result<PolicyHash, BundleError> {
        let hash = self.policy()?.hash();
        let officer = key.verifying_key().to_bytes();
        let signature = key.sign(&officer_message(&hash)).to_bytes();
        self.signatures.retain(|s| s.officer != officer);
        self.signatures
            .push(OfficerSignature { officer, signature });
        Ok(hash)
    }

    /// Checks the policy and counts valid signatures by distinct pinned officers.
    pub fn inspect(&self, officers: &[[u8; 32]]) -> Result<BundleReport, BundleError> {
        let policy = self.policy()?;
        let pinned: BTreeSet<[u8; 32]> = officers.iter().copied().collect();
        let message = officer_message(&policy.hash());
        let mut valid = BTreeSet::new();
        let mut ignored = 0;
        for s in &self.signatures {
            let ok = pinned.contains(&s.officer)
                && VerifyingKey::from_bytes(&s.officer).is_ok_and(|k| {
                    k.verify_strict(&message, &Signature::from_bytes(&s.signature))
                        .is_ok()
                });
            if !(ok && valid.insert(s.officer)) {
                ignored += 1;
            }
        }
        Ok(BundleReport {
            policy,
            valid: valid.into_iter().collect(),
            ignored,
        })
    }

    /// Verifies that at least `threshold` distinct pinned officers signed, and returns the policy.
    pub fn verify(&self, officers: &[[u8; 32]], threshold: usize) -> Result<Policy, BundleError> {
        let distinct = officers.iter().collect::<BTreeSet<_>>().len();
        if threshold == 0 || threshold > distinct {
            return Err(BundleError::InvalidThreshold {
                threshold,
                officers: distinct,
            });
        }
        let report = self.inspect(officers)?;
        if report.valid.len() < threshold {
            return Err(BundleError::NotEnoughSignatures {
                valid: report.valid.len(),
                threshold,
                hash: report.policy.hash(),
            });
        }
        Ok(report.policy)
    }

    /// [`Bundle::verify`], and the version must be above the installed one.
    pub fn verify_upgrade(
        &self,
        officers: &[[u8; 32]],
        threshold: usize,
        installed_version: Option<u64>,
    ) -> Result<Policy, BundleError> {
        let policy = self.verify(officers, threshold)?;
        match installed_version {
            Some(installed) if policy.version() <= installed => {
                Err(BundleError::VersionNotIncreasing {
                    installed,
                    proposed: policy.version(),
                })
            }
            _ => Ok(policy),
        }
    }
}
