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

/// The members of an archive, told apart by its first bytes: tar, gzip-compressed
/// tar, or zip. Another format (xz, bzip2, zstd, 7z…) is an error naming it.
pub fn archive_members(file: &mut dyn Payload) -> Result<Vec<Member>, String> {
    let mut magic = [0u8; 6];
    let n = read_up_to(file, &mut magic)?;
    file.rewind().map_err(|e| e.to_string())?;
    match &magic[..n] {
        [0x1f, 0x8b, ..] => tar_members(flate2::read::GzDecoder::new(file)),
        [b'P', b'K', 3 | 5, 4 | 6, ..] => zip_members(file),
        [0xfd, b'7', b'z', b'X', b'Z', 0] => Err("xz compression is not read".into()),
        [b'B', b'Z', b'h', ..] => Err("bzip2 compression is not read".into()),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Err("zstd compression is not read".into()),
        [b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c] => Err("7z archives are not read".into()),
        _ => tar_members(file),
    }
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
        // A symbolic link stored by Info-ZIP: Unix mode 0o120000, its target the
        // member's data.
        let is_link = entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000);
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        drop(entry);
        let link = if is_link {
            let mut target = Vec::new();
            archive
                .by_index(i)
                .map_err(|e| format!("not a zip archive ({e})"))?
                .take(4096)
                .read_to_end(&mut target)
                .map_err(|e| format!("a link's target cannot be read ({e})"))?;
            Some(String::from_utf8_lossy(&target).into_owned())
        } else {
            None
        };
        out.push(Member { name, link });
    }
    Ok(out)
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
            match rest.split_once(" b/") {
                Some((a, b)) => {
                    push(unquote(a));
                    push(&format!("b/{}", unquote(b)));
                }
                None => push(unquote(rest)),
            }
        } else if let Some(name) = text
            .strip_prefix("+++ ")
            .or_else(|| text.strip_prefix("--- "))
        {
            diffs += 1;
            // A timestamp after a tab (`+++ b/x\t2026-01-01 …`).
            push(unquote(name.split('\t').next().unwrap_or(name)));
        } else if let Some(name) = ["rename to ", "copy to ", "rename from ", "copy from "]
            .iter()
            .find_map(|p| text.strip_prefix(p))
        {
            push(&format!("b/{}", unquote(name)));
        } else if let Some(name) = text.strip_prefix("Index: ") {
            push(name);
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

/// A name git wrote in quotes (`"a/x y"`), without them; escapes are kept.
fn unquote(name: &str) -> &str {
    let n = name.trim();
    n.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(n)
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
            archive_members(&mut Cursor::new(tar.clone())),
            Ok(want.clone())
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(archive_members(&mut Cursor::new(gz)), Ok(want));
    }

    #[test]
    fn zip_members_are_read() {
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default();
        z.start_file(".claude/settings.json", o).unwrap();
        z.write_all(b"{}").unwrap();
        let bytes = z.finish().unwrap().into_inner();
        assert_eq!(
            archive_members(&mut Cursor::new(bytes)),
            Ok(vec![Member::file(".claude/settings.json")])
        );
    }

    #[test]
    fn other_formats_and_garbage_are_errors() {
        let xz = b"\xfd7zXZ\0rest".to_vec();
        assert!(archive_members(&mut Cursor::new(xz)).is_err());
        assert!(archive_members(&mut Cursor::new(b"hello".to_vec())).is_err());
        assert!(archive_members(&mut Cursor::new(Vec::new())).is_err());
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
        assert_eq!(strip_components("b/.envrc", 1).as_deref(), Some(".envrc"));
        assert_eq!(strip_components("x", 1), None);
        assert_eq!(all_suffixes("a/b/c"), ["a/b/c", "b/c", "c"]);
    }
}
