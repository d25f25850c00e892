//! What an archive or a patch will write: the names of its members, read from the
//! file before the command runs.
//!
//! `tar xzf release.tar.gz` and `git apply fix.patch` write files whose names only
//! the archive or the patch holds: one of them may be `.git/hooks/pre-commit` or
//! `.claude/settings.json`. The decision reads those names (tar, gzip-compressed
//! tar, zip, unified and git diffs) so that each is judged as a path the command
//! writes. What cannot be read (another compression, a file too large, standard
//! input) is reported, never taken as empty.

use std::io::{BufRead, BufReader, Read, Seek};

/// Most members judged; an archive with more is not analysed.
pub const MAX_MEMBERS: usize = 20_000;
/// Most bytes read from a (decompressed) tar stream or a patch.
pub const MAX_BYTES: u64 = 512 * 1024 * 1024;

/// A file a decision may read: an archive or a patch.
pub trait Payload: Read + Seek {}
impl<T: Read + Seek> Payload for T {}

/// What a member of an archive or patch writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its path inside the archive, as stored (`src/main.rs`, `./x`, `.claude/`).
    pub name: String,
    /// For a symbolic or hard link: what it points to (writes through it follow it).
    pub link: Option<String>,
}

/// Which readers a tool applies to an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Any format the tool recognises (tar, bsdtar, 7z): every reading counts.
    Any,
    /// Zip only (unzip, jar): a file that is not a zip is an error, since unzip
    /// then tries `NAME.zip`.
    Zip,
}

