//! Commands that write files named inside another file: archive extraction (`tar
//! x`, `unzip`, `bsdtar x`) and patches (`git apply`, `git am`, `patch`). For each,
//! where the names come from, what is stripped from them and where they land; the
//! names themselves are read by [`super::payloads`].

use super::shell::{Invocation, Word};
use super::wrappers::command_name;

/// Where the names a command writes are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file named on the command line (or by a `<` redirection).
    File(Word),
    /// Standard input from a pipeline, or a file only known when the line runs.
    Unknown(String),
}

/// What a member's name becomes before it is joined to the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strip {
    /// Its first N components removed (`-p1`, `--strip-components=1`).
    Components(usize),
    /// `patch` without `-p`: the name, or any of its suffixes.
    AnySuffix,
}

/// A command that writes the files an archive or patch names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extraction {
    /// The command's name (`tar`, `git apply`).
    pub program: String,
    pub source: Source,
    /// An archive (`true`) or a patch.
    pub archive: bool,
    /// The folder the names are joined to, when an option gives one (else the
    /// working folder).
    pub folder: Option<Word>,
    pub strip: Strip,
}

/// The extraction `inv` performs, if it is one.
pub fn extraction(inv: &Invocation) -> Option<Extraction> {
    let name = inv.argv.first().and_then(command_name)?;
    let args = &inv.argv[1..];
    match name.as_str() {
        "tar" | "gtar" | "bsdtar" => tar(inv, &name, args),
        "unzip" => unzip(args),
        "git" => git(inv, args),
        "patch" | "gpatch" => patch(inv, args),
        _ => None,
    }
}

/// The input a command reads when no file is named: a `<` redirection, or
/// standard input that comes from elsewhere.
fn standard_input(inv: &Invocation, program: &str) -> Source {
    match inv.redirects.iter().rev().find(|r| !r.write) {
        Some(r) if r.target.dynamic.is_none() && !r.target.text.starts_with('&') => {
            Source::File(r.target.clone())
        }
        _ if inv.stdin_text.is_some() => {
            Source::Unknown(format!("`{program}` reads its input from a here-document"))
        }
        _ => Source::Unknown(format!(
            "`{program}` reads the names from standard input, which is not known before it runs"
        )),
    }
}

