//! Human-readable and JSON renderings.

use std::fmt::Write as _;

use policy::{Decision, Outcome, Policy, PolicyError, PolicyWarning};
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

/// Every warning as a lint with its place, then a count; empty when there is none.
pub fn warnings(file: &str, source: &str, warnings: &[PolicyWarning]) -> String {
    let mut out = String::new();
    for w in warnings {
        out.push_str(&w.render(source));
        out.push('\n');
    }
    let n = warnings.len();
    if n > 0 {
        let plural = if n == 1 { "" } else { "s" };
        let _ = writeln!(
            out,
            "warning: `{file}` is valid, with {n} warning{plural}; docs/policy.md explains each tag"
        );
    }
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
        "warnings": policy.map_or_else(Vec::new, |p| p.warnings().iter().map(warning_json).collect()),
        "errors": errors,
    })
}

fn warning_json(w: &PolicyWarning) -> Value {
    json!({ "tag": w.tag, "line": w.line, "column": w.column, "message": w.message })
}

pub fn decision_table(policy: &Policy, d: &Decision) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy   {}  hash {}", describe(policy), d.policy_hash);
    let _ = writeln!(
        out,
        "request  `{}` evaluated at {}",
        d.request_id, d.evaluated_at
    );
    if let Some(call) = &d.call {
        for line in call.lines() {
            let _ = writeln!(out, "call     {line}");
        }
    }
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
