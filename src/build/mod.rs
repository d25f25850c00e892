//! `fleetkit build`: the payload is assembled once ([`payload`]) and handed to each
//! requested target ([`crate::targets`]); every target returns its files in memory,
//! and only when all succeeded are they written to a staging directory beside the
//! output, with `SHA256SUMS` and `build.json`, and swapped into place. A failure
//! therefore leaves the previous output as it was, and never half of a new one.
//!
//! Output is deterministic: files are written in sorted order with fixed modes, and
//! every time in them comes from `SOURCE_DATE_EPOCH` (or the build time), so two
//! builds from the same inputs give the same bytes.

pub mod agent_check;
pub mod inspect;
pub mod payload;
pub mod scep;

use crate::fsutil::{self, FsError};
use crate::targets::Target;
use crate::targets::{self, Artefact, Contents, TargetError};
use payload::Payload;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a build failed. Nothing was written to the output when it did.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{what}: {reason}")]
    Input {
        what: String,
        reason: String,
        help: String,
    },
    #[error("the {target} target: {source}")]
    Target {
        target: &'static str,
        #[source]
        source: TargetError,
    },
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl BuildError {
    pub fn help(&self) -> String {
        match self {
            Self::Input { help, .. } => help.clone(),
            Self::Target { source, .. } => source.help(),
            Self::Fs(_) => "check that the output directory is writable".into(),
        }
    }
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// What the library tells the caller while it builds.
#[derive(Debug, Clone)]
pub enum Progress {
    Payload {
        bundle_version: u64,
        agents: usize,
        notes: Vec<String>,
    },
    Built {
        target: Target,
        files: usize,
        bytes: u64,
        notes: Vec<String>,
    },
    Written {
        out: PathBuf,
    },
}

/// One target's entry in `build.json`.
#[derive(Debug, Serialize)]
struct BuiltTarget {
    target: &'static str,
    path: String,
    files: usize,
    bytes: u64,
}

/// `build.json`: what was built from what.
#[derive(Debug, Serialize)]
struct BuildRecord<'a> {
    fleetkit_version: &'a str,
    org: &'a str,
    built_at: String,
    server_url: &'a str,
    team: Option<&'a str>,
    policy: PolicyRecord<'a>,
    anchors: AnchorsRecord<'a>,
    agents: Vec<AgentRecord<'a>>,
    artefacts: Vec<BuiltTarget>,
}

#[derive(Debug, Serialize)]
struct PolicyRecord<'a> {
    version: u64,
    expires_at: String,
    sha256: &'a str,
    size: usize,
}

#[derive(Debug, Serialize)]
struct AnchorsRecord<'a> {
    policy_keyids: &'a [String],
    root_ca_fingerprint: &'a str,
    sha256: String,
}

#[derive(Debug, Serialize)]
struct AgentRecord<'a> {
    platform: &'a str,
    sha256: &'a str,
    size: usize,
    /// The file name it was read from (not the path: the record must not depend on
    /// where the build ran).
    from: String,
    /// Which source it was found in.
    origin: payload::AgentOrigin,
}

/// Refuses an output directory that is not fleetkit's to replace: it must be
/// missing, empty, or a previous build output (it holds `build.json`), and must not
/// hold the workspace.
pub fn check_output_dir(out: &Path, workspace: &Path) -> Result<()> {
    let refuse = |reason: &str| BuildError::Input {
        what: out.display().to_string(),
        reason: reason.to_string(),
        help: "give --out a new directory, or a previous build output".into(),
    };
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if out.exists() {
        if !out.is_dir() {
            return Err(refuse("exists and is not a directory"));
        }
        if abs(workspace).starts_with(abs(out)) {
            return Err(refuse("holds the workspace (its keys would be deleted)"));
        }
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty && !out.join("build.json").is_file() {
            return Err(refuse(
                "is not empty and not a fleetkit build output (no build.json): it would be replaced",
            ));
        }
    }
    Ok(())
}

