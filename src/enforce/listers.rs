//! The folders whose files a pipeline hands to `xargs`.
//!
//! `find ~ | xargs cat` reads every file in the home folder, secrets included,
//! though no word of `cat` names one: its arguments arrive on standard input. When
//! the stage feeding `xargs` (through filters such as `grep` or `sort`) is a file
//! lister (`find`, `fd`, `locate`), the files are those under the lister's start
//! folders, so the command `xargs` runs is judged as reading (or writing) those
//! folders whole. Other producers (`cat list.txt | xargs cat`) name files nobody
//! can know before the line runs; they are left to the command's own class.

use super::shell::{Invocation, Word};
use super::wrappers::{XARGS_INPUT, command_name};

/// Commands that pass file names through, a subset of their input lines.
const FILTERS: &[&str] = &[
    "grep", "egrep", "fgrep", "sort", "uniq", "head", "tail", "sed", "gsed", "awk", "gawk", "mawk",
    "cut", "tr", "tee", "cat", "shuf", "tac",
];

/// Commands that read only names and metadata, never a file's contents.
const NAMES_ONLY: &[&str] = &[
    "ls", "stat", "du", "echo", "printf", "basename", "dirname", "realpath", "readlink", "test",
    "[",
];

/// The folders whose files `invocations[at]` receives from `xargs`: empty when it
/// is not run by `xargs`, or its input does not come from a file lister.
pub fn listed_folders(invocations: &[Invocation], at: usize) -> Vec<Word> {
    let Some(inv) = invocations.get(at) else {
        return Vec::new();
    };
    if !inv
        .argv
        .iter()
        .any(|w| w.dynamic.as_deref() == Some(XARGS_INPUT))
    {
        return Vec::new();
    }
    // The stages before it in its pipeline, nearest first; wrappers' own parts
    // (`xargs -0`, `sudo`) and what `xargs` runs are not stages of their own.
    let earlier = invocations[..at].iter().rev().filter(|i| {
        i.pipeline == inv.pipeline && !i.wraps && !i.wrappers.iter().any(|w| w == "xargs")
    });
    let names_only = inv
        .argv
        .first()
        .and_then(command_name)
        .is_some_and(|n| NAMES_ONLY.contains(&n.as_str()));
    if !inv.piped_input || names_only {
        return Vec::new();
    }
    for stage in earlier {
        let Some(name) = stage.argv.first().and_then(command_name) else {
            return Vec::new();
        };
        if let Some(roots) = start_folders(&name, &stage.argv[1..]) {
            return roots;
        }
        if !(stage.piped_input && FILTERS.contains(&name.as_str())) {
            return Vec::new();
        }
    }
    Vec::new()
}

/// The folders a file lister walks, `None` when `name` lists no files.
fn start_folders(name: &str, args: &[Word]) -> Option<Vec<Word>> {
    let roots: Vec<Word> = match name {
        // `find [-H|-L|-P|-D opts|-Olevel] ROOT… EXPRESSION`.
        "find" | "gfind" | "bfs" => {
            let mut rest = args;
            while let Some(w) = rest.first() {
                match w.text.as_str() {
                    "-H" | "-L" | "-P" => rest = &rest[1..],
                    "-D" => rest = rest.get(2..).unwrap_or_default(),
                    t if t.starts_with("-O") => rest = &rest[1..],
                    _ => break,
                }
            }
            rest.iter()
                .take_while(|w| {
                    !w.text.starts_with('-') && !matches!(w.text.as_str(), "(" | "!" | ",")
                })
                .cloned()
                .collect()
        }
        // `fd [OPTIONS] [PATTERN] [PATH…]`.
        "fd" | "fdfind" => fd_paths(args),
        // The whole file system, from the locate database.
        "locate" | "plocate" | "mlocate" | "slocate" => vec![Word::literal("/")],
        _ => return None,
    };
    Some(if roots.is_empty() {
        vec![Word::literal(".")]
    } else {
        roots
    })
}

/// fd's search paths: the positional words after its pattern, and
/// `--search-path`'s values. An option's value may be read as a path, which only
/// makes the check stricter.
fn fd_paths(args: &[Word]) -> Vec<Word> {
    const WITH_VALUE: &[&str] = &[
        "-e",
        "-t",
        "-E",
        "-d",
        "-j",
        "-S",
        "-c",
        "-o",
        "--extension",
        "--type",
        "--exclude",
        "--max-depth",
        "--min-depth",
        "--exact-depth",
        "--size",
        "--changed-within",
        "--changed-before",
        "--owner",
        "--base-directory",
        "--max-results",
        "--threads",
        "--color",
        "--ignore-file",
        "--path-separator",
        "--batch-size",
        "--format",
    ];
    let mut positional = Vec::new();
    let mut search = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == "--search-path" {
            search.extend(args.get(i + 1).cloned());
            i += 2;
            continue;
        }
        if let Some(v) = t.strip_prefix("--search-path=") {
            search.push(Word::literal(v));
        } else if matches!(t, "-x" | "--exec" | "-X" | "--exec-batch") {
            // The rest is a command fd runs on each file.
            break;
        } else if WITH_VALUE.contains(&t) {
            i += 1;
        } else if t == "--" {
            positional.extend(args[i + 1..].iter().cloned());
            break;
        } else if !t.starts_with('-') {
            positional.push(args[i].clone());
        }
        i += 1;
    }
    search.extend(positional.into_iter().skip(1));
    search
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders(line: &str) -> Vec<String> {
        let expanded = super::super::wrappers::expand(line);
        let at = expanded
            .invocations
            .iter()
            .rposition(|i| !i.wraps)
            .expect("an invocation");
        listed_folders(&expanded.invocations, at)
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn listers_feeding_xargs_name_their_folders() {
        assert_eq!(folders("find ~ | xargs cat"), ["~"]);
        assert_eq!(
            folders("find -L ~ /etc -type f -print0 | xargs -0 cat"),
            ["~", "/etc"]
        );
        assert_eq!(folders("find | sort | xargs grep x"), ["."]);
        assert_eq!(
            folders("find ~ -name '*.pem' | grep -v x | sudo xargs cat"),
            ["~"]
        );
        assert_eq!(folders("fd -e pem . ~/keys | xargs cat"), ["~/keys"]);
        assert_eq!(folders("fd pem | xargs cat"), ["."]);
        assert_eq!(folders("locate id_rsa | xargs cat"), ["/"]);
    }

    #[test]
    fn other_producers_name_nothing() {
        assert!(folders("cat list.txt | xargs cat").is_empty());
        assert!(folders("find ~ | wc -l").is_empty());
        assert!(folders("find ~; xargs cat < list").is_empty());
        assert!(folders("git ls-files | xargs wc -l").is_empty());
        assert!(folders("find / -name x | xargs ls -l").is_empty());
    }
}
