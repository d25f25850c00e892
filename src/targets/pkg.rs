//! The `.pkg` target: a macOS product archive written entirely by fleetkit.
//!
//! ```text
//! <org>-fleetkit.pkg (xar)
//!   Distribution            installer-gui-script: title, host architectures, one choice
//!   fleetkit.pkg/PackageInfo identifier <prefix>.fleetkit, version, install-location /,
//!                            payload size, the postinstall script
//!   fleetkit.pkg/Bom         every payload path with mode, owner, size, checksum
//!   fleetkit.pkg/Payload     gzip'd odc cpio of the files below, root:wheel
//!   fleetkit.pkg/Scripts     gzip'd odc cpio of postinstall
//! payload
//!   usr/local/bin/fleetkit                                  0755 (universal when both
//!                                                           darwin agents are given;
//!                                                           each slice code-signed)
//!   Library/Application Support/fleetkit/{agent.yaml,anchors.json,bundle.json} 0644
//!   Library/LaunchDaemons/<prefix>.fleetkit.sync.plist      0644: `agent sync` every 15 min
//! ```
//!
//! The postinstall registers the Mac (assignment from the managed preferences, token
//! from the file a Jamf script leaves) and bootstraps the LaunchDaemon; a pending
//! registration never fails the install. Everything is deterministic: fixed owners,
//! modes and mtime (the build time), gzip without name or time. The agent's code
//! signature (`pki::codesign`: ad hoc, or Developer ID with `--codesign-identity`)
//! is as deterministic.

use super::Target;
use super::{Artefact, Result, TargetError, text};
use crate::build::payload::{AgentBinary, Payload};
use crate::formats::bom::BomWriter;
use crate::formats::xar::{Encoding, XarWriter};
use crate::pki::codesign;
use crate::platform::{Os, Platform};
use object::macho::{CPU_TYPE_ARM64, CPU_TYPE_X86_64};
use std::io::Write;

/// The installer's own files (packaging/macos/): the XML is escaped with the `xml`
/// filter, the script's values with `shell`.
const INSTALLER: &[(&str, &str)] = &[
    (
        "postinstall",
        include_str!("../../packaging/macos/postinstall"),
    ),
    (
        "PackageInfo",
        include_str!("../../packaging/macos/PackageInfo"),
    ),
    (
        "Distribution",
        include_str!("../../packaging/macos/Distribution"),
    ),
];
const JAMF_SCRIPT: &[(&str, &str)] = &[(
    "jamf-register.sh",
    include_str!("../../packaging/macos/jamf-register.sh"),
)];

fn err(what: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Template {
        name: what.into(),
        reason: e.to_string(),
    }
}

/// The code-signing identifier of the agent.
fn agent_identifier(payload: &Payload) -> String {
    format!("{}.fleetkit.agent", payload.identifier_prefix)
}

/// The darwin platforms: (platform, cputype, cpusubtype ALL).
const DARWIN: [(Platform, u32, u32); 2] = [
    (Platform::DARWIN_ARM64, CPU_TYPE_ARM64, 0),
    (Platform::DARWIN_X86_64, CPU_TYPE_X86_64, 3),
];

/// The darwin agents, each code-signed (ad hoc, or with the codesign identity), as a
/// universal (fat) Mach-O holding both, or the one agent given; and their
/// architectures.
fn mac_agent(payload: &Payload) -> Result<(Vec<u8>, Vec<&'static str>)> {
    let identifier = agent_identifier(payload);
    let identity = payload.codesign_identity.as_deref();
    let mut signed = Vec::new();
    let mut archs = Vec::new();
    for (platform, cpu, sub) in DARWIN {
        if let Some(agent) = payload.agents.get(&platform) {
            let what = format!("{platform} agent {}", agent.source);
            let bytes = codesign::sign_macho(&what, &agent.bytes, &identifier, identity)?;
            signed.push((cpu, sub, bytes));
            archs.push(platform.apple_arch());
        }
    }
    match signed.len() {
        0 => Err(TargetError::MissingAgent {
            os: Os::Darwin,
            host: crate::platform::Platform::host(),
        }),
        1 => Ok((signed.remove(0).2, archs)),
        _ => {
            let slices: Vec<(u32, u32, &[u8])> = signed
                .iter()
                .map(|(c, s, b)| (*c, *s, b.as_slice()))
                .collect();
            Ok((universal(&slices), archs))
        }
    }
}

/// A fat Mach-O of darwin agents (as they are, unsigned). The slices are
/// [`AgentBinary`]s, so each was checked to be a thin Mach-O executable of its
/// architecture ([`crate::build::agent_check`]); none can be a fat file itself.
/// Agents of other platforms are left out.
pub fn fat_binary(agents: &[&AgentBinary]) -> Vec<u8> {
    let slices: Vec<(u32, u32, &[u8])> = agents
        .iter()
        .filter_map(|a| {
            let (_, cpu, sub) = DARWIN.iter().find(|d| d.0 == a.platform)?;
            Some((*cpu, *sub, a.bytes.as_slice()))
        })
        .collect();
    universal(&slices)
}

