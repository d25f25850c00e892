//! The policy's blocked patterns (`safety.blocked_patterns`), matched against a
//! command's texts.
//!
//! A hook process judges one command, and compiling every pattern into one
//! `RegexSet` up front cost it 10 ms for 500 patterns. Instead each pattern's
//! longest literal that every match must contain (`rm -rf /data/set7` of
//! `rm\s+-rf\s+/data/set7(/|$)`, `--privileged` of `docker run .*--privileged`)
//! goes into one Aho-Corasick automaton; a text is compared only with the patterns
//! whose literal it contains (and those without one), and a pattern is compiled the
//! first time a text reaches it. The answer is the one the `RegexSet` gave: the
//! lowest-numbered pattern that matches (a test holds the two together).

use super::prefilter::LiteralIndex;
use regex::Regex;
use regex_syntax::ast::{self, Ast};
use std::sync::OnceLock;

/// Largest compiled size of one pattern.
const REGEX_SIZE_LIMIT: usize = 64 * 1024 * 1024;

/// The blocked patterns, ready to match.
#[derive(Debug, Clone)]
pub struct BlockedPatterns {
    patterns: Vec<Lazy>,
    /// The patterns' literals (patterns without one, `(?i)curl`, `.*`, are tried
    /// on every text).
    literals: LiteralIndex,
}

#[derive(Debug, Clone)]
struct Lazy {
    source: String,
    /// The compiled pattern, or why it does not compile (then it counts as a
    /// match: a rule the device cannot apply must not let commands through).
    compiled: OnceLock<Result<Regex, String>>,
}

impl Lazy {
    fn is_match(&self, text: &str) -> bool {
        self.compiled
            .get_or_init(|| {
                regex::RegexBuilder::new(&self.source)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_or(true, |r| r.is_match(text))
    }
}

impl BlockedPatterns {
    /// Parses every pattern (a syntax error is reported now) and indexes its
    /// literal.
    pub fn compile<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let (mut lazy, mut literals) = (Vec::new(), Vec::new());
        for source in patterns {
            let parsed = ast::parse::Parser::new()
                .parse(source)
                .map_err(|e| format!("`{source}`: {e}"))?;
            literals.push(required_literal(&parsed));
            lazy.push(Lazy {
                source: source.to_string(),
                compiled: OnceLock::new(),
            });
        }
        let literals = LiteralIndex::new(literals)?;
        Ok(Self {
            patterns: lazy,
            literals,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The lowest-numbered pattern that matches `text`.
    pub fn first_match(&self, text: &str) -> Option<usize> {
        let mut candidates: Vec<usize> = self.literals.candidates(text).collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .find(|&i| self.patterns[i].is_match(text))
    }
}

/// The longest run of literal characters that every match of the pattern contains:
/// consecutive plain characters of its top-level sequence. `None` when there is
/// none, or when a flag (`(?i)`, `(?x)`) could change what a character matches.
fn required_literal(parsed: &Ast) -> Option<String> {
    let items: &[Ast] = match parsed {
        Ast::Concat(c) => &c.asts,
        Ast::Literal(_) => std::slice::from_ref(parsed),
        _ => return None,
    };
    if items.iter().any(|a| matches!(a, Ast::Flags(_))) {
        return None;
    }
    let (mut best, mut run) = (String::new(), String::new());
    for item in items {
        match item {
            Ast::Literal(l) => run.push(l.c),
            _ => {
                if run.chars().count() > best.chars().count() {
                    best = std::mem::take(&mut run);
                }
                run.clear();
            }
        }
    }
    if run.chars().count() > best.chars().count() {
        best = run;
    }
    (!best.is_empty()).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_required_ones() {
        let lit = |p: &str| required_literal(&ast::parse::Parser::new().parse(p).unwrap());
        assert_eq!(
            lit(r"rm\s+-rf\s+/data/set7(/|$)").as_deref(),
            Some("/data/set7")
        );
        assert_eq!(lit(r"curl .*\|\s*(ba)?sh").as_deref(), Some("curl "));
        assert_eq!(lit(r"git push .*--force").as_deref(), Some("git push "));
        assert_eq!(lit(r"a\.b").as_deref(), Some("a.b"));
        assert_eq!(lit(r"(?i)curl"), None);
        assert_eq!(lit(r"curl|wget"), None);
        assert_eq!(lit(r".*"), None);
        assert_eq!(lit(r"x(?i)y"), None);
    }

    /// The prefilter and lazy patterns answer as one RegexSet of the same patterns.
    #[test]
    fn answers_as_a_regex_set() {
        let mut sources: Vec<String> = [
            r"curl .*\|\s*(ba)?sh",
            r"docker run .*--privileged",
            r"git push .*--force",
            r":\(\)\s*\{",
            r"(?i)DROP\s+TABLE",
            r"^sudo ",
            r"rm -rf /$",
            r"chmod\s+777",
            r"\bnc\b",
            r"x{2}y",
            r"é日本",
        ]
        .map(String::from)
        .to_vec();
        sources.extend((0..50).map(|i| format!(r"rm\s+-rf\s+/data/set{i}(/|$)")));
        let set = regex::RegexSet::new(&sources).unwrap();
        let ours = BlockedPatterns::compile(sources.iter().map(String::as_str)).unwrap();
        let texts = [
            "curl x | bash",
            "curl -s x |sh",
            "CURL x | bash",
            "docker run --rm --privileged x",
            "git push origin main --force",
            ":(){ :|:& };:",
            "psql -c 'drop   table x'",
            "sudo rm -rf /",
            "rm -rf /",
            "rm -rf /data/set7",
            "rm -rf /data/set7/x",
            "rm -rf /data/set70",
            "rm  -rf  /data/set49/",
            "chmod  777 f",
            "nc -l 1",
            "xxy",
            "echo é日本",
            "ls -la",
            "",
        ];
        for t in texts {
            assert_eq!(ours.first_match(t), set.matches(t).iter().next(), "{t:?}");
        }
    }

    #[test]
    fn a_syntax_error_is_reported_when_compiling() {
        assert!(BlockedPatterns::compile(["a(b"]).is_err());
    }

    /// A pattern over the size limit (the policy check bounds patterns, so only a
    /// policy that skipped it) matches everything rather than nothing.
    #[test]
    fn a_pattern_that_cannot_be_built_fails_closed() {
        let p = BlockedPatterns::compile([r"\w{1000}{1000}"]).unwrap();
        assert_eq!(p.first_match("ls"), Some(0));
    }
}
