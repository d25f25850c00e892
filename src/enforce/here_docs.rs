//! Quoted here-documents lifted out of a command before the shell parser reads it.
//!
//! The body of a here-document whose delimiter is quoted (`<<'EOF'`) is text: bash
//! expands nothing in it. brush-parser 0.4 still scans it: a `)` in a commit
//! message inside `"$(cat <<'EOF' … EOF)"` ends the substitution early (Claude
//! Code writes every commit that way), and the screens in front of the parser
//! count its brackets and blanks (a JavaScript file written with `cat <<'EOF'`).
//! So each such body is replaced by one placeholder line before parsing, and put
//! back when the parser hands the here-document over.
//!
//! The lifting reads lines with a small lexer of its own, which may misread a
//! line; it is trusted only when the parser agrees. [`Lifted::confirm`] is told
//! every here-document the parser found, and the lifted reading is used only if
//! each placeholder came back as the body of a quoted here-document with the
//! delimiter the lifting saw. Otherwise the command is parsed as written.

/// The placeholder's prefix; a command that holds it is parsed as written.
const PREFIX: &str = "__fleetkit_here_doc_";

/// A command with its quoted here-documents' bodies lifted out.
#[derive(Debug)]
pub struct Lifted {
    /// The command with one placeholder line for each lifted body.
    pub text: String,
    /// Per placeholder: the delimiter, the body as written (with its final
    /// newline), and whether the parser has handed it back.
    bodies: Vec<(String, String, bool)>,
    /// A placeholder came back in a way the lifting did not expect.
    disagreed: bool,
}

impl Lifted {
    /// The command with its quoted here-document bodies lifted, or `None` when
    /// there is nothing to lift or the lines cannot be read (a delimiter line
    /// missing).
    pub fn new(command: &str) -> Option<Self> {
        if !command.contains("<<") || command.contains(PREFIX) {
            return None;
        }
        let lines: Vec<&str> = command.split('\n').collect();
        let mut out: Vec<String> = Vec::with_capacity(lines.len());
        let mut bodies = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            out.push(line.to_string());
            i += 1;
            for doc in operators(line) {
                let end = (i..lines.len()).find(|&k| {
                    let l = if doc.strip_tabs {
                        lines[k].trim_start_matches('\t')
                    } else {
                        lines[k]
                    };
                    l == doc.delimiter
                })?;
                if doc.quoted && end > i {
                    let mut body = String::new();
                    for l in &lines[i..end] {
                        body.push_str(if doc.strip_tabs {
                            l.trim_start_matches('\t')
                        } else {
                            l
                        });
                        body.push('\n');
                    }
                    out.push(format!("{PREFIX}{}__", bodies.len()));
                    bodies.push((doc.delimiter, body, false));
                } else {
                    out.extend(lines[i..end].iter().map(|l| l.to_string()));
                }
                out.push(lines[end].to_string());
                i = end + 1;
            }
        }
        (!bodies.is_empty()).then(|| Lifted {
            text: out.join("\n"),
            bodies,
            disagreed: false,
        })
    }

    /// The body of a here-document the parser found (`body` as it read it), with
    /// the lifted text put back if it is a placeholder. `quoted`: the parser saw
    /// a quoted delimiter; `delimiter`: the delimiter as written.
    pub fn restore(&mut self, body: &str, quoted: bool, delimiter: &str) -> Option<String> {
        let n: usize = body
            .trim_end_matches('\n')
            .strip_prefix(PREFIX)?
            .strip_suffix("__")?
            .parse()
            .ok()?;
        let Some((want, text, seen)) = self.bodies.get_mut(n) else {
            self.disagreed = true;
            return None;
        };
        if !quoted || *seen || unquote(delimiter) != *want {
            self.disagreed = true;
            return None;
        }
        *seen = true;
        Some(text.clone())
    }

    /// Whether the parser handed back every body as the lifting expected.
    pub fn confirmed(&self) -> bool {
        !self.disagreed && self.bodies.iter().all(|(_, _, seen)| *seen)
    }
}

