//! Errors and warnings for policy files: every error names the file, the line and the column,
//! and so does every warning about one place in the file.

use std::fmt::Write as _;
use std::ops::Range;

/// A syntax or semantic error in a policy file.
///
/// `line` and `column` are 1-based; the column counts characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    /// The file name given to [`crate::Policy::from_toml`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what was expected, lowercase.
    pub message: String,
    /// Byte range in the source, when known.
    pub span: Option<Range<usize>>,
}

impl PolicyError {
    /// Builds an error at a byte span of `source`.
    pub(crate) fn at(
        file: &str,
        source: &str,
        span: Option<Range<usize>>,
        message: String,
    ) -> Self {
        let offset = span.as_ref().map_or(0, |s| s.start);
        let (line, column) = line_column(source, offset);
        PolicyError {
            file: file.to_string(),
            line,
            column,
            message,
            span,
        }
    }

    /// Renders the error like a compiler diagnostic, with the offending line and a caret.
    pub fn render(&self, source: &str) -> String {
        let mut out = format!("error: {}\n", self.message);
        let at = (self.line, self.column, self.span.as_ref());
        snippet(&mut out, &self.file, at, source);
        out
    }
}

/// A valid policy that probably does not do what it seems to: `policy check` prints it and the
/// policy stays valid.
///
/// `line` and `column` (1-based, the column in characters) are `None` for advice about the file
/// as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWarning {
    /// Stable tag, `warn.<name>`, one of [`crate::tags::WARNINGS`].
    pub tag: &'static str,
    /// The file name given to [`crate::Policy::from_toml`].
    pub file: String,
    /// 1-based line, when the warning is about one place.
    pub line: Option<usize>,
    /// 1-based column, in characters, when the warning is about one place.
    pub column: Option<usize>,
    /// What looks wrong and why, lowercase.
    pub message: String,
    /// Byte range in the source, when known.
    pub span: Option<Range<usize>>,
}

impl PolicyWarning {
    /// Builds a warning at a byte span of `source`, or about the whole file.
    pub(crate) fn at(
        tag: &'static str,
        file: &str,
        source: &str,
        span: Option<Range<usize>>,
        message: String,
    ) -> Self {
        let (line, column) = match &span {
            Some(s) => {
                let (l, c) = line_column(source, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        PolicyWarning {
            tag,
            file: file.to_string(),
            line,
            column,
            message,
            span,
        }
    }

    /// Renders the warning like a compiler lint: `warning[<tag>]`, then the place when known.
    pub fn render(&self, source: &str) -> String {
        let mut out = format!("warning[{}]: {}\n", self.tag, self.message);
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                snippet(
                    &mut out,
                    &self.file,
                    (line, column, self.span.as_ref()),
                    source,
                );
            }
            _ => {
                let _ = writeln!(out, " --> {}", self.file);
            }
        }
        out
    }
}

impl std::fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: ", self.file)?,
            _ => write!(f, "{}: ", self.file)?,
        }
        write!(f, "warning[{}]: {}", self.tag, self.message)
    }
}

/// The `--> file:line:column` line, the source line and a caret under the span.
fn snippet(
    out: &mut String,
    file: &str,
    (line, column, span): (usize, usize, Option<&Range<usize>>),
    source: &str,
) {
    let gutter = line.to_string().len();
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad}--> {file}:{line}:{column}");
    let Some(text) = source.lines().nth(line.saturating_sub(1)) else {
        return;
    };
    let width = span.map_or(1, |s| {
        let end = s.end.min(source.len());
        let start = s.start.min(end);
        let snippet = source.get(start..end).unwrap_or("");
        snippet.lines().next().unwrap_or("").chars().count().max(1)
    });
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{line} | {text}");
    let caret_pad = " ".repeat(column.saturating_sub(1));
    let _ = writeln!(out, "{pad} | {caret_pad}{}", "^".repeat(width));
}

/// Converts a byte offset into a 1-based (line, column in characters).
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // `=` after a two-byte character is the 4th character of line 2.
        assert_eq!(line_column(src, 10), (2, 4));
        assert_eq!(line_column(src, 999), (3, 1));
    }

    #[test]
    fn render_points_at_the_span() {
        let src = "version = 1\nper_tx = 0\n";
        let e = PolicyError::at("p.toml", src, Some(21..22), "a limit of 0".into());
        let r = e.render(src);
        assert!(r.contains("--> p.toml:2:10"), "{r}");
        assert!(r.contains("2 | per_tx = 0\n  |          ^\n"), "{r}");
    }

    #[test]
    fn warnings_render_with_their_tag_and_place() {
        let src = "version = 1\nper_tx = 10\n";
        let w = PolicyWarning::at("warn.x", "p.toml", src, Some(21..23), "why".into());
        assert_eq!((w.line, w.column), (Some(2), Some(10)));
        assert_eq!(w.to_string(), "p.toml:2:10: warning[warn.x]: why");
        let r = w.render(src);
        assert!(
            r.starts_with("warning[warn.x]: why\n --> p.toml:2:10\n"),
            "{r}"
        );
        assert!(r.contains("2 | per_tx = 10\n  |          ^^\n"), "{r}");
        let file = PolicyWarning::at("warn.y", "p.toml", src, None, "all of it".into());
        assert_eq!((file.line, file.column), (None, None));
        assert_eq!(file.to_string(), "p.toml: warning[warn.y]: all of it");
        assert_eq!(
            file.render(src),
            "warning[warn.y]: all of it\n --> p.toml\n"
        );
    }
}
