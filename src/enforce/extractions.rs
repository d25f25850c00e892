//! Commands that write files named inside another file: archive extraction (`tar
//! x`, `unzip`, `bsdtar x`) and patches (`git apply`, `git am`, `patch`). For each,
//! where the names come from, what is stripped from them and where they land; the
//! names themselves are read by [`super::payloads`].

use super::payloads::Format;
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
    /// An archive (`Some`, read as the tool reads it) or a patch.
    pub archive: Option<Format>,
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
        "7z" | "7za" | "7zz" | "7zr" => seven_zip(&name, args),
        "jar" => jar(args),
        n if n.starts_with("python") => python_module(args),
        // Extractors whose formats are not read: their names cannot be judged.
        "cpio" | "bsdcpio" if has_option(args, &["-i", "--extract"], 'i') => {
            Some(unread(&name, "its archive's format is not read"))
        }
        "pax" if has_option(args, &["-r"], 'r') => {
            Some(unread(&name, "its archive's format is not read"))
        }
        "ar" if args
            .first()
            .is_some_and(|a| a.text.trim_start_matches('-').contains('x')) =>
        {
            Some(unread(&name, "its archive's format is not read"))
        }
        "dpkg" | "dpkg-deb"
            if args.iter().any(|a| {
                matches!(
                    a.text.as_str(),
                    "-x" | "-X" | "--extract" | "--vextract" | "-R" | "--raw-extract"
                )
            }) =>
        {
            Some(unread(&name, "a package's files are not read"))
        }
        "unsquashfs" | "unar" | "aunpack" | "cabextract" | "unrar" | "unlzma" | "lha" | "arj"
        | "unace" | "unarj" => Some(unread(&name, "its archive's format is not read")),
        "atool" if has_option(args, &["-x", "-X", "--extract", "--extract-to"], 'x') => {
            Some(unread(&name, "its archive's format is not read"))
        }
        "ditto" if has_option(args, &["-x"], 'x') => {
            Some(unread(&name, "its archive's format is not read"))
        }
        "gem" if args.first().is_some_and(|a| a.text == "unpack") => {
            Some(unread(&name, "a gem's files are not read"))
        }
        _ => None,
    }
}

/// An extraction whose names cannot be read.
fn unread(name: &str, why: &str) -> Extraction {
    Extraction {
        program: name.to_string(),
        source: Source::Unknown(format!("`{name}`: {why}")),
        archive: Some(Format::Any),
        folder: None,
        strip: Strip::Components(0),
    }
}

/// Whether `args` hold one of `long` options or a short cluster with `letter`.
fn has_option(args: &[Word], long: &[&str], letter: char) -> bool {
    args.iter().any(|a| {
        let t = a.text.as_str();
        long.iter()
            .any(|l| t == *l || t.starts_with(&format!("{l}=")))
            || (t.starts_with('-') && !t.starts_with("--") && t[1..].contains(letter))
    })
}

/// `7z x|e ARCHIVE [-oDIR]`: `e` drops the folders (any suffix of a name may be
/// written).
fn seven_zip(name: &str, args: &[Word]) -> Option<Extraction> {
    let sub = args.first()?.text.to_ascii_lowercase();
    if sub != "x" && sub != "e" {
        return None;
    }
    let mut archive = None;
    let mut folder = None;
    for w in &args[1..] {
        if let Some(dir) = w.text.strip_prefix("-o") {
            folder = Some(value_of(w, dir));
        } else if !w.text.starts_with('-') && archive.is_none() {
            archive = Some(w.clone());
        }
    }
    Some(Extraction {
        program: name.to_string(),
        source: archive.map_or_else(
            || Source::Unknown(format!("`{name}` names no archive")),
            Source::File,
        ),
        archive: Some(Format::Any),
        folder,
        strip: if sub == "e" {
            Strip::AnySuffix
        } else {
            Strip::Components(0)
        },
    })
}

