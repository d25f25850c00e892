//! The xar writer against independent readers: bsdtar (libarchive), 7z and the
//! apple-xar crate's reader (TOC checksum, file table, data).

mod support;

use fleetkit::formats::xar::{Encoding, XarWriter};
use std::path::Path;
use std::process::Command;
use support::tool;

fn sample() -> (XarWriter, Vec<(&'static str, Vec<u8>)>) {
    let mtime = time::macros::datetime!(2025-12-01 00:00 UTC);
    let mut w = XarWriter::new(mtime);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let files = vec![
        (
            "Distribution",
            b"<?xml version=\"1.0\"?>\n<installer-gui-script/>\n".to_vec(),
        ),
        ("base.pkg/PackageInfo", b"<pkg-info/>\n".to_vec()),
        ("base.pkg/Payload", big),
        ("base.pkg/Scripts", vec![]),
        (
            "Resources/de.lproj/Caf\u{e9} & <Bar>.txt",
            "ü漢".as_bytes().to_vec(),
        ),
    ];
    for (i, (path, data)) in files.iter().enumerate() {
        let encoding = if i % 2 == 0 {
            Encoding::Zlib
        } else {
            Encoding::Stored
        };
        w.add_file(path, data.clone(), 0o644, encoding).unwrap();
    }
    (w, files)
}

fn check_extracted(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (path, data) in files {
        let got = std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(&got, data, "{path}");
    }
}

#[test]
fn bsdtar_and_7z_list_and_extract_every_file() {
    let (w, files) = sample();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("test.xar");
    std::fs::write(&archive, w.finish().unwrap()).unwrap();

    let listed = tool(Command::new("bsdtar").arg("-tf").arg(&archive));
    for (path, _) in &files {
        assert!(
            listed.lines().any(|l| l == *path),
            "bsdtar does not list {path}:\n{listed}"
        );
    }
    let out = dir.path().join("bsdtar");
    std::fs::create_dir_all(&out).unwrap();
    tool(
        Command::new("bsdtar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&out),
    );
    check_extracted(&out, &files);

    let listed = tool(Command::new("7z").arg("l").arg(&archive));
    assert!(
        listed.contains("base.pkg/Payload") || listed.contains("base.pkg\\Payload"),
        "{listed}"
    );
    let out = dir.path().join("7z");
    tool(
        Command::new("7z")
            .arg("x")
            .arg("-y")
            .arg(format!("-o{}", out.display()))
            .arg(&archive),
    );
    check_extracted(&out, &files);
}

#[test]
fn apple_xar_reads_the_toc_checksum_and_the_data() {
    let (w, files) = sample();
    let bytes = w.finish().unwrap();
    let mut reader =
        apple_xar::reader::XarReader::new(std::io::Cursor::new(bytes.clone())).unwrap();
    assert!(reader.verify_table_of_contents_checksum().unwrap());
    let names: Vec<String> = reader
        .files()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for (path, data) in &files {
        assert!(names.iter().any(|n| n == path), "{path} not in {names:?}");
        let got = reader.get_file_data_from_path(path).unwrap().unwrap();
        assert_eq!(&got, data, "{path}");
    }
    // Deterministic: the same entries give the same bytes.
    assert_eq!(bytes, sample().0.finish().unwrap());
    // One byte changed in the TOC: the checksum no longer matches.
    let mut broken = bytes;
    broken[40] ^= 0x01;
    let verdict = apple_xar::reader::XarReader::new(std::io::Cursor::new(broken))
        .and_then(|mut r| r.verify_table_of_contents_checksum());
    assert!(!matches!(verdict, Ok(true)), "a changed TOC still verified");
}

#[test]
fn bad_paths_are_refused() {
    let mut w = XarWriter::new(time::OffsetDateTime::UNIX_EPOCH);
    for bad in ["", "/abs", "a//b", "../x", "a/./b"] {
        assert!(
            w.add_file(bad, vec![], 0o644, Encoding::Stored).is_err(),
            "{bad:?}"
        );
    }
    w.add_file("a/b", vec![1], 0o644, Encoding::Stored).unwrap();
    assert!(w.add_file("a/b", vec![2], 0o644, Encoding::Stored).is_err());
    assert!(
        w.add_file("a/b/c", vec![2], 0o644, Encoding::Stored)
            .is_err()
    );
}
