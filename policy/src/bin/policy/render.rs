//! Human-readable and JSON renderings.

use std::fmt::Write as _;

use policy::{Decision, Outcome, Policy, PolicyError};
use serde_json::{json, Value};

pub fn describe(policy: &Policy) -> String {
    match policy.name() {
        Some(name) => format!("`{name}` version {}", policy.version()),
        None => format!("version {}", policy.version()),
    }
}

pub fn diagnostics(file: &str, source: &str, errors: &[PolicyError]) -> String {
    let mut out = String::new();
    for e in errors {
        out.push_str(&e.render(source));
        out.push('\n');
    }
    let n = errors.len();
    let plural = if n == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "error: `{file}` is not a valid policy: {n} error{plural}"
    );
    out
}

pub fn check_json(file: &str, policy: Option<&Policy>, errors: &[PolicyError]) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| json!({ "line": e.line, "column": e.column, "message": e.message }))
        .collect();
    json!({
        "file": file,
        "valid": policy.is_some(),
        "version": policy.map(Policy::version),
        "hash": policy.map(|p| p.hash().to_string()),
        "warnings": policy.map(Policy::warnings).unwrap_or_default(),
        "errors": errors,
    })
}

pub fn decision_table(policy: &Policy, d: &Decision) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy   {}  hash {}", describe(policy), d.policy_hash);
    let _ = writeln!(
        out,
        "request  `{}` evaluated at {}",
        d.request_id, d.evaluated_at
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<20} {:<15} REASON", "RULE", "VERDICT");
    for r in &d.rules {
        let _ = writeln!(out, "{:<20} {:<15} {}", r.tag, r.verdict.as_str(), r.reason);
    }
    let _ = writeln!(out);
    match &d.outcome {
        Outcome::Allow => out.push_str("outcome: ALLOW\n"),
        Outcome::Deny { rules } => {
            let _ = writeln!(
                out,
                "outcome: DENY ({}); final, a new request is needed",
                rules.join(", ")
            );
        }
        Outcome::Defer {
            not_before,
            missing_approvals,
        } => {
            let mut parts = Vec::new();
            if let Some(t) = not_before {
                parts.push(format!("not before {t}"));
            }
            for (group, n) in missing_approvals {
                parts.push(format!("{n} more approval(s) from `{group}`"));
            }
            let _ = writeln!(out, "outcome: DEFER ({}); retry later", parts.join(", "));
        }
    }
    out
}
