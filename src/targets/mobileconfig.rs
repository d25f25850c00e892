//! The `.mobileconfig` target: a System-scope configuration profile for Jamf (or
//! any MDM) carrying
//!
//! - the org root CA (`com.apple.security.root`), so the device trusts the server;
//! - machine-certificate enrollment, as fleetkit.yaml's `enrollment.macos_method`
//!   says: `com.apple.security.acme` (hardware-bound key in the Secure Enclave,
//!   with attestation) or `com.apple.security.scep`;
//! - managed preferences (`com.apple.ManagedClient.preferences`) for the agent's
//!   domain `<prefix>.fleetkit`: server URL, org, team, offline mode.
//!
//! Written with the plist crate as XML. PayloadIdentifiers are stable under the
//! org's reverse-DNS prefix and every PayloadUUID is derived from its identifier,
//! so a rebuilt profile replaces the installed one instead of adding a second.
//!
//! Beside it: the Jamf Pro extension attribute script, which reports the Mac's
//! enrollment state, machine id, policy version and last sync from the manifest.

use super::{Artefact, Result, text};
use crate::build::payload::Payload;
use crate::workspace::config::{MacosEnrollment, Target};
use plist::{Dictionary, Value};
use sha2::{Digest, Sha256};

const EXTENSION_ATTRIBUTE: &[(&str, &str)] = &[(
    "jamf-extension-attribute.sh",
    include_str!("../../templates/jamf/extension-attribute.sh"),
)];

/// A UUID derived from `name` (SHA-256, with the version-5 and RFC 4122 variant
/// bits set): the same identifier always gets the same UUID.
pub fn stable_uuid(name: &str) -> String {
    let d = Sha256::digest(format!("fleetkit profile uuid\0{name}").as_bytes());
    super::uuid_from_digest(&d)
        .hyphenated()
        .to_string()
        .to_uppercase()
}

/// The managed-preferences domain the agent reads on macOS.
pub fn preference_domain(payload: &Payload) -> String {
    format!("{}.fleetkit", payload.identifier_prefix)
}

fn payload_dict(payload: &Payload, kind: &str, suffix: &str, display: &str) -> Dictionary {
    let identifier = format!("{}.fleetkit.{suffix}", payload.identifier_prefix);
    let mut d = Dictionary::new();
    d.insert("PayloadType".into(), kind.into());
    d.insert("PayloadVersion".into(), Value::Integer(1.into()));
    d.insert("PayloadUUID".into(), stable_uuid(&identifier).into());
    d.insert("PayloadIdentifier".into(), identifier.into());
    d.insert("PayloadDisplayName".into(), display.into());
    d.insert(
        "PayloadOrganization".into(),
        payload.display_name.clone().into(),
    );
    d
}

/// The machine certificate's subject: CN = the device (an MDM variable the MDM
/// fills per device), O = the org.
fn subject(payload: &Payload) -> Value {
    let rdn = |oid: &str, v: &str| Value::Array(vec![Value::Array(vec![oid.into(), v.into()])]);
    Value::Array(vec![rdn("O", &payload.org), rdn("CN", "$SERIALNUMBER")])
}

fn root_payload(payload: &Payload) -> Result<Dictionary> {
    let der = crate::agent::identity::pem_certificates(&payload.root_ca_pem)
        .ok()
        .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)))
        .ok_or_else(|| super::TargetError::Template {
            name: "root CA".into(),
            reason: "the anchors' root CA is not a PEM certificate".into(),
        })?;
    let mut d = payload_dict(
        payload,
        "com.apple.security.root",
        "root-ca",
        &format!("{} root CA", payload.display_name),
    );
    d.insert(
        "PayloadCertificateFileName".into(),
        format!("{}-root-ca.cer", super::org_slug(&payload.org)).into(),
    );
    d.insert("PayloadContent".into(), Value::Data(der));
    Ok(d)
}

fn acme_payload(payload: &Payload) -> Dictionary {
    let mut d = payload_dict(
        payload,
        "com.apple.security.acme",
        "machine-certificate",
        &format!("{} machine certificate", payload.display_name),
    );
    d.insert(
        "DirectoryURL".into(),
        format!("{}/acme/directory", payload.server_url).into(),
    );
    // Unique per device, so the ACME server issues one certificate per device.
    d.insert("ClientIdentifier".into(), "$UDID".into());
    d.insert("KeyType".into(), "ECSECPrimeRandom".into());
    d.insert("KeySize".into(), Value::Integer(384.into()));
    d.insert("HardwareBound".into(), true.into());
    d.insert("Attest".into(), true.into());
    d.insert("Subject".into(), subject(payload));
    // Digital signature only; clientAuth.
    d.insert("UsageFlags".into(), Value::Integer(1.into()));
    d.insert(
        "ExtendedKeyUsage".into(),
        Value::Array(vec!["1.3.6.1.5.5.7.3.2".into()]),
    );
    d.insert("KeyIsExtractable".into(), false.into());
    d
}

fn scep_payload(payload: &Payload) -> Dictionary {
    let mut d = payload_dict(
        payload,
        "com.apple.security.scep",
        "machine-certificate",
        &format!("{} machine certificate", payload.display_name),
    );
    let mut content = Dictionary::new();
    content.insert("URL".into(), format!("{}/scep", payload.server_url).into());
    content.insert("Name".into(), payload.display_name.clone().into());
    content.insert("Subject".into(), subject(payload));
    content.insert("Keysize".into(), Value::Integer(2048.into()));
    content.insert("Key Type".into(), "RSA".into());
    // Signing only (1); encryption is not needed for a client certificate.
    content.insert("Key Usage".into(), Value::Integer(1.into()));
    content.insert("KeyIsExtractable".into(), false.into());
    d.insert("PayloadContent".into(), Value::Dictionary(content));
    d
}