/// The members of an archive. A gzip stream is read as a compressed tar; other
/// files are read every way a tool may read them, and every reading counts: as
/// a tar from the start, and as a zip both by its central directory (unzip, 7z)
/// and by its local headers (bsdtar streams them), since a file can be several
/// at once (a tar with a zip appended; a zip whose two directories disagree).
/// Other compressions (xz, bzip2, zstd, 7z) are an error naming them.
pub fn archive_members(file: &mut dyn Payload, format: Format) -> Result<Vec<Member>, String> {
    let mut magic = [0u8; 6];
    let n = read_up_to(file, &mut magic)?;
    file.rewind().map_err(|e| e.to_string())?;
    let other = match &magic[..n] {
        [0x1f, 0x8b, ..] if format == Format::Any => {
            return tar_members(flate2::read::GzDecoder::new(file));
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Some("xz compression is not read"),
        [b'B', b'Z', b'h', ..] => Some("bzip2 compression is not read"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd compression is not read"),
        [b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c] => Some("7z archives are not read"),
        _ => None,
    };
    if let Some(why) = other {
        return Err(why.into());
    }
    let mut readings: Vec<Result<Vec<Member>, String>> = Vec::new();
    if format == Format::Any {
        readings.push(tar_members(&mut *file));
        file.rewind().map_err(|e| e.to_string())?;
    }
    readings.push(zip_members(&mut *file));
    file.rewind().map_err(|e| e.to_string())?;
    readings.push(zip_local_members(&mut *file));
    let mut out: Vec<Member> = Vec::new();
    let mut first_error = None;
    for reading in readings {
        match reading {
            Ok(members) => {
                for m in members {
                    if !out.contains(&m) {
                        out.push(m);
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if out.is_empty() {
        return Err(first_error.unwrap_or_else(|| "no members".into()));
    }
    if out.len() > MAX_MEMBERS {
        return Err(format!("more than {MAX_MEMBERS} members"));
    }
    Ok(out)
}

/// A zip's members as its local headers name them, read front to back.
fn zip_local_members(file: &mut dyn Payload) -> Result<Vec<Member>, String> {
    let mut stream = file.take(MAX_BYTES);
    let mut out = Vec::new();
    loop {
        match zip::read::read_zipfile_from_stream(&mut stream) {
            Ok(Some(mut entry)) => {
                if out.len() == MAX_MEMBERS {
                    return Err(format!("more than {MAX_MEMBERS} members"));
                }
                let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
                let link = if is_link(entry.unix_mode()) {
                    Some(link_target(&mut entry)?)
                } else {
                    None
                };
                out.push(Member { name, link });
            }
            Ok(None) => break,
            Err(e) if out.is_empty() => return Err(format!("not a zip archive ({e})")),
            // Past the last local header: what follows is not read this way.
            Err(_) => break,
        }
    }
    if out.is_empty() {
        return Err("not a zip archive (no local headers)".into());
    }
    Ok(out)
}

fn read_up_to(file: &mut dyn Payload, buf: &mut [u8]) -> Result<usize, String> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(n)
}

fn tar_members(stream: impl Read) -> Result<Vec<Member>, String> {
    let mut archive = tar::Archive::new(stream.take(MAX_BYTES));
    let mut out = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar archive ({e})"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("not a tar archive ({e})"))?;
        if out.len() == MAX_MEMBERS {
            return Err(format!("more than {MAX_MEMBERS} members"));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        out.push(Member { name, link });
    }
    if out.is_empty() {
        return Err("not a tar archive (no members)".into());
    }
    Ok(out)
}

fn zip_members(file: &mut dyn Payload) -> Result<Vec<Member>, String> {
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("not a zip archive ({e})"))?;
    if archive.len() > MAX_MEMBERS {
        return Err(format!("more than {MAX_MEMBERS} members"));
    }
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| format!("not a zip archive ({e})"))?;
        let link = is_link(entry.unix_mode());
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        drop(entry);
        let link = if link {
            let mut entry = archive
                .by_index(i)
                .map_err(|e| format!("not a zip archive ({e})"))?;
            Some(link_target(&mut entry)?)
        } else {
            None
        };
        out.push(Member { name, link });
    }
    Ok(out)
}

/// A symbolic link as Info-ZIP stores it: Unix mode 0o120000.
fn is_link(mode: Option<u32>) -> bool {
    mode.is_some_and(|m| m & 0o170000 == 0o120000)
}

/// A zip link member's target: its data.
fn link_target(entry: &mut dyn Read) -> Result<String, String> {
    let mut target = Vec::new();
    entry
        .take(4096)
        .read_to_end(&mut target)
        .map_err(|e| format!("a link's target cannot be read ({e})"))?;
    Ok(String::from_utf8_lossy(&target).into_owned())
}

/// The files a patch (unified or git diff, or a mailbox of them for `git am`)
/// creates, changes, renames or deletes, as written in it (`a/src/x.rs`). `strip`
/// is applied by the caller.
pub fn patch_targets(file: &mut dyn Payload) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut reader = BufReader::new(file.take(MAX_BYTES));
    let mut line = Vec::new();
    let mut diffs = 0usize;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        let mut push = |name: &str| {
            let name = name.trim();
            if !name.is_empty() && name != "/dev/null" && !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
        };
        if let Some(rest) = text.strip_prefix("diff --git ") {
            diffs += 1;
            // `a/x b/x`; names with blanks are quoted or ambiguous: both halves
            // and the whole are taken.
            let halves = if rest.starts_with('"') {
                rest.split_once("\" \"")
                    .map(|(a, b)| (format!("{a}\""), format!("\"{b}")))
            } else {
                rest.split_once(" b/")
                    .map(|(a, b)| (a.to_string(), format!("b/{b}")))
            };
            match halves {
                Some((a, b)) => {
                    push(&unquote(&a));
                    push(&unquote(&b));
                }
                None => push(&unquote(rest)),
            }
        } else if let Some(name) = text
            .strip_prefix("+++ ")
            .or_else(|| text.strip_prefix("--- "))
            .filter(|n| !is_context_range(n))
        {
            diffs += 1;
            // A timestamp after a tab (`+++ b/x\t2026-01-01 …`).
            push(&unquote(name.split('\t').next().unwrap_or(name)));
        } else if let Some(name) = ["rename to ", "copy to ", "rename from ", "copy from "]
            .iter()
            .find_map(|p| text.strip_prefix(p))
        {
            push(&format!("b/{}", unquote(name)));
        } else if let Some(name) = text.strip_prefix("Index: ") {
            push(name);
        } else if let Some(name) = text.strip_prefix("*** ").filter(|n| !is_context_range(n)) {
            // A context diff's old name (`*** a/x\tdate`); its new one is the
            // `--- ` line after it.
            diffs += 1;
            push(&unquote(name.split('\t').next().unwrap_or(name)));
        } else if text.starts_with("new file mode 120000") || text.starts_with("new mode 120000") {
            // A link the patch creates lets its later files land where it points
            // (GNU patch follows it).
            return Err("it creates a symbolic link".into());
        } else if text
            .to_ascii_lowercase()
            .strip_prefix("content-transfer-encoding:")
            .is_some_and(|e| {
                let e = e.trim();
                e != "7bit" && e != "8bit" && e != "binary"
            })
        {
            // `git am` decodes the mail first: the names are not in its text.
            return Err("its mail is encoded (quoted-printable or base64)".into());
        }
        if out.len() > MAX_MEMBERS {
            return Err(format!("more than {MAX_MEMBERS} files"));
        }
    }
    if diffs == 0 {
        return Err("no diff in it".into());
    }
    Ok(out)
}

/// A context diff's hunk range (`1,3 ****`), not a file name.
fn is_context_range(rest: &str) -> bool {
    rest.trim_end_matches(['*', '-'])
        .trim()
        .chars()
        .all(|c| c.is_ascii_digit() || c == ',')
}

/// A name as git and GNU patch write it: in double quotes with C escapes
/// (`"b/\056claude/x"` is `b/.claude/x`) when it holds odd bytes.
fn unquote(name: &str) -> String {
    let n = name.trim();
    let Some(inner) = n.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return n.to_string();
    };
    let b = inner.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        let octal = b[i + 1..]
            .iter()
            .take(3)
            .take_while(|d| (b'0'..=b'7').contains(d))
            .count();
        if octal > 0 {
            let digits = std::str::from_utf8(&b[i + 1..i + 1 + octal]).unwrap_or("0");
            out.push(u8::from_str_radix(digits, 8).unwrap_or(0));
            i += 1 + octal;
            continue;
        }
        out.push(match c {
            b'n' => b'\n',
            b't' => b'\t',
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'v' => 11,
            b'r' => b'\r',
            other => other,
        });
        i += 2;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name` without its first `strip` components (`patch -p1`, `tar
/// --strip-components`); `None` when it has no more.
pub fn strip_components(name: &str, strip: usize) -> Option<String> {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    (parts.len() > strip).then(|| parts[strip..].join("/"))
}

/// Every way `patch` without `-p` may name the file: each suffix of the name
/// (GNU patch takes the basename unless the folders exist).
pub fn all_suffixes(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    (0..parts.len()).map(|k| parts[k..].join("/")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    impl Member {
        fn file(name: impl Into<String>) -> Self {
            Self {
                name: name.into(),
                link: None,
            }
        }
    }

    fn tar_of(names: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, link) in names {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            match link {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    b.append_link(&mut h, name, target).unwrap();
                }
                None => b.append_data(&mut h, name, &[][..]).unwrap(),
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn tar_and_gzip_members_are_read() {
        let tar = tar_of(&[
            ("app/.git/hooks/pre-commit", None),
            ("app/l", Some("/etc/x")),
        ]);
        let want = vec![
            Member::file("app/.git/hooks/pre-commit"),
            Member {
                name: "app/l".into(),
                link: Some("/etc/x".into()),
            },
        ];
        assert_eq!(
            archive_members(&mut Cursor::new(tar.clone()), Format::Any),
            Ok(want.clone())
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(archive_members(&mut Cursor::new(gz), Format::Any), Ok(want));
    }

    #[test]
    fn zip_members_are_read() {
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default();
        z.start_file(".claude/settings.json", o).unwrap();
        z.write_all(b"{}").unwrap();
        let bytes = z.finish().unwrap().into_inner();
        assert_eq!(
            archive_members(&mut Cursor::new(bytes.clone()), Format::Zip),
            Ok(vec![Member::file(".claude/settings.json")])
        );
    }

    #[test]
    fn other_formats_and_garbage_are_errors() {
        let xz = b"\xfd7zXZ\0rest".to_vec();
        assert!(archive_members(&mut Cursor::new(xz), Format::Any).is_err());
        assert!(archive_members(&mut Cursor::new(b"hello".to_vec()), Format::Any).is_err());
        assert!(archive_members(&mut Cursor::new(Vec::new()), Format::Any).is_err());
    }

    #[test]
    fn patch_targets_are_read() {
        let p = "From x\nSubject: y\n\ndiff --git a/src/x.rs b/src/x.rs\n--- a/src/x.rs\n+++ b/src/x.rs\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/old b/new\nrename from old\nrename to .envrc\n--- /dev/null\n+++ b/.claude/settings.json\t2026-01-01\n";
        let t = patch_targets(&mut Cursor::new(p.as_bytes().to_vec())).unwrap();
        for want in [
            "a/src/x.rs",
            "b/src/x.rs",
            "b/.envrc",
            "b/.claude/settings.json",
        ] {
            assert!(t.iter().any(|n| n == want), "{want} in {t:?}");
        }
        assert!(patch_targets(&mut Cursor::new(b"no diff".to_vec())).is_err());
        // Red-team round 7: escaped names, context diffs, links, encoded mail.
        let q = "--- /dev/null\n+++ \"b/\\056git/hooks/pre-commit\"\n";
        let t = patch_targets(&mut Cursor::new(q.as_bytes().to_vec())).unwrap();
        assert_eq!(t, ["b/.git/hooks/pre-commit"]);
        let ctx = "*** .envrc\t2026\n--- docs/x.txt\t2026\n***************\n*** 1,3 ****\n";
        let t = patch_targets(&mut Cursor::new(ctx.as_bytes().to_vec())).unwrap();
        assert_eq!(t, [".envrc", "docs/x.txt"]);
        for bad in [
            "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n",
            "Content-Transfer-Encoding: quoted-printable\n\n--- a/x\n+++ b/=2Eenvrc\n",
        ] {
            assert!(
                patch_targets(&mut Cursor::new(bad.as_bytes().to_vec())).is_err(),
                "{bad}"
            );
        }
        assert_eq!(strip_components("b/.envrc", 1).as_deref(), Some(".envrc"));
        assert_eq!(strip_components("x", 1), None);
        assert_eq!(all_suffixes("a/b/c"), ["a/b/c", "b/c", "c"]);
    }
}
