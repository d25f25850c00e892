//! The deb target: one `.deb` per Linux agent given (amd64, arm64), written by
//! fleetkit itself (no dpkg-deb, no fpm): the files of [`super::linux_package`], a
//! `control` file, `md5sums`, `conffiles` (every file under /etc) and the
//! maintainer scripts of `packaging/deb/` (postinst, prerm, postrm), plus what Debian
//! policy asks of every package: `copyright` and a compressed `changelog` in
//! /usr/share/doc/<package>/, and lintian overrides with their reasons.
//!
//! The package is not signed: apt trusts repositories, not files. With `--apt-repo`
//! the output folder is also a flat apt repository of the packages
//! ([`crate::formats::apt_repo`]), its Release signed with the org's package key
//! (`InRelease`, `Release.gpg`), and the key as the binary keyring devices name in
//! `signed-by` (`<package>-archive-keyring.gpg`).

use super::linux_package::{self, Family, Package, PackageFile};
use super::{
    Artefact, Contents, OutFile, Result, Syntax, Target, TargetError, environment, render,
};
use crate::build::payload::Payload;
use crate::formats::apt_repo;
use crate::formats::deb::{self, Member};
use std::io::Write;
use std::sync::Arc;

const SCRIPTS: &[(&str, &str)] = &[
    ("postinst", include_str!("../../packaging/deb/postinst")),
    ("prerm", include_str!("../../packaging/deb/prerm")),
    ("postrm", include_str!("../../packaging/deb/postrm")),
    ("copyright", include_str!("../../packaging/deb/copyright")),
    ("changelog", include_str!("../../packaging/deb/changelog")),
    (
        "lintian-overrides",
        include_str!("../../packaging/deb/lintian-overrides"),
    ),
];

/// An apt repository must be signed: apt refuses an unsigned one unless each device
/// is told `trusted=yes`, which would trust anyone who can answer for the URL.
pub fn check(payload: &Payload) -> Result<()> {
    if payload.apt_repo && payload.package_signing_key.is_none() {
        return Err(TargetError::Option {
            flag: "--apt-repo",
            reason: "an apt repository must be signed, and no package-signing key was given".into(),
            help: "give --package-signing-key FILE (an ASCII-armored OpenPGP secret key: `gpg --armor --export-secret-keys KEYID`)".into(),
        });
    }
    Ok(())
}

pub fn build(payload: &Payload) -> Result<Artefact> {
    let mut files = Vec::new();
    let mut built = Vec::new();
    for agent in linux_package::lean_agents(payload, Target::Deb)? {
        let package = linux_package::package(payload, agent, Family::Debian)?;
        let (bytes, control) = write(payload, &package)?;
        let bytes = Arc::new(bytes);
        files.push(OutFile {
            path: file_name(&package),
            contents: Contents::Built(Arc::clone(&bytes)),
            mode: super::FILE_MODE,
        });
        built.push((package, bytes, control));
    }
    if payload.apt_repo {
        check(payload)?;
        files.extend(apt_repository(payload, &built)?);
    }
    Ok(Artefact {
        target: Target::Deb,
        files,
        notes: vec![],
    })
}

/// `<package>_<version>_<arch>.deb`, as dpkg-name names it.
pub fn file_name(p: &Package) -> String {
    format!("{}_{}_{}.deb", p.name, p.version, p.platform.deb_arch())
}

/// The flat apt repository of `built` (package, bytes, control file): its indexes,
/// the signed Release, and the keyring that verifies it.
fn apt_repository(
    payload: &Payload,
    built: &[(Package, Arc<Vec<u8>>, String)],
) -> Result<Vec<OutFile>> {
    let Some(key) = &payload.package_signing_key else {
        return Ok(vec![]);
    };
    let names: Vec<String> = built.iter().map(|(p, ..)| file_name(p)).collect();
    let packages: Vec<apt_repo::RepoPackage<'_>> = built
        .iter()
        .zip(&names)
        .map(|((_, bytes, control), name)| apt_repo::RepoPackage {
            file_name: name,
            bytes,
            control,
        })
        .collect();
    let mut architectures: Vec<&str> = built.iter().map(|(p, ..)| p.platform.deb_arch()).collect();
    architectures.dedup();
    let origin = linux_package::one_line(&payload.display_name);
    let indexes = apt_repo::indexes(
        &packages,
        &apt_repo::ReleaseInfo {
            origin: &origin,
            architectures: &architectures,
            date: &apt_repo::release_date(payload.build_time),
        },
    );
    let time = u32::try_from(payload.build_time.unix_timestamp().max(0)).unwrap_or(u32::MAX);
    let signing = |e: crate::pki::package_key::PackageKeyError| TargetError::Template {
        name: "apt repository signature".into(),
        reason: e.to_string(),
    };
    let in_release = key.clearsign(&indexes.release, time).map_err(signing)?;
    let release_gpg = key
        .detached(indexes.release.as_bytes(), time)
        .map_err(signing)?;
    let keyring = key.public_key_binary().map_err(signing)?;
    let file = |path: String, bytes: Vec<u8>| OutFile {
        path,
        contents: Contents::Built(Arc::new(bytes)),
        mode: super::FILE_MODE,
    };
    Ok(vec![
        file("Packages".into(), indexes.packages),
        file("Packages.gz".into(), indexes.packages_gz),
        file("Release".into(), indexes.release.into_bytes()),
        file("InRelease".into(), in_release.into_bytes()),
        file("Release.gpg".into(), release_gpg.into_bytes()),
        file(keyring_file_name(&payload.org), keyring),
    ])
}