/// A fat Mach-O: FAT_MAGIC, the slices' (cputype, cpusubtype, offset, size,
/// align 2^14), each slice at a 16 KiB boundary.
fn universal(slices: &[(u32, u32, &[u8])]) -> Vec<u8> {
    const ALIGN: usize = 1 << 14;
    let mut out = Vec::new();
    out.extend_from_slice(&0xcafe_babeu32.to_be_bytes());
    out.extend_from_slice(&(slices.len() as u32).to_be_bytes());
    let mut offset = ALIGN;
    let mut placed = Vec::new();
    for &(cpu, sub, data) in slices {
        out.extend_from_slice(&cpu.to_be_bytes());
        out.extend_from_slice(&sub.to_be_bytes());
        out.extend_from_slice(&(offset as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&14u32.to_be_bytes());
        placed.push((offset, data));
        offset = (offset + data.len()).div_ceil(ALIGN) * ALIGN;
    }
    for (at, data) in placed {
        out.resize(at, 0);
        out.extend_from_slice(data);
    }
    out
}

fn launch_daemon(label: &str) -> Result<Vec<u8>> {
    let mut d = plist::Dictionary::new();
    d.insert("Label".into(), label.into());
    d.insert(
        "ProgramArguments".into(),
        plist::Value::Array(vec![
            "/usr/local/bin/fleetkit".into(),
            "agent".into(),
            "sync".into(),
        ]),
    );
    d.insert("StartInterval".into(), plist::Value::Integer(900.into()));
    d.insert("RunAtLoad".into(), true.into());
    d.insert("ProcessType".into(), "Background".into());
    d.insert(
        "StandardOutPath".into(),
        "/var/log/fleetkit-sync.log".into(),
    );
    d.insert(
        "StandardErrorPath".into(),
        "/var/log/fleetkit-sync.log".into(),
    );
    let mut out = Vec::new();
    plist::Value::Dictionary(d)
        .to_writer_xml(&mut out)
        .map_err(|e| err("LaunchDaemon", e))?;
    out.push(b'\n');
    Ok(out)
}

/// gzip'd odc cpio of `files` (directories first, as `./path`), root:wheel.
fn cpio_gz(files: &[(String, u32, Vec<u8>)], mtime: u32) -> Result<Vec<u8>> {
    let mut cpio = cpio_archive::OdcBuilder::new(Vec::new());
    cpio.auto_write_dirs(false);
    // The trailer entry takes the builder's default time, which is otherwise now.
    cpio.default_mtime(chrono::DateTime::from_timestamp(mtime as i64, 0).unwrap_or_default());
    for (path, mode, data) in files {
        let mut h = cpio.next_header();
        h.name = if path.is_empty() {
            ".".into()
        } else {
            format!("./{path}")
        };
        h.mode = *mode;
        h.uid = 0;
        h.gid = 0;
        h.mtime = mtime;
        h.nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
        h.file_size = data.len() as u64;
        cpio.append_header_with_data(h, data)
            .map_err(|e| err("cpio", e))?;
    }
    cpio.finish().map_err(|e| err("cpio", e))?;
    let raw = cpio.into_inner().map_err(|e| err("cpio", e))?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).map_err(|e| err("gzip", e))?;
    gz.finish().map_err(|e| err("gzip", e))
}

/// Directories of `paths`, parents first, the root as "".
fn directories(paths: &[&str]) -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    dirs.insert(String::new());
    for p in paths {
        let parts: Vec<&str> = p.split('/').collect();
        for i in 1..parts.len() {
            dirs.insert(parts[..i].join("/"));
        }
    }
    let mut v: Vec<String> = dirs.into_iter().collect();
    v.sort_by_key(|d| {
        (
            d.matches('/').count() + usize::from(!d.is_empty()),
            d.clone(),
        )
    });
    v
}

/// The package file name.
pub fn file_name(payload: &Payload) -> String {
    format!(
        "{}-fleetkit-{}.pkg",
        super::org_slug(&payload.org).replace('_', "-"),
        payload.bundle_version
    )
}

