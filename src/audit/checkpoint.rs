//! Checkpoints: the device key's signature over the chain's head.
//!
//! A hash chain alone shows that records follow one another; whoever can rewrite
//! the whole file can rebuild it. A checkpoint closes that: an `audit.checkpoint`
//! record whose `detail` holds the seq and hash of the record before it, an ECDSA
//! P-256 signature over them made with the device key (0600, readable by the agent
//! only), and the device's certificate chain, so anyone holding the org's trust
//! anchors can check it — on the device, on the server, or an auditor with a copy.
//! The newest checkpoint is also kept beside the log (`checkpoint.json`), so a log
//! cut off after it is found out, and the server holds a copy of each.
//!
//! The agent signs one at every run that touches the log (`agent sync`, `agent
//! audit collect`); the records after the newest checkpoint are chained but not yet
//! signed, and verification says how many.

use super::log::{AuditLog, Result};
use super::record::{Event, Record};
use base64::Engine as _;
use time::OffsetDateTime;

/// The signature algorithm named in a checkpoint.
pub const ALGORITHM: &str = "ecdsa-p256-sha256";
/// The file beside the log holding the newest checkpoint's line.
pub const LATEST_FILE: &str = "checkpoint.json";

/// What a checkpoint signs.
pub fn signed_message(machine_id: &str, covers_seq: u64, covers_hash: &str, time: &str) -> String {
    format!("fleetkit-audit-checkpoint-v1\n{machine_id}\n{covers_seq}\n{covers_hash}\n{time}\n")
}

/// The device that signs: its key, certificate chain and ids.
pub struct Signer<'a> {
    pub key: &'a rcgen::KeyPair,
    pub chain_pem: &'a str,
    pub machine_id: &'a str,
    pub device: Option<&'a str>,
}

/// Appends a checkpoint over the chain's head, unless the head is already one
/// (nothing new to sign). Returns it when one was written.
pub fn sign(log: &AuditLog, signer: &Signer<'_>, now: OffsetDateTime) -> Result<Option<Record>> {
    use rcgen::SigningKey as _;
    let _lock = log.lock()?;
    let head = log.head_locked()?;
    if head.seq == 0 || head.last_event == Some(Event::Checkpoint) {
        return Ok(None);
    }
    let mut record = Record::new(Event::Checkpoint, now);
    let message = signed_message(signer.machine_id, head.seq, &head.hash, &record.time);
    let signature = signer
        .key
        .sign(message.as_bytes())
        .map_err(|e| super::log::AuditError::Sign(e.to_string()))?;
    record.machine_id = Some(signer.machine_id.to_string());
    record.device = signer.device.map(str::to_string);
    record = record
        .with_detail("covers_seq", head.seq)
        .with_detail("covers_hash", head.hash)
        .with_detail("algorithm", ALGORITHM)
        .with_detail(
            "signature",
            base64::engine::general_purpose::STANDARD.encode(signature),
        )
        .with_detail("certificate_chain", signer.chain_pem);
    let written = log.append_locked(vec![record], now)?;
    let record = written
        .into_iter()
        .find(|r| r.event == Event::Checkpoint)
        .ok_or_else(|| super::log::AuditError::Sign("the checkpoint was not written".into()))?;
    let path = log.dir().join(LATEST_FILE);
    crate::fsutil::write_atomic(
        &path,
        record.to_line().as_bytes(),
        crate::fsutil::SECRET_MODE,
    )
    .map_err(|e| super::log::AuditError::Io {
        action: "cannot write",
        path: path.clone(),
        source: e.source,
    })?;
    Ok(Some(record))
}

/// What a checkpoint says, once its signature and certificate are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub seq: u64,
    pub covers_seq: u64,
    pub covers_hash: String,
    pub time: String,
    pub certificate_fingerprint: String,
}

/// Checks a checkpoint record: its certificate chain leads to one of `roots_pem`
/// (the org root CA in the trust anchors), names the record's machine and was
/// valid when it was signed, and its key signed what the record says.
pub fn check(record: &Record, roots_pem: &[String]) -> std::result::Result<Checked, String> {
    if record.event != Event::Checkpoint {
        return Err("not a checkpoint".into());
    }
    let text = |key: &str| {
        record
            .detail(key)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("the checkpoint has no `{key}`"))
    };
    let covers_seq = record
        .detail("covers_seq")
        .and_then(|v| v.as_u64())
        .ok_or("the checkpoint has no `covers_seq`")?;
    let covers_hash = text("covers_hash")?;
    if text("algorithm")? != ALGORITHM {
        return Err(format!("unknown algorithm `{}`", text("algorithm")?));
    }
    let machine_id = record
        .machine_id
        .as_deref()
        .ok_or("the checkpoint names no machine")?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(text("signature")?)
        .map_err(|e| format!("the signature is not base64: {e}"))?;
    let at = OffsetDateTime::parse(&record.time, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("bad time `{}`: {e}", record.time))?;
    let (chain, leaf_key) =
        crate::agent::identity::check_issued(text("certificate_chain")?, roots_pem, machine_id, at)
            .map_err(|e| e.to_string())?;
    let message = signed_message(machine_id, covers_seq, covers_hash, &record.time);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &leaf_key)
        .verify(message.as_bytes(), &signature)
        .map_err(|_| {
            "the signature does not verify with the device certificate's key".to_string()
        })?;
    Ok(Checked {
        seq: record.seq,
        covers_seq,
        covers_hash: covers_hash.to_string(),
        time: record.time.clone(),
        certificate_fingerprint: chain.fingerprint,
    })
}
