//! Escaping of every value fleetkit renders into a generated file, one function per
//! language (DESIGN.md security rule 7). Each returns a complete literal — quotes
//! included — that the language reads back as exactly the given text, so no quote,
//! `$`, backtick, `#{`, `{{`, newline or non-ASCII character can end the literal or
//! be evaluated. The integration tests read every literal back with the real tool.

use crate::workspace::config::yaml_quote;

/// A YAML double-quoted scalar.
pub fn yaml(s: &str) -> String {
    yaml_quote(s)
}

/// A YAML scalar Ansible never templates: `!unsafe "…"` (a value holding `{{` is
/// text, not a Jinja expression to run on the controller).
pub fn ansible(s: &str) -> String {
    format!("!unsafe {}", yaml_quote(s))
}

/// A Ruby string literal: single-quoted when it can be (no escapes but `\\` and
/// `\'`, no interpolation), double-quoted with escapes when it holds a control
/// character or something that reads like interpolation (where every `#` is
/// escaped, so neither `#{…}` nor `#@x` is interpolated).
pub fn ruby(s: &str) -> String {
    if !s.chars().any(char::is_control) && !s.contains("#{") {
        return single_quoted(s);
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '#' => out.push_str("\\#"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Puppet string literal: single-quoted when it can be, double-quoted with
/// escapes (`$` escaped, so nothing is interpolated) when it holds a control
/// character.
pub fn puppet(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return single_quoted(s);
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:04X}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A single-quoted literal as Ruby and Puppet read it: only `\\` and `\'` are
/// escapes, nothing is interpolated.
fn single_quoted(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A JSON string (also a valid YAML flow scalar).
pub fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A POSIX shell word: single-quoted, with `'` written as `'\''`.
pub fn shell(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Text for XML content or a double- or single-quoted attribute: the five markup
/// characters as entities, and the characters XML 1.0 cannot carry at all (controls
/// other than tab, newline and carriage return, U+FFFE, U+FFFF) as U+FFFD, so any
/// value leaves a well-formed document.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Text for a comment line (`#` comments in YAML, Ruby, Puppet, shell): control
/// characters and the Unicode line breaks YAML also ends a line at (U+2028,
/// U+2029, U+0085) and U+FEFF become spaces, so the comment cannot end early.
pub fn comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}' | '\u{feff}') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted_for_their_language() {
        assert_eq!(ruby("it's"), r"'it\'s'");
        assert_eq!(ruby("a\n#{x}"), r#""a\n\#{x}""#);
        assert_eq!(puppet("a$b"), "'a$b'");
        assert_eq!(puppet("a\n$b"), r#""a\n\$b""#);
        assert_eq!(ansible("{{ x }}"), r#"!unsafe "{{ x }}""#);
        assert_eq!(shell("it's"), r"'it'\''s'");
        assert_eq!(comment("a\nb"), "a b");
        assert_eq!(
            xml("<a href='x'>&\u{1}</a>"),
            "&lt;a href=&apos;x&apos;&gt;&amp;\u{fffd}&lt;/a&gt;"
        );
        assert_eq!(comment("a\u{2028}- x\u{2029}y"), "a - x y");
    }
}
