//! The rpm target: one `.rpm` per Linux agent given (x86_64, aarch64), written by
//! fleetkit through the `rpm` crate (no rpmbuild, no fpm): the files of
//! [`super::linux_package`] at Red Hat's paths, `%config(noreplace)` for the
//! settings an admin may edit, the directories the package owns, and the scriptlets
//! of `packaging/rpm/` (`%post`, `%preun`, `%postun`, which read `$1` to tell an
//! upgrade from an erase).
//!
//! Signed (header and payload, v4 OpenPGP, SHA-256) with the org's package-signing
//! key when one is given ([`crate::pki::package_key`]); `rpm -K` accepts it once the
//! public key (`RPM-GPG-KEY-<org>`, written beside the packages) is imported.
//! Payload: cpio, gzip level 9 (every rpm since RHEL 5 reads it). Build time, file
//! times and the signature's time are `SOURCE_DATE_EPOCH`; the build host is fixed,
//! so a rebuild is the same bytes.

use super::linux_package::{self, Family, Package};
use super::{
    Artefact, Contents, OutFile, Result, Syntax, Target, TargetError, environment, render,
};
use crate::build::payload::Payload;
use rpm::{BuildConfig, CompressionWithLevel, Dependency, FileOptions, PackageBuilder};
use std::sync::Arc;

const SCRIPTS: &[(&str, &str)] = &[
    ("post", include_str!("../../packaging/rpm/post")),
    ("preun", include_str!("../../packaging/rpm/preun")),
    ("postun", include_str!("../../packaging/rpm/postun")),
];

/// Directories the package creates and so owns (removed on erase when empty);
/// /usr/bin, the unit and trust-store folders belong to the system.
const OWNED_DIRS: &[&str] = &["/etc/fleetkit"];

pub fn build(payload: &Payload) -> Result<Artefact> {
    let mut files = Vec::new();
    for agent in linux_package::lean_agents(payload, Target::Rpm)? {
        let package = linux_package::package(payload, agent, Family::RedHat)?;
        let bytes = write(payload, &package)?;
        files.push(OutFile {
            path: file_name(&package),
            contents: Contents::Built(Arc::new(bytes)),
            mode: super::FILE_MODE,
        });
    }
    let mut notes = Vec::new();
    match &payload.package_signing_key {
        Some(key) => {
            let public = key.public_key_armored().map_err(signing)?;
            files.push(OutFile {
                path: public_key_file_name(&payload.org),
                contents: Contents::Built(Arc::new(public.into_bytes())),
                mode: super::FILE_MODE,
            });
        }
        None => notes.push(
            "the .rpm packages are unsigned (dnf refuses them where gpgcheck=1): give --package-signing-key to sign them".into(),
        ),
    }
    Ok(Artefact {
        target: Target::Rpm,
        files,
        notes,
    })
}

/// `<name>-<version>-<release>.<arch>.rpm`, as rpmbuild names it.
pub fn file_name(p: &Package) -> String {
    format!(
        "{}-{}-{RELEASE}.{}.rpm",
        p.name,
        p.version,
        p.platform.rpm_arch()
    )
}

/// `RPM-GPG-KEY-<package name>`, the name Red Hat's keys go by in /etc/pki/rpm-gpg/.
pub fn public_key_file_name(org: &str) -> String {
    format!("RPM-GPG-KEY-{}", linux_package::package_name(org))
}

/// Every build is release 1: the version already moves with the bundle and agent.
const RELEASE: &str = "1";

fn write(payload: &Payload, p: &Package) -> Result<Vec<u8>> {
    let env = environment(SCRIPTS, Syntax::Jinja)?;
    let ctx = minijinja::context! {
        package => p.name.clone(),
        org => payload.org.clone(),
        agent_version => payload.agent_version.clone(),
    };
    let time = u32::try_from(payload.build_time.unix_timestamp().max(0)).unwrap_or(u32::MAX);
    let config = BuildConfig::v4()
        .compression(CompressionWithLevel::Gzip(9))
        .source_date(time);
    let mut b = PackageBuilder::new(
        &p.name,
        &p.version,
        "Apache-2.0",
        p.platform.rpm_arch(),
        &linux_package::one_line(&p.summary),
    );
    b.using_config(config)
        .release(RELEASE)
        .description(
            p.description
                .iter()
                .map(|para| linux_package::wrap(&linux_package::one_line(para), 79).join("\n"))
                .collect::<Vec<_>>()
                .join("\n\n"),
        )
        .vendor(linux_package::one_line(&payload.display_name))
        .packager(p.maintainer.clone())
        .url(linux_package::one_line(&payload.server_url))
        .group("System Environment/Daemons")
        .build_host("fleetkit")
        .provides(Dependency::any("fleetkit-agent"))
        .conflicts(Dependency::any("fleetkit-agent"))
        .recommends(Dependency::any("ca-certificates"))
        // rpm's changelog names the version it describes after the author.
        .add_changelog_entry(
            format!("{} - {}-{RELEASE}", p.maintainer, p.version),
            linux_package::one_line(&format!(
                "- Policy bundle v{} of {}, fleetkit agent {}.",
                payload.bundle_version, payload.org, payload.agent_version
            )),
            time,
        );
    for name in ["post", "preun", "postun"] {
        // Named, not left to rpm's default, so `Requires(post): /bin/sh` and
        // friends are recorded.
        let script = rpm::Scriptlet::new(render(&env, name, &ctx)?).prog(vec!["/bin/sh"]);
        match name {
            "post" => b.post_install_script(script),
            "preun" => b.pre_uninstall_script(script),
            _ => b.post_uninstall_script(script),
        };
    }
    let bad = |e: rpm::Error| TargetError::Template {
        name: "rpm".into(),
        reason: e.to_string(),
    };
    for dir in OWNED_DIRS {
        b.with_dir_entry(FileOptions::dir(*dir).permissions(0o755))
            .map_err(bad)?;
    }
    for f in &p.files {
        let mut options = FileOptions::new(f.path.clone()).permissions(f.mode as u16);
        if f.config {
            options = options.config().noreplace();
        }
        b.with_file_contents(f.bytes.as_slice(), options)
            .map_err(bad)?;
    }
    let mut package = b.build().map_err(bad)?;
    if let Some(key) = &payload.package_signing_key {
        // The same date as the apt repository's signatures: the build time, or
        // the key's creation when that is later.
        let at = rpm::Timestamp::from(key.signature_time(time));
        package
            .sign_with_timestamp(key.rpm_signer().map_err(signing)?, at)
            .map_err(bad)?;
    }
    let mut out = Vec::new();
    package.write(&mut out).map_err(bad)?;
    Ok(out)
}

fn signing(e: crate::pki::package_key::PackageKeyError) -> TargetError {
    TargetError::Template {
        name: "rpm signature".into(),
        reason: e.to_string(),
    }
}
