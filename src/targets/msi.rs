//! The `.msi` target: a per-machine, silently installable Windows Installer
//! package, one per processor (x64, arm64) whose agent is given, written with the
//! msi crate and fleetkit's own cabinet writer (no WiX, no Wine, no Docker).
//!
//! - `INSTALLDIR` = `ProgramFiles64Folder\fleetkit`: `fleetkit.exe` (the agent);
//!   `DATADIR` = `CommonAppDataFolder\fleetkit`: `agent.yaml`, `anchors.json`,
//!   `bundle.json` — where the agent looks on Windows; one component per file.
//! - `HKLM\SOFTWARE\fleetkit`: `Version`, `ProductCode`, `PolicyVersion` (detection);
//!   `HKLM\SOFTWARE\fleetkit\Enrollment`: the FLEETKIT_* properties, for the agent
//!   (SYSTEM and Administrators only).
//! - Deferred, no-impersonation custom actions after `InstallFiles`: `agent
//!   register` (its exit code ignored: pending is fine) and a SYSTEM scheduled task
//!   for `agent sync` every 15 minutes, deleted again on uninstall.
//! - UpgradeCode derived from the org, ProductCode from org + version, package code
//!   from the content: a newer version replaces an older one (major upgrade,
//!   `RemoveExistingProducts` early); uninstall removes only what was installed,
//!   the agent's manifest and logs stay.
//! - The compound file is rewritten as CFB version 3 with fixed timestamps, so that
//!   Authenticode signers (osslsigncode, signtool) accept it and two builds are
//!   byte-identical.

