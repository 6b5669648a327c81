//! The engine's answer, with every rule's verdict, serialised identically for identical inputs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::PolicyHash;

/// A rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The rule is satisfied.
    Pass,
    /// The rule refuses the withdrawal; the decision is a final deny.
    Fail,
    /// The rule is not satisfied yet but may be later (time-lock, cool-down, approvals).
    Defer,
    /// The rule does not apply to this intent.
    NotApplicable,
}

impl Verdict {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Defer => "defer",
            Verdict::NotApplicable => "not_applicable",
        }
    }
}

/// One checked rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleResult {
    /// Stable tag from [`crate::tags`].
    pub tag: String,
    /// What the rule decided.
    pub verdict: Verdict,
    /// Why, in lowercase prose with values quoted in backticks.
    pub reason: String,
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Every rule passed or did not apply: the node may sign.
    Allow,
    /// Nothing failed, but something must wait; retry later with the same request id.
    Defer {
        /// The earliest time at which the time conditions are met, if any rule is waiting on time.
        not_before: Option<u64>,
        /// Approver group → approvals still missing.
        missing_approvals: BTreeMap<String, u32>,
    },
    /// At least one rule failed. Final: a new request is needed.
    Deny {
        /// Failing tags, in rule order.
        rules: Vec<String>,
    },
}

/// The decision that goes into the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allow, defer or deny.
    pub outcome: Outcome,
    /// Version of the policy that decided.
    pub policy_version: u64,
    /// Hash of the policy that decided.
    pub policy_hash: PolicyHash,
    /// The request evaluated.
    pub request_id: String,
    /// `now` of the evaluation.
    pub evaluated_at: u64,
    /// Every rule, in the order of [`crate::tags::ALL`].
    pub rules: Vec<RuleResult>,
    /// A contract call as this node decoded it with the policy's ABI (what people approve).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<proto::call::CallView>,
}

impl Decision {
    /// True when the node may sign.
    pub fn is_allow(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// Deterministic JSON bytes for the audit log.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Strings, integers and ordered maps always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The result for one tag.
    pub fn rule(&self, tag: &str) -> Option<&RuleResult> {
        self.rules.iter().find(|r| r.tag == tag)
    }
}