fn preferences_payload(payload: &Payload) -> Dictionary {
    let mut d = payload_dict(
        payload,
        "com.apple.ManagedClient.preferences",
        "agent-settings",
        "fleetkit agent settings",
    );
    let mut settings = Dictionary::new();
    settings.insert("ServerURL".into(), payload.server_url.clone().into());
    settings.insert("Org".into(), payload.org.clone().into());
    if let Some(team) = &payload.settings.assignment.team {
        settings.insert("Team".into(), team.clone().into());
    }
    settings.insert(
        "OfflineMode".into(),
        payload.settings.offline_mode.as_str().into(),
    );
    settings.insert(
        "OfflineMaxAgeHours".into(),
        Value::Integer(payload.settings.offline_max_age_hours.into()),
    );
    let mut forced_item = Dictionary::new();
    forced_item.insert(
        "mcx_preference_settings".into(),
        Value::Dictionary(settings),
    );
    let mut domain = Dictionary::new();
    domain.insert(
        "Forced".into(),
        Value::Array(vec![Value::Dictionary(forced_item)]),
    );
    let mut content = Dictionary::new();
    content.insert(preference_domain(payload), Value::Dictionary(domain));
    d.insert("PayloadContent".into(), Value::Dictionary(content));
    d
}

/// The profile as a plist value.
pub fn profile(payload: &Payload) -> Result<Value> {
    let certificate = match payload.macos_enrollment {
        MacosEnrollment::Acme => acme_payload(payload),
        MacosEnrollment::Scep => scep_payload(payload),
    };
    let identifier = format!("{}.fleetkit", payload.identifier_prefix);
    let mut top = Dictionary::new();
    top.insert("PayloadType".into(), "Configuration".into());
    top.insert("PayloadVersion".into(), Value::Integer(1.into()));
    top.insert("PayloadUUID".into(), stable_uuid(&identifier).into());
    top.insert("PayloadIdentifier".into(), identifier.into());
    top.insert(
        "PayloadDisplayName".into(),
        format!("{} fleetkit", payload.display_name).into(),
    );
    top.insert(
        "PayloadDescription".into(),
        format!(
            "Trusts the {} root CA, enrolls this Mac's machine certificate and configures the fleetkit agent (policy bundle v{}).",
            payload.display_name, payload.bundle_version
        )
        .into(),
    );
    top.insert(
        "PayloadOrganization".into(),
        payload.display_name.clone().into(),
    );
    top.insert("PayloadScope".into(), "System".into());
    top.insert("PayloadRemovalDisallowed".into(), true.into());
    top.insert(
        "PayloadContent".into(),
        Value::Array(vec![
            Value::Dictionary(root_payload(payload)?),
            Value::Dictionary(certificate),
            Value::Dictionary(preferences_payload(payload)),
        ]),
    );
    Ok(Value::Dictionary(top))
}

pub fn build(payload: &Payload) -> Result<Artefact> {
    let mut xml = Vec::new();
    profile(payload)?
        .to_writer_xml(&mut xml)
        .map_err(|e| super::TargetError::Template {
            name: "mobileconfig".into(),
            reason: e.to_string(),
        })?;
    xml.push(b'\n');
    let name = format!("{}.fleetkit.mobileconfig", payload.identifier_prefix);
    // Signed: CMS SignedData with the profile embedded, as MDMs upload it.
    let (profile_file, notes) = match &payload.installer_identity {
        Some(identity) => {
            let der = identity
                .cms_embedded(&xml)
                .map_err(|e| super::TargetError::Template {
                    name: "mobileconfig signature".into(),
                    reason: e.to_string(),
                })?;
            (
                super::OutFile {
                    path: name.clone(),
                    contents: super::Contents::Built(std::sync::Arc::new(der)),
                    mode: super::FILE_MODE,
                },
                vec![format!("profile signed by {}", identity.subject())],
            )
        }
        None => {
            let text_xml = String::from_utf8(xml).map_err(|e| super::TargetError::Template {
                name: "mobileconfig".into(),
                reason: e.to_string(),
            })?;
            (text(&name, text_xml), vec![])
        }
    };
    // The Jamf extension attribute travels with the profile: both go to Jamf Pro.
    let env = super::environment(EXTENSION_ATTRIBUTE, super::Syntax::Jinja)?;
    let ea = super::render(
        &env,
        EXTENSION_ATTRIBUTE[0].0,
        &super::ansible::context(payload),
    )?;
    let mut ea_file = text(EXTENSION_ATTRIBUTE[0].0, ea);
    ea_file.mode = super::EXEC_MODE;
    Ok(Artefact {
        target: Target::Mobileconfig,
        dir: "macos".into(),
        files: vec![profile_file, ea_file],
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let a = stable_uuid("com.acme.fleetkit");
        assert_eq!(a, stable_uuid("com.acme.fleetkit"));
        assert_ne!(a, stable_uuid("com.acme.fleetkit.root-ca"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
        assert!(matches!(&a[19..20], "8" | "9" | "A" | "B"));
    }
}
