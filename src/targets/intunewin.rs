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

use super::{Artefact, Contents, OutFile, Result, TargetError};
use crate::build::payload::Payload;
use crate::formats::xar::xml_escape;
use crate::workspace::config::Target;
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

/// Wraps `msi` (named `msi_name`).
pub fn build(payload: &Payload, msi_name: &str, msi: &[u8], codes: &MsiCodes) -> Result<Artefact> {
    let inner = zip_of(&[(msi_name, msi)], payload.build_time, true)?;
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
        publisher = x(&payload.display_name),
        product = x(&codes.product_code),
        version = x(&codes.product_version),
        package = x(&codes.package_code),
        upgrade = x(&codes.upgrade_code),
    );
    let outer = zip_of(
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
        payload.build_time,
        false,
    )?;
    let name = format!("{}.intunewin", msi_name.trim_end_matches(".msi"));
    Ok(Artefact {
        target: Target::Intunewin,
        dir: "windows".into(),
        files: vec![OutFile {
            path: name,
            contents: Contents::Built(std::sync::Arc::new(outer)),
            mode: super::FILE_MODE,
        }],
        notes: vec![],
    })
}
