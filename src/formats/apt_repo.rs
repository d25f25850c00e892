//! A flat apt repository (Debian's `sources.list(5)`, "flat repository format";
//! the Release file as in "DebianRepository/Format"): the `.deb` files with a
//! `Packages` index (each package's control stanza plus `Filename`, `Size` and its
//! digests), `Packages.gz`, and a `Release` that lists both indexes with their
//! sizes and digests. `InRelease` (the Release, cleartext-signed) and `Release.gpg`
//! (a detached signature) are made by the caller with the org's key: apt trusts a
//! repository, not a package, through the keyring its `signed-by` names.
//!
//! A device's source line: `deb [signed-by=/usr/share/keyrings/KEYRING.gpg] URL ./`.
//! Every byte is a function of the packages and the date given (gzip without name
//! or time), so a rebuild is the same repository.

use md5::Digest as _;
use std::io::Write;

/// One package of the repository.
pub struct RepoPackage<'a> {
    /// Its file name, next to the indexes.
    pub file_name: &'a str,
    pub bytes: &'a [u8],
    /// Its `control` file (the stanza ends with one newline).
    pub control: &'a str,
}

/// The repository's metadata files, each (name, bytes).
pub struct Indexes {
    pub packages: Vec<u8>,
    pub packages_gz: Vec<u8>,
    pub release: String,
}

/// What the Release file says about the repository.
pub struct ReleaseInfo<'a> {
    /// `Origin` and `Label`: who publishes it (one line).
    pub origin: &'a str,
    /// `Architectures`: the deb spellings of the packages' architectures.
    pub architectures: &'a [&'a str],
    /// `Date`, already formatted (`Mon, 01 Dec 2025 00:00:00 UTC`).
    pub date: &'a str,
}

/// Writes `Packages`, `Packages.gz` and `Release` for `packages`.
pub fn indexes(packages: &[RepoPackage<'_>], info: &ReleaseInfo<'_>) -> Indexes {
    let mut index = String::new();
    for (i, p) in packages.iter().enumerate() {
        if i > 0 {
            index.push('\n');
        }
        index.push_str(p.control.trim_end_matches('\n'));
        index.push('\n');
        index.push_str(&format!(
            "Filename: ./{}\nSize: {}\nMD5sum: {}\nSHA1: {}\nSHA256: {}\n",
            p.file_name,
            p.bytes.len(),
            hex::encode(md5::Md5::digest(p.bytes)),
            hex::encode(<sha1::Sha1 as sha1::Digest>::digest(p.bytes)),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(p.bytes)),
        ));
    }
    let packages = index.into_bytes();
    let packages_gz = gzip(&packages);
    let files = [
        ("Packages", &packages[..]),
        ("Packages.gz", &packages_gz[..]),
    ];
    // No Components line: a flat repository has none. Suite is not `stable`, which
    // a device's pins for Debian (`a=stable`) would match.
    let mut release = format!(
        "Origin: {origin}\nLabel: {origin}\nSuite: fleetkit\nCodename: fleetkit\nDate: {date}\nArchitectures: {arches}\nDescription: {origin}\n",
        origin = info.origin,
        date = info.date,
        arches = info.architectures.join(" "),
    );
    for (field, digest) in [
        (
            "MD5Sum",
            (|b: &[u8]| hex::encode(md5::Md5::digest(b))) as fn(&[u8]) -> String,
        ),
        ("SHA1", |b| {
            hex::encode(<sha1::Sha1 as sha1::Digest>::digest(b))
        }),
        ("SHA256", |b| {
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b))
        }),
    ] {
        release.push_str(field);
        release.push_str(":\n");
        for (name, bytes) in files {
            release.push_str(&format!(" {} {:>16} {name}\n", digest(bytes), bytes.len()));
        }
    }
    Indexes {
        packages,
        packages_gz,
        release,
    }
}

/// `gzip -9n`: no name, no time.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

/// `Mon, 01 Dec 2025 00:00:00 UTC`: the Release date as apt parses it (RFC 1123
/// with the zone named UTC, as Debian's archive writes it).
pub fn release_date(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] UTC"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_indexes_list_every_package_and_digest_every_index() {
        let control = "Package: a\nVersion: 1\nArchitecture: amd64\n";
        let packages = [
            RepoPackage {
                file_name: "a_1_amd64.deb",
                bytes: b"abc",
                control,
            },
            RepoPackage {
                file_name: "a_1_arm64.deb",
                bytes: b"",
                control: "Package: a\nVersion: 1\nArchitecture: arm64\n",
            },
        ];
        let out = indexes(
            &packages,
            &ReleaseInfo {
                origin: "Acme",
                architectures: &["amd64", "arm64"],
                date: "Mon, 01 Dec 2025 00:00:00 UTC",
            },
        );
        let text = String::from_utf8(out.packages.clone()).unwrap();
        assert!(text.starts_with(control), "{text}");
        assert!(text.contains(
            "Filename: ./a_1_amd64.deb\nSize: 3\nMD5sum: 900150983cd24fb0d6963f7d28e17f72\n"
        ));
        assert!(text.contains("\n\nPackage: a\nVersion: 1\nArchitecture: arm64\n"));
        assert!(text.contains(
            "SHA256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
        ));
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&out.packages_gz));
        assert!(
            out.release.contains(&format!(
                " {sha} {:>16} Packages.gz\n",
                out.packages_gz.len()
            )),
            "{}",
            out.release
        );
        assert!(
            out.release
                .contains("Date: Mon, 01 Dec 2025 00:00:00 UTC\n")
        );
        assert!(!out.release.contains("Components"));
        assert_eq!(
            release_date(time::macros::datetime!(2025-12-01 00:00 UTC)),
            "Mon, 01 Dec 2025 00:00:00 UTC"
        );
    }
}
