//! The one place fleetkit reads the time.
//!
//! Builds honour `SOURCE_DATE_EPOCH` so that the same inputs give the same bytes;
//! verification takes its "now" once, at the start, and passes it down, so that every
//! check of one run agrees on the time (DESIGN.md security rule 2).

use time::OffsetDateTime;

/// Error for a `SOURCE_DATE_EPOCH` that is set but not a Unix timestamp.
#[derive(Debug, thiserror::Error)]
#[error(
    "SOURCE_DATE_EPOCH={value:?} is not a Unix timestamp in seconds; unset it or give e.g. SOURCE_DATE_EPOCH=1764547200"
)]
pub struct BadSourceDateEpoch {
    pub value: String,
}

/// The current time, truncated to whole seconds (all our timestamps are RFC 3339
/// without fractions).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// `SOURCE_DATE_EPOCH` when set, otherwise the current time.
pub fn build_time() -> Result<OffsetDateTime, BadSourceDateEpoch> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
            .ok_or(BadSourceDateEpoch { value }),
        Err(_) => Ok(now()),
    }
}

/// Formats a timestamp as RFC 3339 (`2025-12-01T00:00:00Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A time as Unix milliseconds (the audit store's time columns).
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
