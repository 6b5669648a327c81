//! From TOML text to a validated [`PolicyDoc`], with located errors.

mod raw;
mod validate;

use crate::error::PolicyError;
use crate::literals::format_duration;
use crate::model::PolicyDoc;

/// Parses and validates; all semantic errors are returned, sorted by position.
pub(crate) fn parse(text: &str, file: &str) -> Result<PolicyDoc, Vec<PolicyError>> {
    let raw: raw::RawPolicy = toml::from_str(text).map_err(|e| {
        vec![PolicyError::at(
            file,
            text,
            e.span(),
            lowercase_first(e.message().trim_end()),
        )]
    })?;
    let mut v = validate::Validator::new(file, text);
    let doc = v.policy(raw);
    let mut errors = v.into_errors();
    if errors.is_empty() {
        doc.ok_or_else(|| {
            vec![PolicyError::at(
                file,
                text,
                None,
                "bug: no policy and no error".into(),
            )]
        })
    } else {
        errors.sort_by(|a, b| (a.line, a.column, &a.message).cmp(&(b.line, b.column, &b.message)));
        errors.dedup();
        Err(errors)
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Advice for valid policies, in a stable order.
pub(crate) fn warnings(doc: &PolicyDoc) -> Vec<String> {
    let mut out = Vec::new();
    if doc.keys.is_empty() {
        out.push(
            "no `[keys.<key id>]` section: every withdrawal will be denied by `scope.key`".into(),
        );
    }
    for (label, asset) in &doc.assets {
        if asset.limits.velocity.is_empty() {
            out.push(format!(
                "asset `{label}` has no velocity window: only `per_tx` bounds it"
            ));
        }
    }
    if !doc.destinations.require_allowlist {
        out.push("`destinations.require_allowlist = false`: any destination not on the denylist may receive funds".into());
    }
    for (chain, entries) in &doc.destinations.allow {
        for address in entries.keys() {
            if doc
                .destinations
                .deny
                .get(chain)
                .is_some_and(|d| d.contains_key(address))
            {
                out.push(format!(
                    "`{address}` on `{chain}` is on both lists; it is denied"
                ));
            }
        }
    }
    for (key, rule) in &doc.keys {
        if rule.frozen {
            out.push(format!(
                "key `{key}` is frozen in the file: it signs nothing"
            ));
        }
    }
    if let Some(cooldown) = doc.destinations.cooldown {
        if !doc.destinations.require_allowlist {
            out.push(format!(
                "the {} cool-down only applies to allowlisted destinations, and the allowlist is not required",
                format_duration(cooldown)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use crate::testutil::BASE;
    use crate::Policy;

    #[test]
    fn every_semantic_error_is_reported_in_file_order() {
        let text = BASE
            .replace(
                "per_tx = 1000\n\n[assets.btc]",
                "per_tx = 0\n\n[assets.btc]",
            )
            .replace(
                "assets = [\"eth\", \"btc\"]",
                "assets = [\"eth\", \"doge\"]",
            );
        let errors = Policy::check(&text, "t.toml").unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(lines.windows(2).all(|w| w[0] <= w[1]));
        assert!(errors[0]
            .message
            .starts_with("`per_tx` must be greater than 0"));
        assert!(errors[1].message.starts_with("unknown asset `doge`"));
        let first = Policy::from_toml(&text, "t.toml").unwrap_err();
        assert_eq!(first, errors[0]);
        assert!(first.to_string().starts_with("t.toml:"));
    }

    #[test]
    fn unknown_fields_fail_closed() {
        let e = Policy::from_toml(&format!("{BASE}\n[geofence]\nx = 1\n"), "t.toml").unwrap_err();
        assert!(
            e.message.starts_with("unknown field `geofence`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn warnings_are_stable() {
        let p = Policy::from_toml(BASE, "t.toml").unwrap();
        assert_eq!(
            p.warnings(),
            vec![
                "asset `btc` has no velocity window: only `per_tx` bounds it",
                "asset `eth` has no velocity window: only `per_tx` bounds it",
            ]
        );
    }
}
