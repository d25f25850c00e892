//! The `.intunewin` target: the MSI wrapped for Intune's Win32 app type, the way
//! the Win32 Content Prep Tool wraps it.
//!
//! ```text
//! <name>.intunewin (zip)
//!   IntuneWinPackage/Contents/IntunePackage.intunewin   HMAC (32) | IV (16) | AES-256-CBC(PKCS#7)
//!                                                        of a zip holding the MSI
//!   IntuneWinPackage/Metadata/Detection.xml              the keys, IV, MAC, SHA-256 digest of
//!                                                        the zip, and the MsiInfo block
//! ```
//!
//! The MAC is HMAC-SHA256 over IV and ciphertext with the MAC key. The keys and IV
//! are derived from the content (SHA-256 with distinct labels): Intune's encryption
//! protects the upload and the keys travel beside the content in Detection.xml
//! anyway, and derived keys keep the artefact reproducible.

use super::Target;
use super::escape::xml as xml_escape;
use super::{Artefact, Contents, OutFile, Result, TargetError};
use crate::build::payload::Payload;
use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::io::{Cursor, Write};

fn err(what: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Template {
        name: what.into(),
        reason: e.to_string(),
    }
}

fn derived(label: &str, content: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!("fleetkit intunewin {label}\0").as_bytes());
    h.update(content);
    h.finalize().into()
}

fn zip_of(files: &[(&str, &[u8])], time: time::OffsetDateTime, deflate: bool) -> Result<Vec<u8>> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stamp = zip::DateTime::from_date_and_time(
        time.year().clamp(1980, 2107) as u16,
        time.month() as u8,
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
    )
    .map_err(|e| err("zip time", e))?;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        })
        .last_modified_time(stamp)
        .unix_permissions(0o644);
    for (name, data) in files {
        z.start_file(*name, options).map_err(|e| err("zip", e))?;
        z.write_all(data).map_err(|e| err("zip", e))?;
    }
    Ok(z.finish().map_err(|e| err("zip", e))?.into_inner())
}

/// The MSI's codes, for the MsiInfo block.
pub struct MsiCodes {
    pub product_code: String,
    pub product_version: String,
    pub package_code: String,
    pub upgrade_code: String,
}

/// Wraps `msi` (named `msi_name`), built in this run.
pub fn build(payload: &Payload, msi_name: &str, msi: &[u8], codes: &MsiCodes) -> Result<Artefact> {
    let outer = wrap(
        msi_name,
        msi,
        codes,
        &payload.display_name,
        payload.build_time,
    )?;
    let name = format!("{}.intunewin", msi_name.trim_end_matches(".msi"));
    Ok(Artefact {
        target: Target::Intunewin,
        files: vec![OutFile {
            path: name,
            contents: Contents::Built(std::sync::Arc::new(outer)),
            mode: super::FILE_MODE,
        }],
        notes: vec![],
    })
}

/// The codes and publisher of an existing MSI (e.g. one signed after the build):
/// ProductCode, ProductVersion, UpgradeCode and Manufacturer from its Property
/// table, the package code from its summary.
pub fn read_msi(msi: &[u8]) -> Result<(MsiCodes, String)> {
    let not_msi =
        |e: &dyn std::fmt::Display| err("msi", format!("not a Windows Installer package: {e}"));
    let mut package = msi::Package::open(Cursor::new(msi)).map_err(|e| not_msi(&e))?;
    if package.package_type() != msi::PackageType::Installer {
        return Err(not_msi(&"a patch or transform, not an installer"));
    }
    let package_code = package
        .summary_info()
        .uuid()
        .map(|u| format!("{{{}}}", u.hyphenated()).to_uppercase())
        .ok_or_else(|| not_msi(&"the summary has no package code"))?;
    let mut properties = std::collections::BTreeMap::new();
    let rows = package
        .select_rows(msi::Select::table("Property"))
        .map_err(|e| not_msi(&e))?;
    for row in rows {
        if let (Some(name), Some(value)) = (row[0].as_str(), row[1].as_str()) {
            properties.insert(name.to_string(), value.to_string());
        }
    }
    let get = |name: &str| {
        properties
            .get(name)
            .cloned()
            .ok_or_else(|| not_msi(&format!("its Property table has no {name}")))
    };
    Ok((
        MsiCodes {
            product_code: get("ProductCode")?,
            product_version: get("ProductVersion")?,
            package_code,
            upgrade_code: get("UpgradeCode")?,
        },
        get("Manufacturer")?,
    ))
}

