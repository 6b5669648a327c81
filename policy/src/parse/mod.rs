//! From TOML text to a validated [`PolicyDoc`], with located errors.

mod raw;
mod validate;

use crate::error::{PolicyError, PolicyWarning};
use crate::model::PolicyDoc;

/// Parses and validates; all semantic errors are returned, sorted by position. A valid policy
/// comes with its warnings: file-wide ones first, then by position.
pub(crate) fn parse(
    text: &str,
    file: &str,
) -> Result<(PolicyDoc, Vec<PolicyWarning>), Vec<PolicyError>> {
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
    let (mut errors, mut warnings) = v.into_parts();
    if errors.is_empty() {
        warnings.sort_by_key(|w| (w.line, w.column));
        doc.map(|doc| (doc, warnings)).ok_or_else(|| {
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
        let got: Vec<String> = p.warnings().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "t.toml:14:9: warning[warn.velocity_missing]: asset `eth` has no velocity window: only `per_tx` bounds it",
                "t.toml:19:9: warning[warn.velocity_missing]: asset `btc` has no velocity window: only `per_tx` bounds it",
            ]
        );
    }

    #[test]
    fn warnings_do_not_change_what_a_policy_is() {
        let a = Policy::from_toml(BASE, "a.toml").unwrap();
        let b = Policy::from_toml(BASE, "b.toml").unwrap();
        assert_ne!(a.warnings(), b.warnings(), "they name their file");
        assert_eq!(a, b);
    }
}
