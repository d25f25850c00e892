//! Blocked command patterns (regular expressions) and dangerous path globs.

/// Largest program a pattern may describe, counted in literal characters and class
/// items after repetitions are expanded. A pathological pattern such as
/// `(a{1000}){1000}` is an error here rather than an out-of-memory on every device.
const MAX_PATTERN_WEIGHT: u64 = 100_000;

/// Checks that `pattern` is a valid regular expression (Rust `regex` syntax) of
/// reasonable size, returning the reason when it is not.
///
/// Only the syntax is parsed: compiling 1,000 patterns into automata costs tens of
/// milliseconds, and devices compile them (with their own size limit) when they load
/// the policy.
pub fn check(pattern: &str) -> Result<(), String> {
    let hir = regex_syntax::ParserBuilder::new()
        .nest_limit(64)
        .build()
        .parse(pattern)
        .map_err(|e| {
            let text = e.to_string();
            text.lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .map_or_else(
                    || text.clone(),
                    |l| l.trim_start_matches("error: ").to_string(),
                )
        })?;
    if weight(&hir) > MAX_PATTERN_WEIGHT {
        return Err("the pattern expands to too large a program (nested repetitions?)".into());
    }
    Ok(())
}

/// An upper estimate of the compiled size of `hir`.
fn weight(hir: &regex_syntax::hir::Hir) -> u64 {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(l) => l.0.len() as u64,
        HirKind::Class(_) => 1,
        HirKind::Repetition(r) => {
            let times = u64::from(r.max.unwrap_or(r.min.saturating_add(1)).max(1));
            times.saturating_mul(weight(&r.sub))
        }
        HirKind::Capture(c) => weight(&c.sub),
        HirKind::Concat(v) | HirKind::Alternation(v) => {
            v.iter().map(weight).fold(0u64, u64::saturating_add)
        }
    }
}

/// True when the pattern has a top-level ` | ` — almost always meant as a shell pipe
/// (ADR-002's own example `curl .* | bash`), which in a regex is alternation.
pub fn has_spaced_alternation(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let (mut depth, mut class, mut escaped) = (0i32, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'[' if !class => class = true,
            b']' if class => class = false,
            b'(' if !class => depth += 1,
            b')' if !class => depth -= 1,
            b'|' if !class && depth == 0 => {
                let before = i > 0 && bytes[i - 1] == b' ';
                let after = bytes.get(i + 1) == Some(&b' ');
                if before && after {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Checks a dangerous-path entry: absolute (`/`, `~/`, `C:\`), balanced glob brackets.
pub fn check_path_glob(p: &str) -> Result<(), String> {
    let b = p.as_bytes();
    let windows = b.len() >= 3
        && b[0].is_ascii_alphabetic()
        && b[1] == b':'
        && (b[2] == b'\\' || b[2] == b'/');
    if !(p.starts_with('/') || p.starts_with("~/") || p == "~" || windows) {
        return Err(format!("`{p}` is not an absolute path"));
    }
    let (mut square, mut curly) = (0i32, 0i32);
    for c in p.chars() {
        match c {
            '[' => square += 1,
            ']' => square -= 1,
            '{' => curly += 1,
            '}' => curly -= 1,
            _ => {}
        }
        if square < 0 || curly < 0 {
            break;
        }
    }
    if square != 0 || curly != 0 {
        return Err(format!("`{p}` has unbalanced [ ] or {{ }} in its glob"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaced_alternation_is_spotted_only_at_top_level() {
        assert!(has_spaced_alternation("curl .* | bash"));
        assert!(!has_spaced_alternation(r"curl .*\|\s*bash"));
        assert!(!has_spaced_alternation("(a | b)"));
        assert!(!has_spaced_alternation("[ | ]"));
    }

    #[test]
    fn paths() {
        assert!(check_path_glob("/data/production/*").is_ok());
        assert!(check_path_glob("~/secrets/**").is_ok());
        assert!(check_path_glob("C:\\Data\\*").is_ok());
        assert!(check_path_glob("data/*").is_err());
        assert!(check_path_glob("/data/[abc").is_err());
    }

    #[test]
    fn bad_regex_says_why() {
        let e = check("(unclosed").unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
        assert!(check("(a{1000}){1000}").unwrap_err().contains("too large"));
        assert!(check(r"curl\s.*\|\s*(ba|z)?sh").is_ok());
    }
}