/// Refuses here-documents that brush-parser 0.4 reads otherwise than bash 5.2
/// (red-team round 5), so that neither the parser nor the lifting is trusted on
/// them:
/// - a delimiter holding `$` (`<<$'EOF'` ends at `EOF` for bash, at `$EOF` for
///   the parser);
/// - a line with several here-documents, one of them inside `$(…)`, `<(…)` or
///   backquotes (bash reads the inner body first);
/// - a here-document inside a substitution whose delimiter is followed by `)`
///   on a later line (`EOF)` ends it for bash, not for the parser).
pub fn screen(command: &str) -> Option<String> {
    if !command.contains("<<") {
        return None;
    }
    // Read as text, not through the lexer (red-team round 6 fooled a lexer with
    // line continuations, quotes left open and `$'\''`): continued lines joined,
    // every `<<` that is not part of `<<<` nor an arithmetic shift counted.
    let joined = command.replace("\\\n", "");
    let ops = textual_operators(&joined);
    if ops.iter().any(|op| op.word.contains('$')) {
        return Some("a here-document delimiter holding `$`, which is not analysed".into());
    }
    let substitutes =
        |t: &str| t.contains("$(") || t.contains('`') || t.contains("<(") || t.contains(">(");
    if ops.len() > 1 {
        // A here-document inside a substitution beside another one: on one
        // line, or on a line that leaves the substitution open.
        for line in joined.split('\n') {
            let here = textual_operators(line).len();
            let opens = line.matches("$(").count()
                + line.matches("<(").count()
                + line.matches(">(").count();
            let open_after =
                opens > line.matches(')').count() || line.matches('`').count() % 2 == 1;
            if (here > 1 && substitutes(line)) || (here > 0 && open_after) {
                return Some(
                    "several here-documents with one inside a substitution, which is not analysed"
                        .into(),
                );
            }
        }
    }
    let substitutes = substitutes(&joined);
    if substitutes {
        for op in &ops {
            let delimiter = unquote(op.word);
            let closes = joined.split('\n').any(|l| {
                l.trim_start_matches('\t')
                    .strip_prefix(delimiter.as_str())
                    .is_some_and(|rest| !rest.is_empty() && rest.trim_start().starts_with(')'))
            });
            if closes {
                return Some(
                    "a here-document in a substitution closed on its delimiter's line, which is not analysed"
                        .into(),
                );
            }
        }
    }
    None
}

/// Where the first here-document operator of `line` starts, read as text (see
/// [`textual_operators`]).
pub fn first_operator(line: &str) -> Option<usize> {
    textual_operators(line).first().map(|op| op.at)
}

/// A here-document operator read as text.
struct TextualOperator<'a> {
    /// Where its `<<` starts.
    at: usize,
    /// The delimiter word as written.
    word: &'a str,
}

/// Whether `<<` at `i` of `b` is a here-document operator's: not part of `<<<`.
fn is_operator_at(b: &[u8], i: usize) -> bool {
    b[i] == b'<'
        && b.get(i + 1) == Some(&b'<')
        && b.get(i + 2) != Some(&b'<')
        && (i == 0 || b[i - 1] != b'<')
}

/// Every here-document operator of `text` as text (quotes not followed). Not
/// `<<<`, nor a shift inside `((…))` that closes on its line.
fn textual_operators(text: &str) -> Vec<TextualOperator<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut arithmetic = 0usize;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'(' && b[i + 1] == b'(' {
            arithmetic += 1;
        } else if b[i] == b')' && b[i + 1] == b')' {
            arithmetic = arithmetic.saturating_sub(1);
        }
        // A shift only if the arithmetic closes after it on the line: `$((echo
        // x) )` is a command substitution that never closes as arithmetic.
        let shift = arithmetic > 0 && {
            let rest = &b[i..];
            let line = &rest[..rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())];
            line.windows(2).any(|w| w == b"))")
        };
        if is_operator_at(b, i) && !shift {
            let start = i + 2 + usize::from(b.get(i + 2) == Some(&b'-'));
            let (word, end) = delimiter_word(&text[start..]);
            out.push(TextualOperator { at: i, word });
            i = start + end.max(1);
            continue;
        }
        i += 1;
    }
    out
}

/// A here-document operator on a line.
struct Operator {
    delimiter: String,
    quoted: bool,
    /// `<<-`: leading tabs are removed from the body and the delimiter line.
    strip_tabs: bool,
}

