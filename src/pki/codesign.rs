//! The code signature of the darwin agent: Apple silicon runs no unsigned code, so the
//! pkg ships the agent signed, each slice of the universal binary on its own.
//!
//! ```text
//! Mach-O slice
//!   LC_CODE_SIGNATURE ──▶ SuperBlob at the end of __LINKEDIT
//!     CodeDirectory   identifier, flags (adhoc | runtime), team id, SHA-256 of every
//!                     4 KiB page of the slice and of the other blobs
//!     Requirements    the designated requirement (Developer ID only)
//!     CMS SignedData  over the CodeDirectory, with the certificate chain and the
//!                     signing time (Developer ID only)
//! ```
//!
//! **Ad hoc** (the default) is a CodeDirectory without a certificate: the kernel runs
//! it on Apple silicon, and a pkg installed by Installer or an MDM carries no
//! quarantine, so Gatekeeper never asks for more. **Developer ID**: with the org's
//! Developer ID Application identity (`--codesign-identity`, loaded as the installer
//! identity is) the CodeDirectory is signed, with the hardened runtime flag that
//! notarization asks for. apple-codesign (the library behind `rcodesign`) writes the
//! signature; `apple_codesign::verify_macho_data` (what `rcodesign verify` runs) reads
//! it back in the tests.
//!
//! Deterministic: an ad hoc signature holds no time; a CMS signature's signing time is
//! the identity's (the build time) and RSA PKCS#1 v1.5 signatures have no randomness;
//! no time-stamp server is asked.

use super::installer::InstallerIdentity;
use apple_codesign::{CodeSignatureFlags, MachOSigner, SettingsScope, SigningSettings};

#[derive(Debug, thiserror::Error)]
pub enum CodesignError {
    #[error("cannot code-sign the {what}: {reason}")]
    Sign { what: String, reason: String },
}

pub type Result<T, E = CodesignError> = std::result::Result<T, E>;

/// Signs one Mach-O (thin or universal) as `identifier`: ad hoc without an identity,
/// with it and the hardened runtime otherwise. Any existing signature (zig's linker
/// signs arm64 ad hoc) is replaced. `what` names the binary in errors.
pub fn sign_macho(
    what: &str,
    binary: &[u8],
    identifier: &str,
    identity: Option<&InstallerIdentity>,
) -> Result<Vec<u8>> {
    let fail = |e: apple_codesign::AppleCodesignError| CodesignError::Sign {
        what: what.into(),
        reason: e.to_string(),
    };
    let mut settings = SigningSettings::default();
    settings.set_binary_identifier(SettingsScope::Main, identifier);
    if let Some(identity) = identity {
        let chain = identity.chain();
        settings.set_signing_key(identity.key(), chain[0].clone());
        for cert in &chain[1..] {
            settings.chain_certificate(cert.clone());
        }
        // A certificate Apple issued gets Apple's intermediates from the crate's own
        // copies when the identity file lacks them.
        settings.chain_apple_certificates();
        settings.set_signing_time(identity.signing_time());
        // The team id: the certificate's OU, when Apple issued the certificate.
        settings.set_team_id_from_signing_certificate();
        settings.set_code_signature_flags(SettingsScope::Main, CodeSignatureFlags::RUNTIME);
    }
    let signer = MachOSigner::new(binary).map_err(fail)?;
    let mut out = Vec::with_capacity(binary.len() + 64 * 1024);
    signer
        .write_signed_binary(&settings, &mut out)
        .map_err(fail)?;
    Ok(out)
}
