//! The cabinet writer against independent readers: gcab (wixl's library), cabextract
//! (libmspack, which checks every block's checksum), 7-Zip and the cab crate.

mod support;

use fleetkit::formats::cab::{self, CabFile};
use std::path::Path;
use std::process::Command;
use support::tool;

/// Bytes that compress (a binary-like pattern) then bytes that do not (xorshift),
/// so the cabinet holds both deflated and stored blocks.
fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if i < len / 2 {
                ((i / 7) % 251) as u8 ^ (i % 3) as u8
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

struct Fixture {
    names: Vec<&'static str>,
    data: Vec<Vec<u8>>,
}

fn fixture() -> Fixture {
    Fixture {
        // A file of several blocks ending mid-block, one smaller than a block that
        // straddles a block boundary, an empty one, one exactly one block long.
        names: vec!["FleetkitExe", "AgentYaml", "Empty", "BundleJson"],
        data: vec![
            mixed(300_001, 7),
            b"org: \"acme\"\nteam: \"Plat\\\"form \xc3\xbc\"\n".repeat(900),
            Vec::new(),
            mixed(32_768, 11),
        ],
    }
}

fn write(f: &Fixture, threads: usize) -> Vec<u8> {
    let files: Vec<CabFile<'_>> = f
        .names
        .iter()
        .zip(&f.data)
        .map(|(name, data)| CabFile { name, data })
        .collect();
    cab::write(
        &files,
        time::macros::datetime!(2025-12-01 10:20:30),
        threads,
    )
    .unwrap()
}

fn assert_extracted(dir: &Path, f: &Fixture) {
    for (name, data) in f.names.iter().zip(&f.data) {
        let got = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name}: extracted bytes differ");
    }
}

#[test]
fn gcab_lists_and_extracts_every_file() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.cab");
    std::fs::write(&path, write(&f, 0)).unwrap();
    let listing = tool(Command::new("gcab").arg("-l").arg(&path));
    for (name, data) in f.names.iter().zip(&f.data) {
        let line = listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"));
        // name, size, date, time, attributes
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields[1..],
            [&data.len().to_string(), "2025-12-01", "10:20:30", "0x20"],
            "{line}"
        );
    }
    let out = dir.path().join("gcab");
    std::fs::create_dir(&out).unwrap();
    tool(
        Command::new("gcab")
            .arg("-x")
            .arg("-C")
            .arg(&out)
            .arg(&path),
    );
    assert_extracted(&out, &f);
}

#[test]
fn cabextract_checks_the_block_checksums_and_extracts() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.cab");
    let bytes = write(&f, 0);
    std::fs::write(&path, &bytes).unwrap();
    let tested = tool(Command::new("cabextract").arg("-t").arg(&path));
    assert!(tested.contains("All done, no errors"), "{tested}");
    let out = dir.path().join("x");
    tool(Command::new("cabextract").arg("-d").arg(&out).arg(&path));
    assert_extracted(&out, &f);

    // A changed byte inside the first block's compressed data: the checksum (or
    // the inflate) fails, and cabextract says so.
    let mut bad = bytes.clone();
    let first_block = u32::from_le_bytes(bad[36..40].try_into().unwrap()) as usize;
    bad[first_block + 8 + 40] ^= 0x20;
    let bad_path = dir.path().join("bad.cab");
    std::fs::write(&bad_path, &bad).unwrap();
    let r = Command::new("cabextract")
        .arg("-t")
        .arg(&bad_path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "a corrupted cabinet passed:\n{said}");
    assert!(
        said.contains("checksum") || said.contains("error"),
        "{said}"
    );
}

#[test]
fn seven_zip_tests_and_extracts() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.cab");
    std::fs::write(&path, write(&f, 0)).unwrap();
    let tested = tool(Command::new("7z").arg("t").arg(&path));
    assert!(tested.contains("Everything is Ok"), "{tested}");
    let out = dir.path().join("7z");
    tool(
        Command::new("7z")
            .arg("x")
            .arg("-y")
            .arg(format!("-o{}", out.display()))
            .arg(&path),
    );
    assert_extracted(&out, &f);
}

#[test]
fn the_cab_crate_reads_folder_and_files() {
    use std::io::Read;
    let f = fixture();
    let bytes = write(&f, 0);
    let mut cabinet = ::cab::Cabinet::new(std::io::Cursor::new(bytes)).unwrap();
    {
        let folders: Vec<_> = cabinet.folder_entries().collect();
        assert_eq!(folders.len(), 1);
        assert_eq!(folders[0].compression_type(), ::cab::CompressionType::MsZip);
        let names: Vec<&str> = folders[0].file_entries().map(|e| e.name()).collect();
        assert_eq!(names, f.names);
    }
    for (name, data) in f.names.iter().zip(&f.data) {
        let mut got = Vec::new();
        cabinet
            .read_file(name)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == *data, "{name}");
    }
}

#[test]
fn the_bytes_are_the_same_on_one_thread_or_many() {
    let f = fixture();
    let one = write(&f, 1);
    assert_eq!(one, write(&f, 2));
    assert_eq!(one, write(&f, 5));
}
