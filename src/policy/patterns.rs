//! Blocked command patterns (regular expressions) and dangerous path globs.

/// Compiled-program size limit: a pathological pattern is an error, not a hang or an
/// out-of-memory on every device that loads the policy.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles `pattern`, returning the regex crate's reason on failure (first line).
pub fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "the pattern compiles too large".to_string(),
            other => {
                let text = other.to_string();
                text.lines()
                    .rev()
                    .find(|l| l.starts_with("error:"))
                    .map_or_else(
                        || text.clone(),
                        |l| l.trim_start_matches("error: ").to_string(),
                    )
            }
        })
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
        let e = compile("(unclosed").unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
    }
}
