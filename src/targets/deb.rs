//! The deb target: one `.deb` per Linux agent given (amd64, arm64), written by
//! fleetkit itself (no dpkg-deb, no fpm): the files of [`super::linux_package`], a
//! `control` file, `md5sums`, `conffiles` (every file under /etc) and the
//! maintainer scripts of `packaging/deb/` (postinst, prerm, postrm), plus what Debian
//! policy asks of every package: `copyright` and a compressed `changelog` in
//! /usr/share/doc/<package>/, and lintian overrides with their reasons.
//!
//! The package is not signed: apt trusts repositories, not files.

use super::linux_package::{self, Family, Package, PackageFile};
use super::{
    Artefact, Contents, OutFile, Result, Syntax, Target, TargetError, environment, render,
};
use crate::build::payload::{AgentOrigin, Payload};
use crate::formats::deb::{self, Member};
use crate::platform::Os;
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

pub fn build(payload: &Payload) -> Result<Artefact> {
    let agents = payload.agents_for(Os::Linux);
    if agents.is_empty() {
        return Err(TargetError::MissingAgent {
            os: Os::Linux,
            host: crate::platform::Platform::host(),
        });
    }
    let mut files = Vec::new();
    for agent in agents {
        if agent.origin == AgentOrigin::HostBinary {
            return Err(TargetError::AdminBuildAsAgent {
                platform: agent.platform,
                target: Target::Deb.as_str(),
            });
        }
        let package = linux_package::package(payload, agent, Family::Debian)?;
        let bytes = write(payload, &package)?;
        files.push(OutFile {
            path: file_name(&package),
            contents: Contents::Built(Arc::new(bytes)),
            mode: super::FILE_MODE,
        });
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

fn write(payload: &Payload, p: &Package) -> Result<Vec<u8>> {
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
    deb::write(&members, &data, mtime).map_err(|e| TargetError::Template {
        name: "deb".into(),
        reason: e.to_string(),
    })
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
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        line.push(' ');
        line.push_str(word);
    }
    lines.push(line);
    lines.join("\n")
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
