//! Errors for policy files: every one names the file, the line and the column.

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
        let gutter = self.line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}--> {}:{}:{}", self.file, self.line, self.column);
        let Some(text) = source.lines().nth(self.line.saturating_sub(1)) else {
            return out;
        };
        let width = self.span.as_ref().map_or(1, |s| {
            let end = s.end.min(source.len());
            let start = s.start.min(end);
            let snippet = source.get(start..end).unwrap_or("");
            snippet.lines().next().unwrap_or("").chars().count().max(1)
        });
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{} | {}", self.line, text);
        let caret_pad = " ".repeat(self.column.saturating_sub(1));
        let _ = writeln!(out, "{pad} | {caret_pad}{}", "^".repeat(width));
        out
    }
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
}