/// `<package>-archive-keyring.gpg`, Debian's name for a repository's keyring.
pub fn keyring_file_name(org: &str) -> String {
    format!("{}-archive-keyring.gpg", linux_package::package_name(org))
}

/// The package's bytes and its `control` file.
fn write(payload: &Payload, p: &Package) -> Result<(Vec<u8>, String)> {
    let env = environment(SCRIPTS, Syntax::Jinja)?;
    let ctx = minijinja::context! {
        package => p.name.clone(),
        version => p.version.clone(),
        org => payload.org.clone(),
        maintainer => p.maintainer.clone(),
        agent_version => payload.agent_version.clone(),
        bundle_version => payload.bundle_version,
        ca_entry => p.ca_entry.clone(),
        date => rfc2822(payload.build_time),
        // The entry, wrapped to Debian's 80 columns under its `  * ` bullet.
        entry => wrap(
            &linux_package::one_line(&format!(
                "Policy bundle v{} of {}, fleetkit agent {}.",
                payload.bundle_version, payload.org, payload.agent_version
            )),
            74,
        )
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n    "),
        year => payload.build_time.year(),
    };
    let doc = format!("/usr/share/doc/{}", p.name);
    let mut installed: Vec<PackageFile> = p.files.clone();
    let text_file = |path: String, text: String| PackageFile {
        path,
        bytes: Arc::new(text.into_bytes()),
        mode: 0o644,
        config: false,
    };
    installed.push(text_file(
        format!("{doc}/copyright"),
        render(&env, "copyright", &ctx)?,
    ));
    installed.push(PackageFile {
        path: format!("{doc}/changelog.gz"),
        bytes: Arc::new(gzip_max(render(&env, "changelog", &ctx)?.as_bytes())),
        mode: 0o644,
        config: false,
    });
    installed.push(text_file(
        format!("/usr/share/lintian/overrides/{}", p.name),
        render(&env, "lintian-overrides", &ctx)?,
    ));

    let data: Vec<Member<'_>> = installed
        .iter()
        .map(|f| Member {
            path: f.path.trim_start_matches('/').to_string(),
            bytes: &f.bytes,
            mode: f.mode,
        })
        .collect();
    let conffiles: String = installed
        .iter()
        .filter(|f| f.config)
        .map(|f| format!("{}\n", f.path))
        .collect();
    // The conffiles' sums are dpkg's own business (dh_md5sums leaves them out too).
    let sums = deb::md5sums(
        &data
            .iter()
            .zip(&installed)
            .filter(|(_, f)| !f.config)
            .map(|(m, _)| m.clone())
            .collect::<Vec<_>>(),
    );
    let control = control(p, &installed);
    let scripts: Vec<(&str, String)> = ["postinst", "prerm", "postrm"]
        .into_iter()
        .map(|name| Ok((name, render(&env, name, &ctx)?)))
        .collect::<Result<_>>()?;
    let mut members = vec![
        Member {
            path: "control".into(),
            bytes: control.as_bytes(),
            mode: 0o644,
        },
        Member {
            path: "md5sums".into(),
            bytes: sums.as_bytes(),
            mode: 0o644,
        },
        Member {
            path: "conffiles".into(),
            bytes: conffiles.as_bytes(),
            mode: 0o644,
        },
    ];
    for (name, text) in &scripts {
        members.push(Member {
            path: (*name).into(),
            bytes: text.as_bytes(),
            mode: 0o755,
        });
    }
    let mtime = payload.build_time.unix_timestamp().max(0) as u64;
    let bytes = deb::write(&members, &data, mtime).map_err(|e| TargetError::Template {
        name: "deb".into(),
        reason: e.to_string(),
    })?;
    Ok((bytes, control))
}

/// The `control` file. Every value is one line ([`linux_package::one_line`]); the
/// description's paragraphs are continuation lines, a ` .` between them.
fn control(p: &Package, installed: &[PackageFile]) -> String {
    // dpkg-gencontrol's estimate: KiB per file rounded up, one per directory.
    let mut dirs = std::collections::BTreeSet::new();
    for f in installed {
        let mut path = f.path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            if parent.is_empty() {
                break;
            }
            dirs.insert(parent.to_string());
            path = parent;
        }
    }
    let kib: u64 = installed
        .iter()
        .map(|f| (f.bytes.len() as u64).div_ceil(1024))
        .sum::<u64>()
        + dirs.len() as u64;
    let description: Vec<String> = p
        .description
        .iter()
        .map(|para| wrap(&linux_package::one_line(para), 79))
        .collect();
    format!(
        "Package: {name}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {maintainer}\n\
         Installed-Size: {kib}\n\
         Depends: libc6 (>= 2.17)\n\
         Recommends: ca-certificates\n\
         Provides: fleetkit-agent\n\
         Conflicts: fleetkit-agent\n\
         Replaces: fleetkit-agent\n\
         Section: admin\n\
         Priority: optional\n\
         Description: {summary}\n\
         {description}\n",
        name = p.name,
        version = p.version,
        arch = p.platform.deb_arch(),
        maintainer = p.maintainer,
        summary = linux_package::one_line(&p.summary),
        description = description.join("\n .\n"),
    )
}

/// A paragraph as description continuation lines (` word word…`) of at most
/// `width` characters, where words allow.
fn wrap(text: &str, width: usize) -> String {
    linux_package::wrap(text, width.saturating_sub(1))
        .iter()
        .map(|l| format!(" {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `gzip -9n`: best compression, no name, no time (lintian checks both).
fn gzip_max(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

/// `Mon, 01 Dec 2025 00:00:00 +0000`, the date form of Debian changelogs.
pub fn rfc2822(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}