/// The here-document operators of a line, in order, outside quotes and
/// arithmetic (a `$(` inside double quotes starts a fresh context, as in
/// `"$(cat <<'EOF'`; `$((1<<4))` shifts).
fn operators(line: &str) -> Vec<Operator> {
    #[derive(Clone, Copy, PartialEq)]
    enum Ctx {
        Plain,
        Single,
        Double,
        Backquote,
        Arithmetic,
    }
    let b = line.as_bytes();
    let mut stack = vec![Ctx::Plain];
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let ctx = *stack.last().unwrap_or(&Ctx::Plain);
        let c = b[i];
        let next = b.get(i + 1).copied();
        match (ctx, c) {
            (Ctx::Single, b'\'') => {
                stack.pop();
            }
            (Ctx::Single, _) => {}
            (_, b'\\') => i += 1,
            (Ctx::Arithmetic, b')') if next == Some(b')') => {
                stack.pop();
                i += 1;
            }
            (Ctx::Arithmetic, _) => {}
            (_, b'$') if next == Some(b'(') && b.get(i + 2) == Some(&b'(') => {
                stack.push(Ctx::Arithmetic);
                i += 2;
            }
            (_, b'$') if next == Some(b'(') => {
                stack.push(Ctx::Plain);
                i += 1;
            }
            (Ctx::Backquote, b'`') => {
                stack.pop();
            }
            (Ctx::Plain | Ctx::Double, b'`') => stack.push(Ctx::Backquote),
            (Ctx::Double, b'"') => {
                stack.pop();
            }
            (Ctx::Double, _) => {}
            (Ctx::Plain | Ctx::Backquote, b'(') if next == Some(b'(') => {
                stack.push(Ctx::Arithmetic);
                i += 1;
            }
            (Ctx::Plain | Ctx::Backquote, b'<' | b'>') if next == Some(b'(') => {
                stack.push(Ctx::Plain);
                i += 1;
            }
            (Ctx::Plain | Ctx::Backquote, b'\'') => stack.push(Ctx::Single),
            (Ctx::Plain | Ctx::Backquote, b'"') => stack.push(Ctx::Double),
            (Ctx::Plain, b')') if stack.len() > 1 => {
                stack.pop();
            }
            (Ctx::Plain | Ctx::Backquote, b'<') if is_operator_at(b, i) => {
                let strip_tabs = b.get(i + 2) == Some(&b'-');
                let start = i + 2 + usize::from(strip_tabs);
                let (word, end) = delimiter_word(&line[start..]);
                if word.is_empty() {
                    return Vec::new();
                }
                out.push(Operator {
                    quoted: word.contains(['\'', '"', '\\']),
                    delimiter: unquote(word),
                    strip_tabs,
                });
                i = start + end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The delimiter word after `<<` (after blanks), and where it ends.
fn delimiter_word(rest: &str) -> (&str, usize) {
    let start = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let b = rest.as_bytes();
    let mut k = start;
    let mut quote: Option<u8> = None;
    while k < b.len() {
        let c = b[k];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'\\' => k += 1,
            None if c.is_ascii_whitespace() || b";&|<>()".contains(&c) => break,
            None => {}
        }
        k += 1;
    }
    let k = k.min(b.len());
    (&rest[start..k], k)
}

/// A delimiter word with its quotes and backslashes removed, as bash compares it.
fn unquote(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut quote: Option<char> = None;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => out.push(c),
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '\\' => out.extend(chars.next()),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_bodies_are_lifted_and_put_back() {
        let cmd = "git commit -m \"$(cat <<'EOF'\nFix :) it\n\nBody (1\nEOF\n)\"";
        let mut l = Lifted::new(cmd).expect("a quoted here-document");
        assert_eq!(
            l.text,
            "git commit -m \"$(cat <<'EOF'\n__fleetkit_here_doc_0__\nEOF\n)\""
        );
        assert!(!l.confirmed());
        assert_eq!(
            l.restore("__fleetkit_here_doc_0__\n", true, "'EOF'")
                .as_deref(),
            Some("Fix :) it\n\nBody (1\n")
        );
        assert!(l.confirmed());
    }

    /// Red-team round 5: where brush-parser 0.4 and bash 5.2 read a
    /// here-document differently, the command is refused.
    #[test]
    fn here_documents_the_parser_misreads_are_refused() {
        for hostile in [
            "cat <<'A' $(cat <<'B')\nB\nA\nrm -rf ~\nB",
            "cat <<'A' <(cat <<'B')\nB\nA\nB",
            "cat <<$'EOF'\nx\nEOF\nrm -rf ~\n$EOF",
            "cat <<E$'O'F\nx\nEOF",
            "x=$(cat <<'EOF'\nhi\nEOF)\nrm -rf ~\ny=$(cat <<'EOF'\nEOF\n)",
        ] {
            assert!(screen(hostile).is_some(), "{hostile:?}");
        }
        for fine in [
            "git commit -m \"$(cat <<'EOF'\nFix (x\nEOF\n)\"",
            "x=$((1<<4)); cat <<'EOF'\ny\nEOF",
            "cat <<'A' <<'B'\na\nA\nb\nB",
            "bash <<< \"$VAR\"",
            "cat > a.ts <<'EOF'\nconst x = `${a}`;\nif (a << 2) {}\nEOF",
        ] {
            assert!(screen(fine).is_none(), "{fine:?}");
        }
    }

    #[test]
    fn unquoted_bodies_stay_and_disagreement_is_noticed() {
        // An unquoted body is expanded by bash: it stays for the parser.
        assert!(Lifted::new("cat <<EOF\n$(rm -rf ~)\nEOF").is_none());
        // Tabs before the delimiter with `<<-`; a second here-document after it.
        let l = Lifted::new("cat <<-'A' <<B\n\tx )\n\tA\n$(y)\nB\n").unwrap();
        assert_eq!(
            l.text,
            "cat <<-'A' <<B\n__fleetkit_here_doc_0__\n\tA\n$(y)\nB\n"
        );
        // No delimiter line: nothing is lifted.
        assert!(Lifted::new("cat <<'EOF'\nx").is_none());
        // Inside single quotes `<<` is text.
        assert!(Lifted::new("echo '<<EOF'\nrm -rf /\nEOF").is_none());
        // The parser saw an unquoted delimiter, another one, or a body twice.
        let mut l = Lifted::new("cat <<'EOF'\nx\nEOF").unwrap();
        assert_eq!(l.restore("__fleetkit_here_doc_0__\n", false, "EOF"), None);
        assert!(!l.confirmed());
        let mut l = Lifted::new("cat <<'EOF'\nx\nEOF").unwrap();
        assert_eq!(l.restore("__fleetkit_here_doc_0__\n", true, "'END'"), None);
        assert!(!l.confirmed());
        // A command that already holds the placeholder is parsed as written.
        assert!(Lifted::new("cat <<'E'\n__fleetkit_here_doc_0__\nE").is_none());
    }
}
