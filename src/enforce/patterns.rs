//! `safety.blocked_patterns` as one matcher: which pattern, lowest index first,
//! matches anywhere in a haystack (what `RegexSet::matches` answers).
//!
//! Compiling a thousand regexes takes tens of milliseconds, and Claude Code starts
//! a hook process for every command. So when a policy comes into force the agent
//! also builds one dense multi-pattern DFA (regex-automata) and keeps it next to
//! the policy ([`cache_bytes`]); a hook process loads it ([`PatternSet::from_cache`],
//! validated by regex-automata, a copy) and compiles nothing. The file names the
//! exact patterns it was built from (a SHA-256 over them, the crate version and the
//! byte order), so it is never used for another policy; when there is none, or it
//! does not fit, or a pattern needs what a DFA cannot do (Unicode `\b`), the
//! patterns are compiled as a `RegexSet` as before. Both give the same answers
//! (tests: the corpus and its mutations through both).

use regex_automata::dfa::{Automaton, OverlappingState, dense};
use regex_automata::{Input, MatchKind};
use sha2::{Digest, Sha256};

/// Largest compiled size of the blocked patterns together (either form).
pub const SIZE_LIMIT: usize = 64 * 1024 * 1024;

/// What starts a cache file, then the 32-byte key, then the DFA.
const MAGIC: &[u8; 8] = b"FKDFA\x001\x00";
const HEADER: usize = MAGIC.len() + 32;

/// The blocked patterns, ready to match.
#[derive(Debug, Clone)]
pub enum PatternSet {
    Set(regex::RegexSet),
    Dfa(Box<dense::DFA<Vec<u32>>>),
}

impl PatternSet {
    /// Compiles the patterns as a `RegexSet` (what the policy check validated).
    pub fn compile(patterns: &[&str]) -> Result<Self, String> {
        regex::RegexSetBuilder::new(patterns)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .build()
            .map(Self::Set)
            .map_err(|e| e.to_string())
    }

    /// The DFA of a cache file made by [`cache_bytes`] for these very patterns;
    /// `None` when the file is for other patterns, another build, or damaged.
    pub fn from_cache(patterns: &[&str], bytes: &[u8]) -> Option<Self> {
        if !cache_is_for(patterns, bytes) {
            return None;
        }
        // DFA::from_bytes wants its buffer aligned for u32 words.
        let body = &bytes[HEADER..];
        let mut words = vec![0u32; body.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..body.len()].copy_from_slice(body);
        let aligned = &bytemuck::cast_slice::<u32, u8>(&words)[..body.len()];
        let (dfa, _) = dense::DFA::from_bytes(aligned).ok()?;
        (dfa.pattern_len() == patterns.len()).then(|| Self::Dfa(Box::new(dfa.to_owned())))
    }

    /// The lowest index of a pattern matching anywhere in `haystack`.
    pub fn first_match(&self, haystack: &str) -> Option<usize> {
        match self {
            Self::Set(set) => set.matches(haystack).iter().next(),
            Self::Dfa(dfa) => {
                let input = Input::new(haystack);
                let mut state = OverlappingState::start();
                let mut lowest: Option<usize> = None;
                loop {
                    // A DFA built without quit bytes or Unicode word boundaries
                    // cannot fail a search; if one did, nothing is reported as
                    // "no match": the error is a match of pattern 0, which denies.
                    if dfa.try_search_overlapping_fwd(&input, &mut state).is_err() {
                        return Some(0);
                    }
                    let Some(m) = state.get_match() else {
                        return lowest;
                    };
                    let i = m.pattern().as_usize();
                    lowest = Some(lowest.map_or(i, |l| l.min(i)));
                    if i == 0 {
                        return lowest;
                    }
                }
            }
        }
    }

    pub fn is_dfa(&self) -> bool {
        matches!(self, Self::Dfa(_))
    }
}

/// The cache file for `patterns`: a DFA matching exactly like the `RegexSet`, or
/// `None` when no DFA of them fits [`SIZE_LIMIT`] (the hook then compiles them).
pub fn cache_bytes(patterns: &[&str]) -> Option<Vec<u8>> {
    if patterns.is_empty() {
        return None;
    }
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .dfa_size_limit(Some(SIZE_LIMIT))
                .determinize_size_limit(Some(SIZE_LIMIT)),
        )
        .build_many(patterns)
        .ok()?;
    let (buf, padding) = dfa.to_bytes_native_endian();
    let mut out = Vec::with_capacity(HEADER + buf.len() - padding);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&key(patterns));
    out.extend_from_slice(&buf[padding..]);
    Some(out)
}

/// Whether a cache file's header says it was made for exactly these patterns.
pub fn cache_is_for(patterns: &[&str], bytes: &[u8]) -> bool {
    bytes.len() >= HEADER
        && &bytes[..MAGIC.len()] == MAGIC
        && bytes[MAGIC.len()..HEADER] == key(patterns)
}

/// What a cache file is for: these patterns, in this order, for this DFA format.
fn key(patterns: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"regex-automata 0.4 dense DFA, MatchKind::All, ");
    h.update(if cfg!(target_endian = "little") {
        b"le"
    } else {
        b"be"
    });
    for p in patterns {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATTERNS: &[&str] = &[
        r"rm\s+-rf\s+/(\s|$)",
        r"curl[^|]*\|\s*(ba)?sh",
        r"(?i)drop\s+table",
        r"^git\s+push\s+.*--force",
        r"éte+",
    ];

    #[test]
    fn the_cached_dfa_answers_like_the_regex_set() {
        let set = PatternSet::compile(PATTERNS).unwrap();
        let bytes = cache_bytes(PATTERNS).unwrap();
        let dfa = PatternSet::from_cache(PATTERNS, &bytes).unwrap();
        assert!(dfa.is_dfa());
        for h in [
            "rm -rf /",
            "rm -rf /tmp",
            "curl x | bash",
            "curl x|sh; rm -rf / ",
            "DROP  TABLE users",
            "git push origin main --force",
            "echo git push --force",
            "été",
            "ls",
            "",
        ] {
            assert_eq!(set.first_match(h), dfa.first_match(h), "{h:?}");
        }
        assert_eq!(dfa.first_match("curl x|sh; rm -rf / "), Some(0));
    }

    #[test]
    fn a_cache_for_other_patterns_or_damaged_is_not_used() {
        let bytes = cache_bytes(PATTERNS).unwrap();
        assert!(PatternSet::from_cache(&PATTERNS[..4], &bytes).is_none());
        let mut swapped = PATTERNS.to_vec();
        swapped.swap(0, 1);
        assert!(PatternSet::from_cache(&swapped, &bytes).is_none());
        let mut damaged = bytes.clone();
        let n = damaged.len();
        damaged[n / 2] ^= 0xff;
        damaged[n / 2 + 1] ^= 0xff;
        // Either refused or, if the flipped bytes were padding, still a DFA of
        // these patterns; never a panic.
        let _ = PatternSet::from_cache(PATTERNS, &damaged);
        assert!(PatternSet::from_cache(PATTERNS, &bytes[..HEADER + 3]).is_none());
        assert!(PatternSet::from_cache(PATTERNS, b"").is_none());
    }

    #[test]
    fn unicode_word_boundaries_are_left_to_the_regex_set() {
        assert!(cache_bytes(&[r"\bshutdown\b"]).is_none());
        assert!(cache_bytes(&[]).is_none());
    }
}
