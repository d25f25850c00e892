//! Located diagnostics: every finding in a user's file names the file, line, column
//! and field, shows the source line with a caret, and says what to do.
//!
//! A [`SourceFile`] holds the text; [`SourceFile::diagnostic`] builds a
//! [`Diagnostic`] with its snippet already cut, so a diagnostic can be rendered or
//! serialised (`--json`) long after the source is gone.

use serde::Serialize;
use std::fmt;

/// A user's file, kept whole so findings can quote it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name shown in findings (the path as the user gave it).
    pub name: String,
    pub text: String,
}

/// A place in a [`SourceFile`]: 1-based line and column (in characters), and the
/// length in characters of the thing to underline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
    #[serde(skip)]
    pub len: usize,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding in a user's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted field path, e.g. `allowed_tools[1].versions[0]`; empty for the document.
    pub field: String,
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The quoted source lines with a caret, ready to print.
    pub snippet: String,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Builds an error at `loc`.
    pub fn diagnostic(
        &self,
        loc: Loc,
        field: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: self.name.clone(),
            line: loc.line,
            column: loc.column,
            field: field.into(),
            message: message.into(),
            help,
            snippet: self.snippet(loc),
        }
    }

    /// The line before, the line of `loc`, and a caret line under the located text.
    pub fn snippet(&self, loc: Loc) -> String {
        if loc.line == 0 {
            return String::new();
        }
        let lines: Vec<&str> = self.text.lines().collect();
        let Some(line) = lines.get(loc.line - 1) else {
            return String::new();
        };
        let width = loc.line.to_string().len();
        let mut out = String::new();
        if let Some(prev) = loc.line.checked_sub(2).and_then(|i| lines.get(i)) {
            out.push_str(&format!("{:>width$} | {}\n", loc.line - 1, printable(prev)));
        }
        let shown = printable(line);
        out.push_str(&format!("{:>width$} | {}\n", loc.line, shown));
        let col = loc.column.max(1);
        let available = shown.chars().count().saturating_sub(col - 1);
        let carets = loc.len.clamp(1, available.max(1));
        out.push_str(&format!(
            "{:>width$} | {}{}",
            "",
            " ".repeat(col - 1),
            "^".repeat(carets)
        ));
        out
    }
}

/// Tabs and control characters would misplace the caret or garble a terminal.
fn printable(line: &str) -> String {
    const MAX: usize = 160;
    let mut s: String = line
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() > MAX {
        s.push('…');
    }
    s
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{kind}: {}", self.message)?;
        if self.line > 0 {
            writeln!(f, "  --> {}:{}:{}", self.file, self.line, self.column)?;
        } else {
            writeln!(f, "  --> {}", self.file)?;
        }
        if !self.field.is_empty() {
            writeln!(f, "   = field: {}", self.field)?;
        }
        for l in self.snippet.lines() {
            writeln!(f, "   {l}")?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "   = help: {help}")?;
        }
        Ok(())
    }
}

/// All findings of one file; an error when not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    /// Findings in file order, so a reader can fix them top to bottom.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by_key(|d| (d.line, d.column));
        self.0.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_points_at_the_column() {
        let src = SourceFile::new("p.yaml", "a: 1\nbad_key: 2\n");
        let d = src.diagnostic(
            Loc {
                line: 2,
                column: 1,
                len: 7,
            },
            "bad_key",
            "unknown key",
            None,
        );
        assert_eq!(d.snippet, "1 | a: 1\n2 | bad_key: 2\n  | ^^^^^^^");
        let shown = d.to_string();
        assert!(shown.contains("--> p.yaml:2:1"), "{shown}");
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let keys = ["safety", "allowed_tools", "inference"];
        assert_eq!(did_you_mean("allowed_tool", &keys), Some("allowed_tools"));
        assert_eq!(did_you_mean("saftey", &keys), Some("safety"));
        assert_eq!(did_you_mean("zzz", &keys), None);
    }
}
