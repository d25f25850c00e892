//! The literal prefilter shared by the blocked patterns and the dangerous-path
//! globs: each rule's literal (text every match contains) goes into one
//! Aho-Corasick automaton, and a text is compared only with the rules whose literal
//! it contains, and those without one. A hook process judges one command, so
//! compiling only the rules a text can reach is most of its compile cost saved.

use aho_corasick::{AhoCorasick, AhoCorasickKind};

/// Which rules a text may match.
#[derive(Debug, Clone)]
pub struct LiteralIndex {
    automaton: AhoCorasick,
    /// Pattern `k` of the automaton is the literal of rule `owners[k]`.
    owners: Vec<usize>,
    /// Rules with no literal: candidates for every text.
    always: Vec<usize>,
}

impl LiteralIndex {
    /// One entry per rule, in rule order: its literal, or `None`.
    pub fn new(literals: impl IntoIterator<Item = Option<String>>) -> Result<Self, String> {
        let (mut found, mut owners, mut always) = (Vec::new(), Vec::new(), Vec::new());
        for (i, literal) in literals.into_iter().enumerate() {
            match literal {
                Some(l) => {
                    found.push(l);
                    owners.push(i);
                }
                None => always.push(i),
            }
        }
        // The non-contiguous NFA builds in microseconds; each text is searched once.
        let automaton = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::NoncontiguousNFA))
            .build(&found)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            automaton,
            owners,
            always,
        })
    }

    /// The rules `text` may match, unordered, possibly repeated.
    pub fn candidates<'a>(&'a self, text: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.automaton
            .find_overlapping_iter(text)
            .map(|m| self.owners[m.pattern().as_usize()])
            .chain(self.always.iter().copied())
    }
}