/// Builds `targets` from `payload` into `out`.
pub fn build(
    payload: &Payload,
    targets: &[Target],
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Artefact>> {
    progress(Progress::Payload {
        bundle_version: payload.bundle_version,
        agents: payload.agents.len(),
        notes: payload.notes.clone(),
    });
    // Settings a target refuses stop the build before any target's work is spent.
    for &target in targets {
        targets::check(target, payload).map_err(|source| BuildError::Target {
            target: target.as_str(),
            source,
        })?;
    }
    // Targets share nothing but the payload, except the MSI and the .intunewin
    // wrapping it (the Builder keeps the MSIs for both): every other target is
    // built on a thread of its own while those two are built here, in order. On
    // two cores the .deb's xz and the .rpm's gzip, for example, run side by side.
    let mut builder = targets::Builder::default();
    let built: Vec<targets::Result<Artefact>> = std::thread::scope(|scope| {
        let threads: Vec<_> = targets
            .iter()
            .map(|&target| {
                (!target.spec().shares_builder)
                    .then(|| scope.spawn(move || targets::build(target, payload)))
            })
            .collect();
        targets
            .iter()
            .zip(threads)
            .map(|(&target, thread)| match thread {
                Some(thread) => thread.join().unwrap_or_else(|_| {
                    Err(targets::TargetError::Template {
                        name: target.as_str().into(),
                        reason: "its build thread panicked".into(),
                    })
                }),
                None => builder.build(target, payload),
            })
            .collect()
    });
    let mut artefacts = Vec::new();
    for (&target, artefact) in targets.iter().zip(built) {
        let artefact = artefact.map_err(|source| BuildError::Target {
            target: target.as_str(),
            source,
        })?;
        progress(Progress::Built {
            target,
            files: artefact.files.len(),
            bytes: artefact.size(),
            notes: artefact.notes.clone(),
        });
        artefacts.push(artefact);
    }
    write_output(payload, &artefacts, out)?;
    progress(Progress::Written {
        out: out.to_path_buf(),
    });
    Ok(artefacts)
}

/// Writes the artefacts, SHA256SUMS and build.json to a staging directory, then
/// swaps it in for `out`.
fn write_output(payload: &Payload, artefacts: &[Artefact], out: &Path) -> Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| FsError::new("cannot create directory", &parent, e))?;
    let stage = tempfile::Builder::new()
        .prefix(".fleetkit-build-")
        .tempdir_in(&parent)
        .map_err(|e| FsError::new("cannot create a staging directory in", &parent, e))?;

    // Every file, by its path in the output; sorted, so SHA256SUMS is stable.
    let mut files: BTreeMap<String, (&Contents, u32)> = BTreeMap::new();
    for a in artefacts {
        for f in &a.files {
            files.insert(format!("{}/{}", a.dir(), f.path), (&f.contents, f.mode));
        }
    }
    // Files not hashed yet are hashed on a second thread while this one writes:
    // for an installer, hashing and writing take about as long as each other.
    let (hashes, wrote) = std::thread::scope(|scope| {
        let hasher = scope.spawn(|| {
            files
                .iter()
                .filter(|(_, (c, _))| !matches!(c, Contents::Shared { .. }))
                .map(|(rel, (c, _))| (rel.as_str(), hex_sha256(c.bytes())))
                .collect::<BTreeMap<&str, String>>()
        });
        let wrote = write_files(stage.path(), &files);
        (hasher.join(), wrote)
    });
    wrote?;
    let hashes = hashes.map_err(|_| BuildError::Input {
        what: "the build output".into(),
        reason: "hashing the files failed".into(),
        help: String::new(),
    })?;
    let mut sums = String::new();
    for (rel, (contents, _)) in &files {
        let hex = match contents {
            Contents::Shared { sha256, .. } => sha256.trim_start_matches("sha256:"),
            _ => hashes.get(rel.as_str()).map_or("", String::as_str),
        };
        sums.push_str(&format!(
            "{hex}  {rel}
"
        ));
    }
    let record = BuildRecord {
        fleetkit_version: &payload.agent_version,
        org: &payload.org,
        built_at: crate::clock::rfc3339(payload.build_time),
        server_url: &payload.server_url,
        team: payload.settings.assignment.team.as_deref(),
        policy: PolicyRecord {
            version: payload.bundle_version,
            expires_at: crate::clock::rfc3339(payload.bundle_expires_at),
            sha256: &payload.bundle_sha256,
            size: payload.bundle.len(),
        },
        anchors: AnchorsRecord {
            policy_keyids: &payload.anchor_keyids,
            root_ca_fingerprint: &payload.root_ca_fingerprint,
            sha256: payload::sha256(&payload.anchors_json),
        },
        agents: payload
            .agents
            .values()
            .map(|a| AgentRecord {
                platform: a.platform.name(),
                sha256: a.sha256(),
                size: a.bytes.len(),
                from: Path::new(&a.source)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                origin: a.origin,
            })
            .collect(),
        artefacts: artefacts
            .iter()
            .map(|a| BuiltTarget {
                target: a.target.as_str(),
                path: a.dir().to_string(),
                files: a.files.len(),
                bytes: a.size(),
            })
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&record).unwrap_or_default();
    json.push(b'\n');
    write_file(&stage.path().join("build.json"), &json, fsutil::PUBLIC_MODE)?;
    sums.push_str(&format!("{}  build.json\n", hex_sha256(&json)));
    write_file(
        &stage.path().join("SHA256SUMS"),
        sums.as_bytes(),
        fsutil::PUBLIC_MODE,
    )?;
    swap_into_place(stage, out)
}

