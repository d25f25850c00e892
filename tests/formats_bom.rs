//! The Bom writer against apple-bom's reader: every path, in mkbom's `./…` form,
//! with its type, mode, owner, size and checksum; the checksum is the one
//! `cksum(1)` prints.

use apple_bom::{BomPath, BomPathType, ParsedBom};
use fleetkit::formats::bom::{BomWriter, posix_cksum};
use std::io::Write;
use std::process::Command;

fn paths(bytes: &[u8]) -> Vec<BomPath> {
    ParsedBom::parse(bytes).unwrap().paths().unwrap()
}

#[test]
fn apple_bom_reads_every_path_with_mode_owner_size_and_checksum() {
    let mtime = time::macros::datetime!(2025-12-01 00:00 UTC);
    let mut w = BomWriter::new(mtime);
    let agent: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    w.add_file("usr/local/bin/fleetkit", &agent, 0o755, 0, 0)
        .unwrap();
    w.add_directory("Library/Application Support/fleetkit", 0o755, 0, 0)
        .unwrap();
    w.add_file(
        "Library/Application Support/fleetkit/bundle.json",
        b"{}",
        0o644,
        0,
        0,
    )
    .unwrap();
    w.add_file(
        "Library/LaunchDaemons/com.acme.fleetkit.sync.plist",
        b"<plist/>",
        0o644,
        0,
        0,
    )
    .unwrap();
    let bytes = w.finish();
    let listed = paths(&bytes);
    let names: Vec<&str> = listed.iter().map(|p| p.path()).collect();
    assert_eq!(
        names,
        [
            ".",
            "./Library",
            "./Library/Application Support",
            "./Library/Application Support/fleetkit",
            "./Library/Application Support/fleetkit/bundle.json",
            "./Library/LaunchDaemons",
            "./Library/LaunchDaemons/com.acme.fleetkit.sync.plist",
            "./usr",
            "./usr/local",
            "./usr/local/bin",
            "./usr/local/bin/fleetkit",
        ]
    );
    let agent_path = listed
        .iter()
        .find(|p| p.path() == "./usr/local/bin/fleetkit")
        .unwrap();
    assert!(matches!(agent_path.path_type(), BomPathType::File));
    assert_eq!(agent_path.file_mode() & 0o7777, 0o755);
    assert_eq!(agent_path.file_mode() & 0o170000, 0o100000);
    assert_eq!((agent_path.user_id(), agent_path.group_id()), (0, 0));
    assert_eq!(agent_path.size(), agent.len());
    assert_eq!(agent_path.crc32(), Some(posix_cksum(&agent)));
    let dir = listed.iter().find(|p| p.path() == "./usr/local").unwrap();
    assert!(matches!(dir.path_type(), BomPathType::Directory));
    assert_eq!(dir.file_mode() & 0o170000, 0o040000);
    // Deterministic.
    assert_eq!(bytes, w.finish());
}

#[test]
fn many_paths_span_several_linked_leaves() {
    let mut w = BomWriter::new(time::OffsetDateTime::UNIX_EPOCH);
    for i in 0..1000 {
        w.add_file(
            &format!("data/f{i:04}"),
            format!("{i}").as_bytes(),
            0o600,
            501,
            20,
        )
        .unwrap();
    }
    let listed = paths(&w.finish());
    assert_eq!(listed.len(), 1002); // ".", "./data" and the files
    assert!(
        listed
            .iter()
            .skip(2)
            .all(|p| p.user_id() == 501 && p.group_id() == 20)
    );
}

#[test]
fn the_checksum_is_what_cksum_prints() {
    for data in [&b""[..], b"a", b"fleetkit\n", &[0u8; 70_000][..]] {
        let mut child = Command::new("cksum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        let printed: u32 = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(posix_cksum(data), printed);
    }
}

#[test]
fn bad_paths_are_refused() {
    let mut w = BomWriter::new(time::OffsetDateTime::UNIX_EPOCH);
    for bad in ["", "/x", "a//b", "../x"] {
        assert!(w.add_file(bad, b"", 0o644, 0, 0).is_err(), "{bad:?}");
    }
}