/// `tar -x…`, `tar x…` (old style), `tar --extract`: `-f FILE` (`-` is standard
/// input), `-C DIR`, `--strip-components=N`.
fn tar(inv: &Invocation, name: &str, args: &[Word]) -> Option<Extraction> {
    let (mut extract, mut file, mut folder, mut strip) = (false, None, None, 0usize);
    // Old style: the first word's letters are options whose values follow in order.
    let mut values: Vec<char> = Vec::new();
    let mut i = 0;
    if let Some(first) = args.first()
        && !first.text.starts_with('-')
        && first.text.chars().all(|c| c.is_ascii_alphabetic())
    {
        extract = first.text.contains('x');
        values = first
            .text
            .chars()
            .filter(|c| matches!(c, 'f' | 'C' | 'b' | 'T' | 'X' | 'N' | 'L' | 'K' | 'g' | 'V'))
            .collect();
        i = 1;
    }
    for letter in values {
        let value = args.get(i).cloned();
        i += 1;
        match letter {
            'f' => file = value,
            'C' => folder = value,
            _ => {}
        }
    }
    while i < args.len() {
        let t = args[i].text.as_str();
        if let Some(long) = t.strip_prefix("--") {
            let (key, value) = long
                .split_once('=')
                .map_or((long, None), |(k, v)| (k, Some(value_of(&args[i], v))));
            let mut value = || match value.clone() {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    args.get(i).cloned()
                }
            };
            match key {
                "extract" | "get" => extract = true,
                "file" => file = value(),
                "directory" => folder = value(),
                "strip-components" | "strip" => {
                    strip = value().and_then(|v| v.text.parse().ok()).unwrap_or(0);
                }
                _ => {}
            }
        } else if let Some(cluster) = t.strip_prefix('-').filter(|c| !c.is_empty()) {
            // `-xzf FILE`, `-xzfFILE`, `-C DIR`, `-CDIR`.
            for (k, c) in cluster.char_indices() {
                match c {
                    'x' => extract = true,
                    'f' | 'C' => {
                        let attached = &cluster[k + 1..];
                        let value = if attached.is_empty() {
                            i += 1;
                            args.get(i).cloned()
                        } else {
                            Some(value_of(&args[i], attached))
                        };
                        if c == 'f' {
                            file = value;
                        } else {
                            folder = value;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    if !extract {
        return None;
    }
    let source = match file {
        Some(w) if w.text == "-" => standard_input(inv, name),
        Some(w) => Source::File(w),
        // Without `-f` tar reads `$TAPE` or standard input.
        None => standard_input(inv, name),
    };
    Some(Extraction {
        program: name.to_string(),
        source,
        archive: true,
        folder,
        strip: Strip::Components(strip),
    })
}

/// `path` as seen from the folder `dir` (an absolute path stays as it is).
fn within(dir: &Word, path: &Word) -> Word {
    if path.text.starts_with(['/', '~']) {
        return path.clone();
    }
    Word {
        text: format!("{}/{}", dir.text.trim_end_matches('/'), path.text),
        dynamic: dir.dynamic.clone().or_else(|| path.dynamic.clone()),
        glob: dir.glob || path.glob,
    }
}

/// The value attached to an option word (`-fFILE`, `--file=FILE`) as a word of
/// its own, known or not as the option word is.
fn value_of(option: &Word, value: &str) -> Word {
    Word {
        text: value.to_string(),
        dynamic: option.dynamic.clone(),
        glob: option.glob,
    }
}

/// `unzip [OPTIONS] ARCHIVE [MEMBERS…] [-d DIR]`; `-l`, `-t`, `-v`, `-Z`, `-p`
/// (list, test, print) write nothing.
fn unzip(args: &[Word]) -> Option<Extraction> {
    let mut archive = None;
    let mut folder = None;
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == "-d" {
            folder = args.get(i + 1).cloned();
            i += 1;
        } else if t == "-P" || t == "-x" {
            // A password; `-x` excludes the members after it.
            i += 1;
        } else if let Some(letters) = t.strip_prefix('-') {
            if letters
                .chars()
                .any(|c| matches!(c, 'l' | 't' | 'v' | 'Z' | 'p' | 'z'))
            {
                return None;
            }
        } else if archive.is_none() {
            archive = Some(args[i].clone());
        }
        i += 1;
    }
    Some(Extraction {
        program: "unzip".into(),
        source: archive.map_or_else(
            || Source::Unknown("`unzip` names no archive".into()),
            Source::File,
        ),
        archive: true,
        folder,
        strip: Strip::Components(0),
    })
}

/// `git apply [OPTIONS] [PATCH…]` and `git am [OPTIONS] [MBOX…]`: the names after
/// `-pN` (1 by default), under `--directory=DIR`. `--check`, `--stat`,
/// `--numstat` and `--summary` without `--apply` write nothing.
fn git(inv: &Invocation, args: &[Word]) -> Option<Extraction> {
    // Past git's own options (`-C DIR`, `-c k=v`). `-C` moves git before it
    // reads the patch or writes a file.
    let mut i = 0;
    let mut moved: Option<Word> = None;
    while i < args.len() && args[i].text.starts_with('-') {
        if args[i].text == "-C" {
            let dir = args.get(i + 1)?;
            moved = Some(match moved {
                Some(m) => within(&m, dir),
                None => dir.clone(),
            });
        }
        i += if matches!(args[i].text.as_str(), "-C" | "-c") {
            2
        } else {
            1
        };
    }
    let sub = args.get(i)?.text.as_str();
    if sub != "apply" && sub != "am" {
        return None;
    }
    let rest = &args[i + 1..];
    let texts: Vec<&str> = rest.iter().map(|w| w.text.as_str()).collect();
    let reports_only = texts
        .iter()
        .any(|t| matches!(*t, "--check" | "--stat" | "--numstat" | "--summary"));
    if sub == "apply" && reports_only && !texts.contains(&"--apply") {
        return None;
    }
    if sub == "am"
        && texts
            .iter()
            .any(|t| matches!(*t, "--abort" | "--skip" | "--quit" | "--show-current-patch"))
    {
        return None;
    }
    let mut strip = 1;
    let mut folder = None;
    let mut files = Vec::new();
    let mut k = 0;
    while k < rest.len() {
        let t = rest[k].text.as_str();
        if let Some(n) = t.strip_prefix("-p").and_then(|n| n.parse().ok()) {
            strip = n;
        } else if t == "-p" {
            strip = rest
                .get(k + 1)
                .and_then(|w| w.text.parse().ok())
                .unwrap_or(1);
            k += 1;
        } else if let Some(d) = t.strip_prefix("--directory=") {
            folder = Some(value_of(&rest[k], d));
        } else if t == "--directory" {
            folder = rest.get(k + 1).cloned();
            k += 1;
        } else if !t.starts_with('-') {
            files.push(rest[k].clone());
        }
        k += 1;
    }
    let program = format!("git {sub}");
    let source = match files.as_slice() {
        [] => standard_input(inv, &program),
        [one] => Source::File(match &moved {
            Some(m) => within(m, one),
            None => one.clone(),
        }),
        _ => Source::Unknown(format!("`{program}` is given several patches")),
    };
    let folder = match (moved, folder) {
        (Some(m), Some(f)) => Some(within(&m, &f)),
        (m, f) => f.or(m),
    };
    Some(Extraction {
        program,
        source,
        archive: false,
        folder,
        strip: Strip::Components(strip),
    })
}

/// `patch [OPTIONS] [ORIGFILE [PATCHFILE]]`, `-i PATCHFILE`, `< PATCHFILE`; `-pN`,
/// `-d DIR`; `--dry-run` writes nothing. A named ORIGFILE is the one file written.
fn patch(inv: &Invocation, args: &[Word]) -> Option<Extraction> {
    let mut strip = Strip::AnySuffix;
    let (mut input, mut folder) = (None, None);
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        let next = args.get(i + 1);
        match t {
            "--dry-run" | "-C" | "--check" => return None,
            "-i" | "--input" => {
                input = next.cloned();
                i += 1;
            }
            "-d" | "--directory" => {
                folder = next.cloned();
                i += 1;
            }
            "-p" | "--strip" => {
                strip = next
                    .and_then(|w| w.text.parse().ok())
                    .map_or(Strip::AnySuffix, Strip::Components);
                i += 1;
            }
            "-o" | "--output" | "-B" | "-r" | "-z" | "-D" | "-F" | "-V" | "-Y" => i += 1,
            _ if t.starts_with("-p") || t.starts_with("--strip=") => {
                let n = t.trim_start_matches("-p").trim_start_matches("--strip=");
                strip = n.parse().map_or(Strip::AnySuffix, Strip::Components);
            }
            _ if t.starts_with('-') => {}
            _ => positional.push(i),
        }
        i += 1;
    }
    // `patch FILE PATCH`: only FILE is written, and it is a path argument already.
    if !positional.is_empty() {
        return None;
    }
    // `-d DIR` moves patch before it opens `-i FILE` (not the shell's `<`).
    let source = match (input, &folder) {
        (Some(w), Some(d)) => Source::File(within(d, &w)),
        (Some(w), None) => Source::File(w),
        (None, _) => standard_input(inv, "patch"),
    };
    Some(Extraction {
        program: "patch".into(),
        source,
        archive: false,
        folder,
        strip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(line: &str) -> Option<(String, Option<String>, Option<String>, Strip)> {
        let expanded = super::super::wrappers::expand(line);
        let inv = expanded.invocations.iter().rev().find(|i| !i.wraps)?;
        let e = extraction(inv)?;
        let source = match e.source {
            Source::File(w) => Some(w.text.clone()),
            Source::Unknown(_) => None,
        };
        Some((e.program, source, e.folder.map(|w| w.text.clone()), e.strip))
    }

    fn file(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn tar_spellings() {
        let c = Strip::Components;
        assert_eq!(
            of("tar xzf a.tgz"),
            Some(("tar".into(), file("a.tgz"), None, c(0)))
        );
        assert_eq!(
            of("tar -xzf a.tgz -C out"),
            Some(("tar".into(), file("a.tgz"), file("out"), c(0)))
        );
        assert_eq!(
            of("tar --extract --file a.tar --directory=x --strip-components=1"),
            Some(("tar".into(), file("a.tar"), file("x"), c(1)))
        );
        assert_eq!(
            of("tar xf - < a.tar"),
            Some(("tar".into(), file("a.tar"), None, c(0)))
        );
        assert_eq!(of("curl x | tar xz").map(|e| e.1), Some(None));
        assert_eq!(
            of("tar -xf a.tar"),
            Some(("tar".into(), file("a.tar"), None, c(0)))
        );
        assert_eq!(of("tar czf a.tgz src"), None);
        assert_eq!(of("tar -tzf a.tgz"), None);
    }

    #[test]
    fn unzip_git_and_patch_spellings() {
        let c = Strip::Components;
        assert_eq!(
            of("unzip -o a.zip -d out"),
            Some(("unzip".into(), file("a.zip"), file("out"), c(0)))
        );
        assert_eq!(of("unzip -l a.zip"), None);
        assert_eq!(
            of("git apply fix.patch"),
            Some(("git apply".into(), file("fix.patch"), None, c(1)))
        );
        assert_eq!(of("git apply --check fix.patch"), None);
        assert_eq!(
            of("git -C repo apply -p2 x.diff"),
            Some(("git apply".into(), file("repo/x.diff"), file("repo"), c(2)))
        );
        assert_eq!(
            of("patch -d src -i x.patch").map(|e| e.1),
            Some(file("src/x.patch"))
        );
        assert_eq!(
            of("patch -d src < x.patch").map(|e| e.1),
            Some(file("x.patch"))
        );
        assert_eq!(of("curl x | git apply").map(|e| e.1), Some(None));
        assert_eq!(
            of("git am < mail"),
            Some(("git am".into(), file("mail"), None, c(1)))
        );
        assert_eq!(
            of("patch -p1 < x.patch"),
            Some(("patch".into(), file("x.patch"), None, c(1)))
        );
        assert_eq!(
            of("patch -i /p/x.patch -d src"),
            Some((
                "patch".into(),
                file("/p/x.patch"),
                file("src"),
                Strip::AnySuffix
            ))
        );
        assert_eq!(of("patch --dry-run -p1 < x.patch"), None);
        assert_eq!(of("patch main.c fix.diff"), None);
        assert_eq!(of("git status"), None);
    }
}