/// Builds the product archive (signed when the payload has an installer identity)
/// and the Jamf script beside it.
pub fn build(payload: &Payload) -> Result<Artefact> {
    let (agent, archs) = mac_agent(payload)?;
    let label = format!("{}.fleetkit.sync", payload.identifier_prefix);
    let identifier = format!("{}.fleetkit", payload.identifier_prefix);
    let version = format!("1.0.{}", payload.bundle_version);
    let support = "Library/Application Support/fleetkit";
    // On the Mac, the profile's managed preferences override agent.yaml.
    let mut settings = payload.settings.clone();
    settings.managed_preferences_domain = Some(super::mobileconfig::preference_domain(payload));
    // (path in the payload, contents, mode); all root:wheel.
    let files: [(String, Vec<u8>, u32); 5] = [
        ("usr/local/bin/fleetkit".into(), agent, 0o755),
        (
            format!("{support}/agent.yaml"),
            settings.to_yaml().into_bytes(),
            0o644,
        ),
        (
            format!("{support}/anchors.json"),
            payload.anchors_json.to_vec(),
            0o644,
        ),
        (
            format!("{support}/bundle.json"),
            payload.bundle.to_vec(),
            0o644,
        ),
        (
            format!("Library/LaunchDaemons/{label}.plist"),
            launch_daemon(&label)?,
            0o644,
        ),
    ];
    let paths: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
    let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mtime = payload
        .build_time
        .unix_timestamp()
        .clamp(0, u32::MAX as i64) as u32;

    // Payload, Bom.
    let mut entries: Vec<(String, u32, Vec<u8>)> = Vec::new();
    let mut bom = BomWriter::new(payload.build_time);
    for dir in directories(&path_refs) {
        entries.push((dir.clone(), 0o040755, Vec::new()));
        if !dir.is_empty() {
            bom.add_directory(&dir, 0o755, 0, 0)
                .map_err(|e| err("Bom", e))?;
        }
    }
    let mut install_bytes = 0u64;
    for (path, data, mode) in &files {
        entries.push((path.clone(), 0o100000 | mode, data.clone()));
        bom.add_file(path, data, *mode as u16, 0, 0)
            .map_err(|e| err("Bom", e))?;
        install_bytes += data.len() as u64;
    }
    let payload_gz = cpio_gz(&entries, mtime)?;

    // Scripts.
    let ctx = minijinja::context! {
        org => payload.org.clone(),
        agent_version => payload.agent_version.clone(),
        domain => super::mobileconfig::preference_domain(payload),
        daemon_label => label.clone(),
    };
    let env = super::environment(INSTALLER, super::Syntax::Jinja)?;
    let postinstall = super::render(&env, "postinstall", &ctx)?;
    let scripts_gz = cpio_gz(
        &[
            (String::new(), 0o040755, Vec::new()),
            ("postinstall".into(), 0o100755, postinstall.into_bytes()),
        ],
        mtime,
    )?;

    let kbytes = install_bytes.div_ceil(1024);
    let xml_ctx = minijinja::context! {
        identifier => identifier.clone(),
        version => version.clone(),
        agent_version => payload.agent_version.clone(),
        number_of_files => entries.len(),
        kbytes,
        title => format!("{} fleetkit", payload.display_name),
        archs => archs.clone(),
    };
    let package_info = super::render(&env, "PackageInfo", &xml_ctx)?;
    let distribution = super::render(&env, "Distribution", &xml_ctx)?;

    let mut xar = XarWriter::new(payload.build_time);
    let add = |x: &mut XarWriter, path: &str, data: Vec<u8>, enc| {
        x.add_file(path, data, 0o644, enc)
            .map_err(|e| err("xar", e))
    };
    add(
        &mut xar,
        "Distribution",
        distribution.into_bytes(),
        Encoding::Zlib,
    )?;
    add(
        &mut xar,
        "fleetkit.pkg/PackageInfo",
        package_info.into_bytes(),
        Encoding::Zlib,
    )?;
    add(&mut xar, "fleetkit.pkg/Bom", bom.finish(), Encoding::Zlib)?;
    add(
        &mut xar,
        "fleetkit.pkg/Payload",
        payload_gz,
        Encoding::Stored,
    )?;
    add(
        &mut xar,
        "fleetkit.pkg/Scripts",
        scripts_gz,
        Encoding::Stored,
    )?;
    let (pkg, mut notes) = match &payload.installer_identity {
        Some(identity) => (
            xar.finish_signed(identity.as_ref())
                .map_err(|e| err("xar", e))?,
            vec![format!("signed by {}", identity.subject())],
        ),
        None => (
            xar.finish().map_err(|e| err("xar", e))?,
            vec![
                "the package is unsigned: Installer and Jamf accept it, Gatekeeper warns on a manual install; sign it with --installer-identity".into(),
            ],
        ),
    };

    notes.push(match &payload.codesign_identity {
        Some(identity) => format!(
            "the agent is code-signed by {} with the hardened runtime (not notarized)",
            identity.subject()
        ),
        None => "the agent is code-signed ad hoc: it runs on Apple silicon; give --codesign-identity for a Developer ID signature".into(),
    });

    let jamf_env = super::environment(JAMF_SCRIPT, super::Syntax::Jinja)?;
    let mut jamf = text(
        "jamf-register.sh",
        super::render(&jamf_env, "jamf-register.sh", &ctx)?,
    );
    jamf.mode = super::EXEC_MODE;
    Ok(Artefact {
        target: Target::Pkg,
        files: vec![
            super::OutFile {
                path: file_name(payload),
                contents: super::Contents::Built(std::sync::Arc::new(pkg)),
                mode: super::FILE_MODE,
            },
            jamf,
        ],
        notes,
    })
}
