//! Input checks shared by the endpoints: device facts, free text, machine ids.

use super::respond::{Answer, refuse};
use crate::protocol::{DeviceFacts, ErrorCode, is_valid_machine_id};
use axum::http::StatusCode;

/// Longest string accepted in any device fact.
const MAX_FACT_CHARS: usize = 256;

/// A short, printable, bounded text.
pub fn check_text(field: &str, value: &str, required: bool) -> Result<(), String> {
    if required && value.trim().is_empty() {
        return Err(format!("`{field}` is empty"));
    }
    if value.chars().count() > MAX_FACT_CHARS {
        return Err(format!(
            "`{field}` is longer than {MAX_FACT_CHARS} characters"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("`{field}` contains control characters"));
    }
    Ok(())
}

pub fn check_facts(f: &DeviceFacts) -> Answer<()> {
    let bad = |m: String| refuse(StatusCode::BAD_REQUEST, ErrorCode::BadFacts, m);
    if !is_valid_machine_id(&f.machine_id) {
        return Err(bad(
            "`machine_id` must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
                .into(),
        ));
    }
    for (field, value) in [
        ("hostname", &f.hostname),
        ("platform", &f.platform),
        ("os_name", &f.os_name),
        ("os_version", &f.os_version),
        ("arch", &f.arch),
        ("user", &f.user),
        ("agent_version", &f.agent_version),
    ] {
        check_text(field, value, matches!(field, "hostname" | "platform")).map_err(bad)?;
    }
    for (field, value) in [
        ("serial", &f.serial),
        ("team", &f.team),
        ("department", &f.department),
        ("environment", &f.environment),
        ("compliance_zone", &f.compliance_zone),
    ] {
        if let Some(v) = value {
            check_text(field, v, false).map_err(bad)?;
        }
    }
    Ok(())
}