use super::{Contents, OutFile, Result, TargetError};
use crate::build::payload::Payload;
use crate::platform::{Os, Platform};
use msi::{Column, Insert, Package, PackageType, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::io::{Cursor, Read, Write};

fn err(what: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Template {
        name: what.into(),
        reason: e.to_string(),
    }
}

/// A GUID derived from `name`, in the registry format MSI wants.
pub fn guid(name: &str) -> String {
    let d = Sha256::digest(format!("fleetkit msi guid\0{name}").as_bytes());
    format!("{{{}}}", super::uuid_from_digest(&d).hyphenated()).to_uppercase()
}

fn s(v: impl Into<String>) -> Value {
    Value::Str(v.into())
}

fn i(v: i32) -> Value {
    Value::Int(v)
}

/// A file the package installs: (File key, directory, short|long name, bytes).
type FileEntry<'a> = (&'static str, &'static str, &'static str, Cow<'a, [u8]>);

/// The enrollment values written from the public properties: (Registry key,
/// value name, property).
const ENROLLMENT_VALUES: [(&str, &str, &str); 4] = [
    ("R_EnrollTeam", "Team", "FLEETKIT_TEAM"),
    ("R_EnrollDepartment", "Department", "FLEETKIT_DEPARTMENT"),
    ("R_EnrollEnvironment", "Environment", "FLEETKIT_ENVIRONMENT"),
    ("R_EnrollToken", "Token", "FLEETKIT_ENROLL_TOKEN"),
];

/// Written as the cabinet stream while the tables are built, and swapped for the
/// real cabinet when the file is rewritten as CFB v3: the cabinet is copied once.
const CAB_PLACEHOLDER: &[u8] = b"fleetkit: the cabinet goes here\0";

/// The files the package installs.
fn files<'a>(payload: &'a Payload, agent: &'a [u8]) -> Vec<FileEntry<'a>> {
    vec![
        (
            "FleetkitExe",
            "INSTALLDIR",
            "fleetkit.exe",
            Cow::Borrowed(agent),
        ),
        (
            "AgentYaml",
            "DATADIR",
            "agent~1.yam|agent.yaml",
            Cow::Owned(payload.settings.to_yaml().into_bytes()),
        ),
        (
            "AnchorsJson",
            "DATADIR",
            "anchor~1.jso|anchors.json",
            Cow::Borrowed(payload.anchors_json.as_slice()),
        ),
        (
            "BundleJson",
            "DATADIR",
            "bundle~1.jso|bundle.json",
            Cow::Borrowed(payload.bundle.as_slice()),
        ),
    ]
}

fn cabinet(files: &[FileEntry<'_>], mtime: time::PrimitiveDateTime) -> Result<Vec<u8>> {
    let entries: Vec<crate::formats::cab::CabFile<'_>> = files
        .iter()
        .map(|(key, _, _, data)| crate::formats::cab::CabFile { name: key, data })
        .collect();
    crate::formats::cab::write(&entries, mtime, 0).map_err(|e| err("cab", e))
}

/// Creates the tables fleetkit fills.
fn create_tables<F: Read + Write + std::io::Seek>(p: &mut Package<F>) -> std::io::Result<()> {
    p.create_table(
        "Property",
        vec![
            Column::build("Property").primary_key().id_string(72),
            Column::build("Value").localizable().text_string(0),
        ],
    )?;
    p.create_table(
        "Directory",
        vec![
            Column::build("Directory").primary_key().id_string(72),
            Column::build("Directory_Parent").nullable().id_string(72),
            Column::build("DefaultDir").localizable().text_string(255),
        ],
    )?;
    p.create_table(
        "Component",
        vec![
            Column::build("Component").primary_key().id_string(72),
            Column::build("ComponentId").nullable().string(38),
            Column::build("Directory_").id_string(72),
            Column::build("Attributes").int16(),
            Column::build("Condition").nullable().string(255),
            Column::build("KeyPath").nullable().id_string(72),
        ],
    )?;
    p.create_table(
        "Feature",
        vec![
            Column::build("Feature").primary_key().id_string(38),
            Column::build("Feature_Parent").nullable().id_string(38),
            Column::build("Title")
                .nullable()
                .localizable()
                .text_string(64),
            Column::build("Description")
                .nullable()
                .localizable()
                .text_string(255),
            Column::build("Display").nullable().int16(),
            Column::build("Level").int16(),
            Column::build("Directory_").nullable().id_string(72),
            Column::build("Attributes").int16(),
        ],
    )?;
    p.create_table(
        "FeatureComponents",
        vec![
            Column::build("Feature_").primary_key().id_string(38),
            Column::build("Component_").primary_key().id_string(72),
        ],
    )?;
    p.create_table(
        "File",
        vec![
            Column::build("File").primary_key().id_string(72),
            Column::build("Component_").id_string(72),
            Column::build("FileName").localizable().text_string(255),
            Column::build("FileSize").int32(),
            Column::build("Version").nullable().id_string(72),
            Column::build("Language").nullable().string(20),
            Column::build("Attributes").nullable().int16(),
            Column::build("Sequence").int16(),
        ],
    )?;
    p.create_table(
        "Media",
        vec![
            Column::build("DiskId").primary_key().int16(),
            Column::build("LastSequence").int16(),
            Column::build("DiskPrompt")
                .nullable()
                .localizable()
                .text_string(64),
            Column::build("Cabinet").nullable().string(255),
            Column::build("VolumeLabel").nullable().text_string(32),
            Column::build("Source").nullable().string(72),
        ],
    )?;
    p.create_table(
        "Registry",
        vec![
            Column::build("Registry").primary_key().id_string(72),
            Column::build("Root").int16(),
            Column::build("Key").localizable().text_string(255),
            Column::build("Name")
                .nullable()
                .localizable()
                .text_string(255),
            Column::build("Value")
                .nullable()
                .localizable()
                .text_string(0),
            Column::build("Component_").id_string(72),
        ],
    )?;
    p.create_table(
        "MsiLockPermissionsEx",
        vec![
            Column::build("MsiLockPermissionsEx")
                .primary_key()
                .id_string(72),
            Column::build("LockObject").id_string(72),
            Column::build("Table").id_string(32),
            Column::build("SDDL").text_string(0),
            Column::build("Condition").nullable().text_string(255),
        ],
    )?;
    p.create_table(
        "CustomAction",
        vec![
            Column::build("Action").primary_key().id_string(72),
            Column::build("Type").int16(),
            Column::build("Source").nullable().string(72),
            Column::build("Target").nullable().text_string(255),
            Column::build("ExtendedType").nullable().int32(),
        ],
    )?;
    p.create_table(
        "InstallExecuteSequence",
        vec![
            Column::build("Action").primary_key().id_string(72),
            Column::build("Condition").nullable().text_string(255),
            Column::build("Sequence").nullable().int16(),
        ],
    )?;
    p.create_table(
        "Upgrade",
        vec![
            Column::build("UpgradeCode").primary_key().string(38),
            Column::build("VersionMin")
                .primary_key()
                .nullable()
                .string(20),
            Column::build("VersionMax")
                .primary_key()
                .nullable()
                .string(20),
            // Null: any language (an empty string matches none under Wine).
            Column::build("Language")
                .primary_key()
                .nullable()
                .string(255),
            Column::build("Attributes").primary_key().int32(),
            Column::build("Remove").nullable().text_string(255),
            Column::build("ActionProperty").id_string(72),
        ],
    )?;
    Ok(())
}

/// The processor an MSI is for: one MSI per Windows agent given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X64, Arch::Arm64];

    /// The platform whose agent it ships.
    pub fn agent_platform(self) -> Platform {
        match self {
            Arch::X64 => Platform::WINDOWS_X86_64,
            Arch::Arm64 => Platform::WINDOWS_ARM64,
        }
    }

    /// The platform in the summary's Template (`x64;1033`, `Arm64;1033`).
    fn template(self) -> &'static str {
        self.agent_platform().msi_arch()
    }

    /// In the file name.
    pub fn suffix(self) -> &'static str {
        match self {
            Arch::X64 => "x64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Mixed into the ProductCode and component GUIDs: the two packages are
    /// different products built from different binaries. Empty for x64, whose
    /// codes stay what they were before arm64 existed.
    fn guid_suffix(self) -> &'static str {
        match self {
            Arch::X64 => "",
            Arch::Arm64 => "\0arm64",
        }
    }
}