/// `jar xf ARCHIVE`, `jar -xf ARCHIVE`, `jar --extract --file=ARCHIVE` (a zip).
fn jar(args: &[Word]) -> Option<Extraction> {
    let first = args.first()?.text.trim_start_matches('-');
    let extract = (first.contains('x') && !first.starts_with('-'))
        || args.iter().any(|a| a.text == "--extract");
    if !extract {
        return None;
    }
    let file = args.iter().enumerate().find_map(|(i, w)| {
        if let Some(v) = w.text.strip_prefix("--file=") {
            return Some(value_of(w, v));
        }
        (i > 0 && !w.text.starts_with('-')).then(|| w.clone())
    });
    Some(Extraction {
        program: "jar".into(),
        source: file.map_or_else(
            || Source::Unknown("`jar` reads its archive from standard input".into()),
            Source::File,
        ),
        archive: Some(Format::Zip),
        folder: None,
        strip: Strip::Components(0),
    })
}

/// `python -m zipfile -e ARCHIVE DIR`, `python -m tarfile -e ARCHIVE [DIR]`.
fn python_module(args: &[Word]) -> Option<Extraction> {
    let m = args.iter().position(|a| a.text == "-m")?;
    let module = args.get(m + 1)?.text.as_str();
    let format = match module {
        "zipfile" => Format::Zip,
        "tarfile" => Format::Any,
        _ => return None,
    };
    let rest = &args[m + 2..];
    let e = rest
        .iter()
        .position(|a| a.text == "-e" || a.text == "--extract")?;
    Some(Extraction {
        program: format!("python -m {module}"),
        source: rest.get(e + 1).cloned().map_or_else(
            || Source::Unknown(format!("`python -m {module} -e` names no archive")),
            Source::File,
        ),
        archive: Some(format),
        folder: rest.get(e + 2).cloned(),
        strip: Strip::Components(0),
    })
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
    // An option that renames the members (`--transform`, `--one-top-level`).
    let mut renamed: Option<String> = None;
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
            .filter(|c| {
                matches!(
                    c,
                    'f' | 'C' | 'b' | 'T' | 'X' | 'N' | 'L' | 'K' | 'g' | 'V' | 'I' | 'F' | 'H'
                )
            })
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
            // GNU tar takes any unambiguous prefix (`--ext`, `--fil=`, `--dir`);
            // an ambiguous one is an error, so reading it as either is safe.
            let is = |full: &str, min: usize| key.len() >= min && full.starts_with(key);
            if is("extract", 3) || is("get", 2) {
                extract = true;
            } else if is("file", 2) {
                file = value();
            } else if is("directory", 3) {
                folder = value();
            } else if is("strip-components", 3) {
                strip = value().and_then(|v| v.text.parse().ok()).unwrap_or(0);
            } else if is("transform", 3) || is("xform", 2) || is("one-top-level", 3) {
                renamed = Some(format!("`{t}`"));
            }
        } else if let Some(cluster) = t.strip_prefix('-').filter(|c| !c.is_empty()) {
            // `-xzf FILE`, `-xzfFILE`, `-C DIR`, `-CDIR`.
            for (k, c) in cluster.char_indices() {
                match c {
                    'x' => extract = true,
                    'f' | 'C' | 'I' | 'F' | 'T' | 'X' | 'N' | 'g' | 'K' | 'L' | 'V' | 'b' | 'H' => {
                        let attached = &cluster[k + 1..];
                        let value = if attached.is_empty() {
                            i += 1;
                            args.get(i).cloned()
                        } else {
                            Some(value_of(&args[i], attached))
                        };
                        match c {
                            'f' => file = value,
                            'C' => folder = value,
                            _ => {}
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
        _ if renamed.is_some() => Source::Unknown(format!(
            "`{name}` renames the members ({})",
            renamed.unwrap_or_default()
        )),
        Some(w) if w.text == "-" => standard_input(inv, name),
        Some(w) => Source::File(w),
        // Without `-f` tar reads `$TAPE` or standard input.
        None => standard_input(inv, name),
    };
    Some(Extraction {
        program: name.to_string(),
        source,
        archive: Some(Format::Any),
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
        archive: Some(Format::Zip),
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
        archive: None,
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
        let w = &args[i];
        let t = w.text.as_str();
        // The option and its value (`--dir=X`, `--dir X`, `-dX`, `-d X`), by any
        // unambiguous GNU prefix of its long name. (`-o` and `--reject-file`
        // files are judged as output arguments.)
        let (option, attached) = if let Some(long) = t.strip_prefix("--") {
            let (key, value) = long
                .split_once('=')
                .map_or((long, None), |(k, v)| (k, Some(v)));
            let named = [
                ("dry-run", 2, "--dry-run"),
                ("check", 2, "--dry-run"),
                ("input", 2, "-i"),
                ("directory", 2, "-d"),
                ("strip", 2, "-p"),
                ("output", 2, "-o"),
                ("reject-file", 3, "-r"),
                ("prefix", 2, "-B"),
                ("basename-prefix", 2, "-Y"),
                ("suffix", 2, "-z"),
                ("ifdef", 2, "-D"),
                ("fuzz", 2, "-F"),
                ("version-control", 2, "-V"),
                ("quoting-style", 2, "-Q"),
            ]
            .iter()
            .find(|(full, min, _)| key.len() >= *min && full.starts_with(key))
            .map_or("", |(_, _, short)| *short);
            (named, value)
        } else if let (Some(o), Some(rest)) = (t.get(..2), t.get(2..))
            && o.starts_with('-')
            && o != "--"
        {
            (o, (!rest.is_empty()).then_some(rest))
        } else {
            ("", None)
        };
        let mut value = || match attached {
            Some(v) => Some(value_of(w, v)),
            None => {
                i += 1;
                args.get(i).cloned()
            }
        };
        match option {
            "--dry-run" | "-C" => return None,
            "-i" => input = value(),
            "-d" => folder = value(),
            "-p" => {
                strip = value()
                    .and_then(|v| v.text.parse().ok())
                    .map_or(Strip::AnySuffix, Strip::Components);
            }
            "-o" | "-r" | "-B" | "-Y" | "-z" | "-D" | "-F" | "-V" | "-Q" => {
                value();
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
        archive: None,
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
        // GNU prefixes (red-team round 7).
        assert_eq!(
            of("tar --ext --fil=a.tar --dir x"),
            Some(("tar".into(), file("a.tar"), file("x"), c(0)))
        );
        assert_eq!(of("tar --ge -f a.tar").map(|e| e.1), Some(file("a.tar")));
        assert_eq!(
            of("tar -xzf a.tgz --xform=s,a,.git/hooks/x,").map(|e| e.1),
            Some(None)
        );
        assert_eq!(
            of("tar -xf a.tar --one-top-level=.claude").map(|e| e.1),
            Some(None)
        );
        assert_eq!(of("tar -xIzstd -f a.tar").map(|e| e.1), Some(file("a.tar")));
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
        // Red-team round 7: other extractors.
        assert_eq!(
            of("7z x a.zip -oout"),
            Some(("7z".into(), file("a.zip"), file("out"), c(0)))
        );
        assert_eq!(of("jar xf a.jar").map(|e| e.1), Some(file("a.jar")));
        assert_eq!(
            of("python3 -m zipfile -e a.zip .").map(|e| (e.1, e.2)),
            Some((file("a.zip"), file(".")))
        );
        assert_eq!(of("cpio -id < a.cpio").map(|e| e.1), Some(None));
        assert_eq!(of("ar x lib.a").map(|e| e.1), Some(None));
        assert_eq!(of("cpio -o < list"), None);
        assert_eq!(of("python3 -m http.server"), None);
    }
}