use std::sync::Arc;

fn hex_sha256(bytes: &[u8]) -> String {
    payload::sha256(bytes)
        .trim_start_matches("sha256:")
        .to_string()
}

/// Writes `files` under `root`. The first copy of a shared binary is written; the
/// others are hard links to it (copies where the filesystem cannot link).
fn write_files(root: &Path, files: &BTreeMap<String, (&Contents, u32)>) -> Result<()> {
    let mut written: BTreeMap<*const Vec<u8>, PathBuf> = BTreeMap::new();
    for (rel, (contents, mode)) in files {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| FsError::new("cannot create directory", dir, e))?;
        }
        match contents {
            Contents::Shared { bytes, .. } => {
                let key = Arc::as_ptr(bytes);
                match written.get(&key) {
                    Some(first) if std::fs::hard_link(first, &path).is_ok() => {}
                    _ => {
                        write_file(&path, bytes, *mode)?;
                        written.insert(key, path.clone());
                    }
                }
            }
            other => write_file(&path, other.bytes(), *mode)?,
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| FsError::new("cannot create", path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| FsError::new("cannot write", path, e))?;
    set_mode(path, mode)?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| FsError::new("cannot set permissions on", path, e))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

/// Replaces `out` by the staged tree: the old output is renamed aside, the new one
/// renamed in, the old one removed. At every moment `out` is the complete old
/// output, the complete new one, or (for the instant between the renames) absent.
fn swap_into_place(stage: tempfile::TempDir, out: &Path) -> Result<()> {
    // The staging directory is made 0700; the output is for everyone to read.
    set_mode(stage.path(), 0o755)?;
    let staged = stage.path().to_path_buf();
    let old = if out.exists() {
        let aside = out.with_file_name(format!(
            ".{}.old-{}",
            out.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::rename(out, &aside).map_err(|e| FsError::new("cannot move aside", out, e))?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(&staged, out) {
        if let Some(aside) = &old {
            let _ = std::fs::rename(aside, out);
        }
        // `stage` is dropped here and removes the staging directory.
        return Err(FsError::new("cannot move the new output into", out, e).into());
    }
    // Renamed away: nothing left for the TempDir to remove.
    let _ = stage.keep();
    if let Some(parent) = out.parent()
        && let Ok(dir) = std::fs::File::open(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
    {
        let _ = dir.sync_all();
    }
    if let Some(aside) = old {
        let _ = std::fs::remove_dir_all(aside);
    }
    Ok(())
}
