//! The folders whose files a line hands to a command as names it reads later.
//!
//! `find ~ | xargs cat` reads every file in the home folder, secrets included,
//! though no word of `cat` names one: its arguments arrive on standard input. So do
//! `find ~ | parallel cat`, `for f in $(find ~); do cat "$f"; done`, `while read f;
//! do cat "$f"; done < <(find ~)`, `find ~ > l; xargs cat < l` and `find ~ | cpio
//! -o`. When a line holds a file lister (`find`, `fd`, `locate`, `tree`, `du -a`,
//! `ls -R`, `rg --files`), a command on it that takes names it does not spell
//! (from `xargs` or `parallel`, a variable, a list on standard input) is judged
//! as reading (or writing) the lister's folders whole. Without a lister on the
//! line (`cat list.txt | xargs cat`) the names cannot be known before the line
//! runs; they are left to the command's own class.

use super::shell::{Invocation, Word};
use super::wrappers::command_name;

/// Commands that read only names and metadata, never a file's contents.
const NAMES_ONLY: &[&str] = &[
    "ls", "stat", "du", "echo", "printf", "basename", "dirname", "realpath", "readlink", "test",
    "[",
];

/// The start folders of every file lister on a line, by its place among the
/// line's invocations: found once per line, then shared by [`listed_folders`].
pub fn line_listers(invocations: &[Invocation]) -> Vec<(usize, Vec<Word>)> {
    invocations
        .iter()
        .enumerate()
        .filter(|(_, i)| !i.wraps)
        .filter_map(|(k, i)| {
            let name = i.argv.first().and_then(command_name)?;
            start_folders(&name, &i.argv[1..]).map(|roots| (k, roots))
        })
        .collect()
}

/// The folders whose files `invocations[at]` may receive as names it does not
/// spell: empty when it spells all of its names, or the line lists no folder.
/// `listers`: the line's, from [`line_listers`].
pub fn listed_folders(
    invocations: &[Invocation],
    at: usize,
    listers: &[(usize, Vec<Word>)],
) -> Vec<Word> {
    let Some(inv) = invocations.get(at) else {
        return Vec::new();
    };
    let Some(name) = inv.argv.first().and_then(command_name) else {
        return Vec::new();
    };
    let args = &inv.argv[1..];
    let takes_names = args.iter().any(|w| w.dynamic.is_some())
        || inv
            .wrappers
            .iter()
            .any(|w| matches!(w.as_str(), "xargs" | "parallel"))
        || reads_a_list(&name, args);
    if inv.wraps || !takes_names || NAMES_ONLY.contains(&name.as_str()) {
        return Vec::new();
    }
    let mut out: Vec<Word> = Vec::new();
    for (_, roots) in listers.iter().filter(|(k, _)| *k != at) {
        for root in roots {
            if !out.iter().any(|w| w.text == root.text) {
                out.push(root.clone());
            }
        }
    }
    out
}

/// Commands that read a list of file names on standard input: `cpio -o`, `zip
/// -@`, `tar -T -` / `--files-from`, `rsync --files-from`.
fn reads_a_list(name: &str, args: &[Word]) -> bool {
    let has = |f: &dyn Fn(&str) -> bool| args.iter().any(|w| f(&w.text));
    match name {
        "cpio" | "bsdcpio" => has(&|t| {
            t == "--create" || (t.starts_with('-') && !t.starts_with("--") && t.contains('o'))
        }),
        "zip" => has(&|t| t == "-@" || t == "--names-stdin"),
        "tar" | "gtar" | "bsdtar" | "rsync" => {
            has(&|t| t == "-T" || t.starts_with("--files-from") || t.starts_with("-T"))
        }
        _ => false,
    }
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
        "tree" => operands(args),
        "du" if args
            .iter()
            .any(|w| w.text.starts_with('-') && w.text.contains('a')) =>
        {
            operands(args)
        }
        "ls" if args.iter().any(|w| {
            w.text == "--recursive"
                || (w.text.starts_with('-') && !w.text.starts_with("--") && w.text.contains('R'))
        }) =>
        {
            operands(args)
        }
        "rg" if args.iter().any(|w| w.text == "--files") => operands(args),
        _ => return None,
    };
    Some(if roots.is_empty() {
        vec![Word::literal(".")]
    } else {
        roots
    })
}

/// The words that are not options (a lister's folders; an option's value may be
/// read as one, which only makes the check stricter).
fn operands(args: &[Word]) -> Vec<Word> {
    args.iter()
        .filter(|w| !w.text.starts_with('-'))
        .cloned()
        .collect()
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
        let listers = line_listers(&expanded.invocations);
        listed_folders(&expanded.invocations, at, &listers)
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
    fn names_taken_on_the_same_line_are_the_listers() {
        // Red-team round 7.
        assert_eq!(folders("find ~ | parallel cat"), ["~"]);
        assert_eq!(
            folders("for f in $(find ~ -type f); do cat \"$f\"; done"),
            ["~"]
        );
        assert_eq!(
            folders("while read f; do cat \"$f\"; done < <(find ~)"),
            ["~"]
        );
        assert_eq!(folders("find ~ > /tmp/l; xargs cat < /tmp/l"), ["~"]);
        assert_eq!(folders("find ~ | cpio -o"), ["~"]);
        assert_eq!(folders("tree -afi ~ | xargs cat"), ["~"]);
        assert_eq!(folders("du -a ~ | cut -f2 | xargs cat"), ["~"]);
    }

    #[test]
    fn other_producers_name_nothing() {
        assert!(folders("cat list.txt | xargs cat").is_empty());
        assert!(folders("find ~ | wc -l").is_empty());
        assert!(folders("git ls-files | xargs wc -l").is_empty());
        assert!(folders("find / -name x | xargs ls -l").is_empty());
        assert!(folders("find ~; cat notes.txt").is_empty());
    }
}