/// An MSI with what the `.intunewin` needs to describe it.
pub struct BuiltMsi {
    pub name: String,
    pub bytes: std::sync::Arc<Vec<u8>>,
    pub codes: super::intunewin::MsiCodes,
}

impl BuiltMsi {
    /// The MSI as a file of the msi artefact.
    pub fn out_file(&self) -> OutFile {
        OutFile {
            path: self.name.clone(),
            contents: Contents::Built(std::sync::Arc::clone(&self.bytes)),
            mode: super::FILE_MODE,
        }
    }
}

/// Builds the MSI of every architecture whose agent the payload holds.
pub fn build_all(payload: &Payload) -> Result<Vec<BuiltMsi>> {
    let built: Vec<BuiltMsi> = Arch::ALL
        .into_iter()
        .filter_map(|a| Some((a, payload.agents.get(&a.agent_platform())?)))
        .map(|(a, agent)| build_msi(payload, a, agent))
        .collect::<Result<_>>()?;
    if built.is_empty() {
        return Err(TargetError::MissingAgent {
            os: Os::Windows,
            host: crate::platform::Platform::host(),
        });
    }
    Ok(built)
}

/// Builds the MSI for `arch`, shipping `agent`, and keeps its codes.
fn build_msi(
    payload: &Payload,
    arch: Arch,
    agent: &crate::build::payload::AgentBinary,
) -> Result<BuiltMsi> {
    let files = files(payload, &agent.bytes);
    let mtime = time::PrimitiveDateTime::new(payload.build_time.date(), payload.build_time.time());

    let version = format!("1.0.{}", payload.bundle_version.min(65535));
    let upgrade_code = guid(&format!("upgrade\0{}", payload.org));
    let product_code = guid(&format!(
        "product\0{}\0{version}{}",
        payload.org,
        arch.guid_suffix()
    ));
    // The package code: every installed file's name and digest (the agent's was
    // taken in the background while the payload was read), the version, the
    // processor and the fleetkit that wrote the tables.
    let mut content_hash = Sha256::new();
    for (key, _, name, data) in &files {
        let digest = if *key == "FleetkitExe" {
            agent.sha256().to_string()
        } else {
            crate::build::payload::sha256(data)
        };
        content_hash.update(format!("{key}\0{name}\0{digest}\0").as_bytes());
    }
    content_hash
        .update(format!("{version}\0{}\0{}", arch.suffix(), payload.agent_version).as_bytes());
    let package_code = super::uuid_from_digest(&content_hash.finalize());
    let codes = super::intunewin::MsiCodes {
        product_code,
        product_version: version,
        package_code: format!("{{{}}}", package_code.hyphenated()).to_uppercase(),
        upgrade_code,
    };

    // The cabinet is compressed (on every core) while this thread writes the tables.
    let (cab, v4) = std::thread::scope(|scope| {
        let cab = scope.spawn(|| cabinet(&files, mtime));
        let v4 = database(payload, arch, &files, &codes, package_code);
        let cab = cab
            .join()
            .unwrap_or_else(|_| Err(err("cab", "the compression thread failed")));
        (cab, v4)
    });
    let (cab, v4) = (cab?, v4?);
    let msi =
        to_cfb_v3(v4, payload.build_time, (CAB_PLACEHOLDER, &cab)).map_err(|e| err("cfb", e))?;

    let name = format!(
        "{}-fleetkit-{}-{}.msi",
        super::org_slug(&payload.org).replace('_', "-"),
        codes.product_version,
        arch.suffix()
    );
    Ok(BuiltMsi {
        name,
        bytes: std::sync::Arc::new(msi),
        codes,
    })
}