/// The `.intunewin` bytes wrapping `msi`.
pub fn wrap(
    msi_name: &str,
    msi: &[u8],
    codes: &MsiCodes,
    publisher: &str,
    time: time::OffsetDateTime,
) -> Result<Vec<u8>> {
    let inner = zip_of(&[(msi_name, msi)], time, true)?;
    let key = derived("encryption key", &inner);
    let mac_key = derived("mac key", &inner);
    let iv: [u8; 16] = derived("iv", &inner)[..16]
        .try_into()
        .map_err(|e| err("iv", e))?;
    let ciphertext = cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec::<Pkcs7>(&inner);
    let mut mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&mac_key).map_err(|e| err("hmac", e))?;
    mac.update(&iv);
    mac.update(&ciphertext);
    let tag = mac.finalize().into_bytes();
    let mut encrypted = Vec::with_capacity(48 + ciphertext.len());
    encrypted.extend_from_slice(&tag);
    encrypted.extend_from_slice(&iv);
    encrypted.extend_from_slice(&ciphertext);

    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let x = |s: &str| xml_escape(s);
    let detection = format!(
        "<ApplicationInfo xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ToolVersion=\"1.8.6.0\">\n  <Name>{name}</Name>\n  <UnencryptedContentSize>{size}</UnencryptedContentSize>\n  <FileName>IntunePackage.intunewin</FileName>\n  <SetupFile>{name}</SetupFile>\n  <EncryptionInfo>\n    <EncryptionKey>{key}</EncryptionKey>\n    <MacKey>{mac_key}</MacKey>\n    <InitializationVector>{iv}</InitializationVector>\n    <Mac>{tag}</Mac>\n    <ProfileIdentifier>ProfileVersion1</ProfileIdentifier>\n    <FileDigest>{digest}</FileDigest>\n    <FileDigestAlgorithm>SHA256</FileDigestAlgorithm>\n  </EncryptionInfo>\n  <MsiInfo>\n    <MsiPublisher>{publisher}</MsiPublisher>\n    <MsiProductCode>{product}</MsiProductCode>\n    <MsiProductVersion>{version}</MsiProductVersion>\n    <MsiPackageCode>{package}</MsiPackageCode>\n    <MsiUpgradeCode>{upgrade}</MsiUpgradeCode>\n    <MsiExecutionContext>System</MsiExecutionContext>\n    <MsiRequiresLogon>false</MsiRequiresLogon>\n    <MsiRequiresReboot>false</MsiRequiresReboot>\n    <MsiIsMachineInstall>true</MsiIsMachineInstall>\n    <MsiIsUserInstall>false</MsiIsUserInstall>\n    <MsiIncludesServices>false</MsiIncludesServices>\n    <MsiIncludesODBCDataSource>false</MsiIncludesODBCDataSource>\n    <MsiContainsSystemRegistryKeys>true</MsiContainsSystemRegistryKeys>\n    <MsiContainsSystemFolders>false</MsiContainsSystemFolders>\n  </MsiInfo>\n</ApplicationInfo>\n",
        name = x(msi_name),
        size = inner.len(),
        key = b64(&key),
        mac_key = b64(&mac_key),
        iv = b64(&iv),
        tag = b64(&tag),
        digest = b64(&Sha256::digest(&inner)),
        publisher = x(publisher),
        product = x(&codes.product_code),
        version = x(&codes.product_version),
        package = x(&codes.package_code),
        upgrade = x(&codes.upgrade_code),
    );
    zip_of(
        &[
            (
                "IntuneWinPackage/Contents/IntunePackage.intunewin",
                &encrypted,
            ),
            (
                "IntuneWinPackage/Metadata/Detection.xml",
                detection.as_bytes(),
            ),
        ],
        time,
        false,
    )
}
