//! The `.mobileconfig` target: a System-scope configuration profile for Jamf (or
//! any MDM) carrying
//!
//! - the org root CA (`com.apple.security.root`), so the device trusts the server;
//! - machine-certificate enrollment, as fleetkit.yaml's `enrollment.macos_method`
//!   says: `scep` gives a `com.apple.security.scep` payload against the server's
//!   `/scep`, but only when the build was given a SCEP challenge (a payload that
//!   cannot enroll is never shipped; without one the build says how to add it);
//!   `none` gives no certificate payload (the org's own PKI enrolls through
//!   Jamf); `acme` is refused, as the server does not serve ACME yet;
//! - managed preferences (`com.apple.ManagedClient.preferences`) for the agent's
//!   domain `<prefix>.fleetkit`: server URL, org, team, offline mode.
//!
//! Written with the plist crate as XML. PayloadIdentifiers are stable under the
//! org's reverse-DNS prefix and every PayloadUUID is derived from its identifier,
//! so a rebuilt profile replaces the installed one instead of adding a second.
//!
//! Beside it: the Jamf Pro extension attribute script, which reports the Mac's
//! enrollment state, machine id, policy version and last sync from the manifest.

use super::Target;
use super::{Artefact, Result, text};
use crate::build::payload::Payload;
use crate::build::scep::ScepEnrollment;
use crate::workspace::config::MacosEnrollment;
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

fn scep_payload(payload: &Payload, scep: &ScepEnrollment) -> Dictionary {
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
    content.insert("Challenge".into(), scep.challenge.expose().into());
    content.insert("Keysize".into(), Value::Integer(2048.into()));
    content.insert("Key Type".into(), "RSA".into());
    // Signing and encryption (1 | 4): the certificate serves 802.1X, VPN and mTLS,
    // and the server issues digitalSignature + keyEncipherment for RSA keys.
    content.insert("Key Usage".into(), Value::Integer(5.into()));
    // GetCACert answers [RA certificate, issuing CA]; this pins the issuing CA.
    // SHA-1 because that is the length every macOS since 10.7 matches. It pins a
    // certificate rather than checking a signature, so SHA-1 collision attacks do
    // not apply: a forged CA would need a second preimage of this one.
    content.insert(
        "CAFingerprint".into(),
        Value::Data(<sha1::Sha1 as sha1::Digest>::digest(&scep.issuing_ca_der).to_vec()),
    );
    content.insert("KeyIsExtractable".into(), false.into());
    // No Retries/RetryDelay: they only apply to a PENDING answer, which the
    // server never gives.
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

/// Refuses a `macos_method` the profile cannot be built with.
pub fn check(payload: &Payload) -> Result<()> {
    match payload.macos_enrollment {
        MacosEnrollment::Acme => Err(super::TargetError::Setting {
            field: "enrollment.macos_method",
            reason: "`acme` cannot be built: the fleetkit server does not offer ACME yet, so an ACME payload could not enroll".into(),
            help: format!(
                "set `macos_method: scep` under `enrollment:` in fleetkit.yaml (the server enrolls over SCEP at {}/scep), or `none` if Jamf enrolls machine certificates with your own PKI",
                payload.server_url
            ),
        }),
        MacosEnrollment::Scep | MacosEnrollment::None => Ok(()),
    }
}

/// The SCEP enrollment the profile carries: with `scep` and a challenge only.
fn scep_enrollment(payload: &Payload) -> Option<&ScepEnrollment> {
    match payload.macos_enrollment {
        MacosEnrollment::Scep => payload.scep.as_ref(),
        MacosEnrollment::Acme | MacosEnrollment::None => None,
    }
}

/// The profile as a plist value.
pub fn profile(payload: &Payload) -> Result<Value> {
    check(payload)?;
    let certificate = scep_enrollment(payload).map(|scep| scep_payload(payload, scep));
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
    let enrolls = if certificate.is_some() {
        ", enrolls this Mac's machine certificate"
    } else {
        ""
    };
    top.insert(
        "PayloadDescription".into(),
        format!(
            "Trusts the {} root CA{enrolls} and configures the fleetkit agent (policy bundle v{}).",
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
    let content = [
        Some(root_payload(payload)?),
        certificate,
        Some(preferences_payload(payload)),
    ]
    .into_iter()
    .flatten()
    .map(Value::Dictionary)
    .collect();
    top.insert("PayloadContent".into(), Value::Array(content));
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
    let (mut profile_file, mut notes) = match &payload.installer_identity {
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
    if scep_enrollment(payload).is_some() {
        // Anyone holding the profile holds the challenge, and with it enrollments.
        profile_file.mode = crate::fsutil::SECRET_MODE;
        notes.push(
            "the profile carries the SCEP challenge: it is written 0600; upload it to Jamf and keep it out of shared places".into(),
        );
    } else if payload.macos_enrollment == MacosEnrollment::Scep {
        notes.push(
            "the profile has no machine-certificate payload, as no SCEP challenge was given; to add one, run `fleetkit token create --scep --team TEAM --uses N > FILE` (N: how many Macs will enroll; the challenge enrolls only until the token expires, see --expires), then `fleetkit build --target mobileconfig --scep-challenge-file FILE`".into(),
        );
    }
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