/// The installer database (CFB v4, the cabinet stream a placeholder).
fn database(
    payload: &Payload,
    arch: Arch,
    files: &[FileEntry<'_>],
    codes: &super::intunewin::MsiCodes,
    package_code: uuid::Uuid,
) -> Result<Vec<u8>> {
    let version = &codes.product_version;
    let upgrade_code = &codes.upgrade_code;
    let product_code = &codes.product_code;
    let mut p = Package::create(PackageType::Installer, Cursor::new(Vec::new()))
        .map_err(|e| err("msi", e))?;
    {
        let summary = p.summary_info_mut();
        summary.set_title("Installation Database");
        summary.set_subject(format!("{} fleetkit", payload.display_name));
        summary.set_author(payload.display_name.clone());
        summary.set_comments(format!(
            "fleetkit agent and policy bundle v{}",
            payload.bundle_version
        ));
        summary.set_arch(arch.template());
        summary.set_languages(&[msi::LanguageId::from_id(1033)]);
        summary.set_uuid(package_code);
        summary.set_creating_application(format!("fleetkit {}", payload.agent_version));
        summary.set_creation_time(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(payload.build_time.unix_timestamp().max(0) as u64),
        );
        // 500: Windows Installer 5.0 (MsiLockPermissionsEx; Windows 7 and later);
        // 2 = compressed (source files in the cab).
        summary.set_page_count(500);
        summary.set_word_count(2);
    }
    create_tables(&mut p).map_err(|e| err("msi tables", e))?;
    let insert = |p: &mut Package<Cursor<Vec<u8>>>, table: &str, rows: Vec<Vec<Value>>| {
        p.insert_rows(Insert::into(table).rows(rows))
            .map_err(|e| err(table, e))
    };
    let product_name = format!("{} fleetkit", payload.display_name);
    insert(
        &mut p,
        "Property",
        vec![
            vec![s("ProductCode"), s(product_code.clone())],
            vec![s("ProductName"), s(product_name.clone())],
            vec![s("ProductVersion"), s(version.clone())],
            vec![s("ProductLanguage"), s("1033")],
            vec![s("Manufacturer"), s(payload.display_name.clone())],
            vec![s("UpgradeCode"), s(upgrade_code.clone())],
            vec![s("ALLUSERS"), s("1")],
            vec![s("ARPNOMODIFY"), s("1")],
            vec![s("MsiHiddenProperties"), s("FLEETKIT_ENROLL_TOKEN")],
            vec![
                s("SecureCustomProperties"),
                s(
                    "FLEETKIT_TEAM;FLEETKIT_DEPARTMENT;FLEETKIT_ENVIRONMENT;FLEETKIT_ENROLL_TOKEN;FLEETKIT_OLDER_FOUND",
                ),
            ],
        ],
    )?;
    if let Some(team) = &payload.settings.assignment.team {
        insert(
            &mut p,
            "Property",
            vec![vec![s("FLEETKIT_TEAM"), s(team.clone())]],
        )?;
    }
    insert(
        &mut p,
        "Directory",
        vec![
            vec![s("TARGETDIR"), Value::Null, s("SourceDir")],
            vec![s("ProgramFiles64Folder"), s("TARGETDIR"), s(".")],
            vec![s("INSTALLDIR"), s("ProgramFiles64Folder"), s("fleetkit")],
            vec![s("CommonAppDataFolder"), s("TARGETDIR"), s(".")],
            vec![s("DATADIR"), s("CommonAppDataFolder"), s("fleetkit")],
        ],
    )?;
    let mut components = Vec::new();
    let mut file_rows = Vec::new();
    for (seq, (key, dir, name, data)) in files.iter().enumerate() {
        let component = format!("C_{key}");
        components.push(vec![
            s(component.clone()),
            s(guid(&format!(
                "component\0{upgrade_code}\0{key}{}",
                arch.guid_suffix()
            ))),
            s(*dir),
            i(256), // 64-bit
            Value::Null,
            s(*key),
        ]);
        file_rows.push(vec![
            s(*key),
            s(component),
            s(*name),
            i(data.len() as i32),
            Value::Null,
            Value::Null,
            i(512), // compressed
            i(seq as i32 + 1),
        ]);
    }
    components.push(vec![
        s("C_Enrollment"),
        s(guid(&format!(
            "component\0{upgrade_code}\0enrollment{}",
            arch.guid_suffix()
        ))),
        s("INSTALLDIR"),
        i(256 | 4), // 64-bit, registry key path
        Value::Null,
        s("R_EnrollTeam"),
    ]);
    components.push(vec![
        s("C_Registry"),
        s(guid(&format!(
            "component\0{upgrade_code}\0registry{}",
            arch.guid_suffix()
        ))),
        s("INSTALLDIR"),
        i(256 | 4), // 64-bit, registry key path
        Value::Null,
        s("R_Version"),
    ]);
    insert(&mut p, "Component", components.clone())?;
    insert(&mut p, "File", file_rows)?;
    insert(
        &mut p,
        "Feature",
        vec![vec![
            s("Main"),
            Value::Null,
            // Title is at most 64 characters: a fixed one, not the org's name.
            s("fleetkit agent"),
            s("The fleetkit agent, trust anchors and signed policy bundle"),
            i(1),
            i(1),
            s("INSTALLDIR"),
            i(0),
        ]],
    )?;
    insert(
        &mut p,
        "FeatureComponents",
        components
            .iter()
            .map(|c| vec![s("Main"), c[0].clone()])
            .collect(),
    )?;
    insert(
        &mut p,
        "Media",
        vec![vec![
            i(1),
            i(files.len() as i32),
            Value::Null,
            s("#fleetkit.cab"),
            Value::Null,
            Value::Null,
        ]],
    )?;
    let key = "SOFTWARE\\fleetkit";
    insert(
        &mut p,
        "Registry",
        vec![
            vec![
                s("R_Version"),
                i(2),
                s(key),
                s("Version"),
                s("[ProductVersion]"),
                s("C_Registry"),
            ],
            vec![
                s("R_ProductCode"),
                i(2),
                s(key),
                s("ProductCode"),
                s("[ProductCode]"),
                s("C_Registry"),
            ],
            vec![
                s("R_PolicyVersion"),
                i(2),
                s(key),
                s("PolicyVersion"),
                s(payload.bundle_version.to_string()),
                s("C_Registry"),
            ],
        ]
        .into_iter()
        .chain(ENROLLMENT_VALUES.iter().map(|(id, name, property)| {
            vec![
                s(*id),
                i(2),
                s(crate::agent::windows::ENROLLMENT_KEY),
                s(*name),
                // The prefix keeps a value starting with `#` a string and an empty
                // one a value (see agent::windows::VALUE_PREFIX).
                s(format!(
                    "{}[{property}]",
                    crate::agent::windows::VALUE_PREFIX
                )),
                s("C_Enrollment"),
            ]
        }))
        .collect(),
    )?;
    // The enrollment key holds the token: SYSTEM and Administrators only, no
    // inherited entries (Windows Installer 5.0's SDDL form).
    insert(
        &mut p,
        "MsiLockPermissionsEx",
        vec![vec![
            s("L_Enrollment"),
            s("R_EnrollTeam"),
            s("Registry"),
            s("D:PAI(A;;KA;;;SY)(A;;KA;;;BA)"),
            Value::Null,
        ]],
    )?;
    // Deferred (1024), no impersonation (2048): run as LocalSystem. Type 34: an exe
    // in a directory; 64: its exit code is ignored (a pending registration is fine).
    // They run after WriteRegistryValues, so the enrollment values are there.
    // No property is pasted into a command line: the agent reads the values the
    // Registry table wrote (HKLM\SOFTWARE\fleetkit\Enrollment), whatever they hold.
    let register = "\"[INSTALLDIR]fleetkit.exe\" agent register";
    let task = "\"[SystemFolder]schtasks.exe\" /Create /F /RU SYSTEM /SC MINUTE /MO 15 /TN fleetkit-sync /TR \"\\\"[INSTALLDIR]fleetkit.exe\\\" agent sync\"";
    let untask = "\"[SystemFolder]schtasks.exe\" /Delete /F /TN fleetkit-sync";
    // Claude Code's managed settings: written from the shipped policy on install
    // (every sync keeps them current; someone else's file is left alone), removed
    // on uninstall when fleetkit wrote them, before the binary their hook names
    // goes. Not on the uninstall a major upgrade runs: the new version rewrites them.
    let settings = "\"[INSTALLDIR]fleetkit.exe\" agent claude-settings";
    let unsettings = "\"[INSTALLDIR]fleetkit.exe\" agent claude-settings --remove";
    insert(
        &mut p,
        "CustomAction",
        vec![
            vec![
                s("FleetkitRegister"),
                i(34 | 64 | 1024 | 2048),
                s("INSTALLDIR"),
                s(register),
                Value::Null,
            ],
            vec![
                s("FleetkitSyncTask"),
                i(34 | 64 | 1024 | 2048),
                s("INSTALLDIR"),
                s(task),
                Value::Null,
            ],
            vec![
                s("FleetkitRemoveSyncTask"),
                i(34 | 64 | 1024 | 2048),
                s("INSTALLDIR"),
                s(untask),
                Value::Null,
            ],
            vec![
                s("FleetkitClaudeSettings"),
                i(34 | 64 | 1024 | 2048),
                s("INSTALLDIR"),
                s(settings),
                Value::Null,
            ],
            vec![
                s("FleetkitRemoveClaudeSettings"),
                i(34 | 64 | 1024 | 2048),
                s("INSTALLDIR"),
                s(unsettings),
                Value::Null,
            ],
        ],
    )?;
    let seq = |a: &str, c: Option<&str>, n: i32| vec![s(a), c.map_or(Value::Null, s), i(n)];
    insert(
        &mut p,
        "InstallExecuteSequence",
        vec![
            seq("FindRelatedProducts", None, 25),
            seq("LaunchConditions", None, 100),
            seq("ValidateProductID", None, 700),
            seq("CostInitialize", None, 800),
            seq("FileCost", None, 900),
            seq("CostFinalize", None, 1000),
            seq("MigrateFeatureStates", None, 1200),
            seq("InstallValidate", None, 1400),
            seq("RemoveExistingProducts", None, 1401),
            seq("InstallInitialize", None, 1500),
            seq("FleetkitRemoveSyncTask", Some("REMOVE=\"ALL\""), 1550),
            seq(
                "FleetkitRemoveClaudeSettings",
                Some("REMOVE=\"ALL\" AND NOT UPGRADINGPRODUCTCODE"),
                1560,
            ),
            seq("ProcessComponents", None, 1600),
            seq("UnpublishFeatures", None, 1800),
            seq("RemoveRegistryValues", None, 2600),
            seq("RemoveFiles", None, 3500),
            seq("InstallFiles", None, 4000),
            seq("WriteRegistryValues", None, 5000),
            seq("RegisterUser", None, 6000),
            seq("RegisterProduct", None, 6100),
            seq("PublishFeatures", None, 6300),
            seq("PublishProduct", None, 6400),
            seq("FleetkitClaudeSettings", Some("NOT REMOVE"), 6490),
            seq("FleetkitRegister", Some("NOT REMOVE"), 6500),
            seq("FleetkitSyncTask", Some("NOT REMOVE"), 6510),
            seq("InstallFinalize", None, 6600),
        ],
    )?;
    insert(
        &mut p,
        "Upgrade",
        vec![vec![
            s(upgrade_code.clone()),
            s("0.0.0"),
            s(version.clone()),
            Value::Null,
            i(256),
            Value::Null,
            s("FLEETKIT_OLDER_FOUND"),
        ]],
    )?;
    {
        let mut stream = p
            .write_stream("fleetkit.cab")
            .map_err(|e| err("cab stream", e))?;
        stream
            .write_all(CAB_PLACEHOLDER)
            .map_err(|e| err("cab stream", e))?;
    }
    p.flush().map_err(|e| err("msi", e))?;
    Ok(p.into_inner().map_err(|e| err("msi", e))?.into_inner())
}

/// Rewrites a compound file as CFB version 3 (512-byte sectors, what Authenticode
/// signers expect), copying every storage (with its CLSID) and stream, with every
/// timestamp set to `time`; a stream whose bytes are `substitute.0` is written as
/// `substitute.1`.
fn to_cfb_v3(
    v4: Vec<u8>,
    time: time::OffsetDateTime,
    substitute: (&[u8], &[u8]),
) -> std::io::Result<Vec<u8>> {
    let capacity = v4.len() + substitute.1.len() + 64 * 1024;
    let src = cfb::CompoundFile::open(Cursor::new(v4))?;
    // Sized for the whole file up front: growing a 10 MB buffer by doubling copies
    // it again and again.
    let mut dst = cfb::CompoundFile::create_with_version(
        cfb::Version::V3,
        Cursor::new(Vec::with_capacity(capacity)),
    )?;
    let when =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.unix_timestamp().max(0) as u64);
    let entries: Vec<(std::path::PathBuf, bool, uuid::Uuid)> = src
        .walk()
        .map(|e| (e.path().to_path_buf(), e.is_stream(), *e.clsid()))
        .collect();
    let mut src = src;
    for (path, is_stream, clsid) in &entries {
        if path == std::path::Path::new("/") {
            dst.set_storage_clsid("/", *clsid)?;
            continue;
        }
        if *is_stream {
            let mut data = Vec::new();
            src.open_stream(path)?.read_to_end(&mut data)?;
            let data = match substitute {
                (from, to) if data == from => to,
                _ => &data,
            };
            dst.create_stream(path)?.write_all(data)?;
        } else {
            dst.create_storage(path)?;
            dst.set_storage_clsid(path, *clsid)?;
        }
    }
    for (path, is_stream, _) in &entries {
        if !is_stream {
            dst.set_modified_time(path, when)?;
            // The root entry's creation time must stay zero (MS-CFB 2.6.3);
            // Authenticode tools refuse the file otherwise.
            if path != std::path::Path::new("/") {
                dst.set_created_time(path, when)?;
            }
        }
    }
    dst.flush()?;
    Ok(dst.into_inner().into_inner())
}
