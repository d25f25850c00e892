//! The Debian binary package (`deb(5)`): an `ar` archive of `debian-binary`
//! (`2.0\n`), `control.tar.xz` and `data.tar.xz`, in that order. The `ar` and `tar`
//! crates write the containers; this module owns what makes the package the same
//! bytes every time and acceptable to dpkg and lintian:
//!
//! - every header field set here, never read from the file system: owner root:root
//!   (uid and gid 0), the given mtime (`SOURCE_DATE_EPOCH`), explicit modes;
//! - entries sorted, the root `./` and each parent directory as its own entry
//!   ending in `/` (the tar crate writes the other paths without dpkg-deb's `./`;
//!   dpkg and lintian read both);
//! - xz at level 6 in fixed 1 MiB blocks, on two threads (the bytes depend on the
//!   block size, not on the threads or cores); lintian refuses zstd members.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// One file of the package's data or control archive.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// Relative path without a leading `/` or `./` (`usr/bin/fleetkit`, `postinst`).
    pub path: String,
    pub bytes: &'a [u8],
    pub mode: u32,
}

/// Writes the package: `control` holds `control`, `md5sums`, `conffiles` and the
/// maintainer scripts; `data` the installed files (their parent directories are
/// added, mode 0755).
pub fn write(control: &[Member<'_>], data: &[Member<'_>], mtime: u64) -> io::Result<Vec<u8>> {
    let control_tar = xz(&tar(control, mtime)?)?;
    let data_tar = xz(&tar(data, mtime)?)?;
    let mut out = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar.xz", &control_tar),
        ("data.tar.xz", &data_tar),
    ] {
        let mut header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(0o100644);
        out.append(&header, bytes)?;
    }
    out.into_inner()
}

/// A tar of `members` and their parent directories, in path order, with every
/// header field fixed.
fn tar(members: &[Member<'_>], mtime: u64) -> io::Result<Vec<u8>> {
    // Path → (bytes, mode); `None` bytes for a directory.
    let mut entries: BTreeMap<String, (Option<&[u8]>, u32)> = BTreeMap::new();
    entries.insert("./".into(), (None, 0o755));
    for m in members {
        let path = m.path.trim_start_matches("./").trim_start_matches('/');
        let mut parent = String::from("./");
        let parts: Vec<&str> = path.split('/').collect();
        for dir in &parts[..parts.len().saturating_sub(1)] {
            parent.push_str(dir);
            parent.push('/');
            entries.entry(parent.clone()).or_insert((None, 0o755));
        }
        entries.insert(format!("./{path}"), (Some(m.bytes), m.mode));
    }
    let mut builder = tar::Builder::new(Vec::new());
    for (path, (bytes, mode)) in &entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        header.set_mode(*mode);
        match bytes {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, path, *bytes)?;
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, path, io::empty())?;
            }
        }
    }
    builder.into_inner()
}

fn xz(bytes: &[u8]) -> io::Result<Vec<u8>> {
    xz_on(bytes, XZ_THREADS)
}

/// Threads of the xz encoder: a constant, not the machine's core count (the bytes
/// do not depend on it — `xz_writes_the_same_bytes_on_any_number_of_threads` — but
/// a constant keeps memory and timing the same everywhere).
const XZ_THREADS: u32 = 2;

/// xz -6 (CRC64, as xz writes) in blocks of 1 MiB, on `threads` threads. liblzma's
/// multi-threaded encoder cuts the input at fixed block sizes, so its output
/// depends on the block size, never on the thread count; 1 MiB blocks (instead of
/// the default 24 MiB, one block for a whole agent) let both cores compress the
/// agent, for a file a few KB larger.
fn xz_on(bytes: &[u8], threads: u32) -> io::Result<Vec<u8>> {
    let stream = xz2::stream::MtStreamBuilder::new()
        .preset(6)
        .threads(threads)
        .block_size(1 << 20)
        .check(xz2::stream::Check::Crc64)
        .encoder()
        .map_err(io::Error::other)?;
    let mut encoder = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// The `md5sums` control file: `<md5>  <path>` for each regular file, in path order
/// (dpkg --verify and debsums read it).
pub fn md5sums(data: &[Member<'_>]) -> String {
    use md5::{Digest, Md5};
    let lines: BTreeMap<&str, String> = data
        .iter()
        .map(|m| {
            let path = m.path.trim_start_matches("./").trim_start_matches('/');
            (
                path,
                format!("{}  {path}\n", hex::encode(Md5::digest(m.bytes))),
            )
        })
        .collect();
    lines.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member<'a>(path: &str, bytes: &'a [u8], mode: u32) -> Member<'a> {
        Member {
            path: path.into(),
            bytes,
            mode,
        }
    }

    #[test]
    fn the_archive_has_the_three_members_in_order_with_fixed_headers() {
        let data = [member("usr/bin/tool", b"#!/bin/sh\n", 0o755)];
        let control = [member("control", b"Package: x\n", 0o644)];
        let deb = write(&control, &data, 1_764_547_200).unwrap();
        let mut archive = ar::Archive::new(&deb[..]);
        let mut names = Vec::new();
        while let Some(entry) = archive.next_entry() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(
                (h.mtime(), h.uid(), h.gid(), h.mode()),
                (1_764_547_200, 0, 0, 0o100644)
            );
            names.push(String::from_utf8(h.identifier().to_vec()).unwrap());
        }
        assert_eq!(names, ["debian-binary", "control.tar.xz", "data.tar.xz"]);
        assert_eq!(deb, write(&control, &data, 1_764_547_200).unwrap());
    }

    #[test]
    fn parents_come_first_and_every_header_is_root_owned() {
        let data = [
            member("usr/share/doc/x/copyright", b"c", 0o644),
            member("usr/bin/tool", b"t", 0o755),
        ];
        let raw = tar(&data, 7).unwrap();
        let mut archive = tar::Archive::new(&raw[..]);
        let listed: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
                assert_eq!(h.mtime().unwrap(), 7);
                assert_eq!(h.username().unwrap(), Some("root"));
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                )
            })
            .collect();
        let paths: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "./",
                "usr/",
                "usr/bin/",
                "usr/bin/tool",
                "usr/share/",
                "usr/share/doc/",
                "usr/share/doc/x/",
                "usr/share/doc/x/copyright"
            ]
        );
        assert_eq!(listed[3].1, 0o755);
    }

    #[test]
    fn xz_writes_the_same_bytes_on_any_number_of_threads() {
        // 3 MiB of compressible but varied data: three blocks.
        let data: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 27) as u8)
            .collect();
        let one = xz_on(&data, 1).unwrap();
        for threads in [2, 3, 4] {
            assert_eq!(xz_on(&data, threads).unwrap(), one, "{threads} threads");
        }
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&one[..]), &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn md5sums_lists_each_file_once_in_path_order() {
        let data = [member("b/f", b"", 0o644), member("a/f", b"abc", 0o644)];
        assert_eq!(
            md5sums(&data),
            "900150983cd24fb0d6963f7d28e17f72  a/f\nd41d8cd98f00b204e9800998ecf8427e  b/f\n"
        );
    }
}
