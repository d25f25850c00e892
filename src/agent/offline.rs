//! The offline modes (DESIGN.md security rule 4), as one pure decision: given the
//! mode, what the device holds and the time, which policy is in force when the
//! server cannot confirm it.
//!
//! - `fail-closed`: nothing is in force; enforcement refuses everything until the
//!   server answers again.
//! - `cached-with-expiry` (default, 24 h): the cached policy, until `max_age` after
//!   the server last confirmed it (and never past the bundle's own expiry).
//! - `cached-indefinite`: the cached policy, however old (least secure; a bundle past
//!   its own expiry is still used, with a warning).
//! - `default-policy`: the policy shipped with the artefact.

use crate::workspace::config::OfflineMode;
use time::{Duration, OffsetDateTime};

/// What the device holds, as far as the decision is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Holdings {
    /// The cached (last verified) policy: its version and expiry.
    pub cached: Option<(u64, OffsetDateTime)>,
    /// The bundle shipped with the artefact, if it verifies.
    pub shipped: Option<(u64, OffsetDateTime)>,
    /// When the server last confirmed the cached policy.
    pub last_confirmed: Option<OffsetDateTime>,
}

/// Which policy is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InForce {
    /// The cached policy of this version.
    Cached {
        version: u64,
        warning: Option<String>,
    },
    /// The shipped default policy of this version.
    Default { version: u64 },
    /// None: enforcement refuses everything. The reason says why.
    Nothing { reason: String },
}

/// The decision for a device that cannot reach (or cannot believe) the server.
pub fn decide(
    mode: OfflineMode,
    max_age: Duration,
    held: &Holdings,
    now: OffsetDateTime,
) -> InForce {
    match mode {
        OfflineMode::FailClosed => InForce::Nothing {
            reason: "offline mode fail-closed: no policy is in force until the server answers".into(),
        },
        OfflineMode::CachedWithExpiry => {
            let Some((version, expires)) = held.cached else {
                return InForce::Nothing {
                    reason: "offline mode cached-with-expiry: no cached policy".into(),
                };
            };
            let Some(confirmed) = held.last_confirmed else {
                return InForce::Nothing {
                    reason: "offline mode cached-with-expiry: the server never confirmed the cached policy".into(),
                };
            };
            // A damaged state could put this past year 9999: then it is never usable
            // rather than a panic.
            let usable_until = confirmed.checked_add(max_age).unwrap_or(confirmed);
            if now >= expires {
                InForce::Nothing {
                    reason: format!(
                        "offline mode cached-with-expiry: cached policy v{version} expired at {}",
                        crate::clock::rfc3339(expires)
                    ),
                }
            } else if now >= usable_until {
                InForce::Nothing {
                    reason: format!(
                        "offline mode cached-with-expiry: cached policy v{version} was last confirmed at {}, more than {} ago",
                        crate::clock::rfc3339(confirmed),
                        hours(max_age)
                    ),
                }
            } else {
                InForce::Cached {
                    version,
                    warning: None,
                }
            }
        }
        OfflineMode::CachedIndefinite => match held.cached {
            Some((version, expires)) => InForce::Cached {
                version,
                warning: (now >= expires).then(|| {
                    format!(
                        "cached policy v{version} expired at {}; kept because the offline mode is cached-indefinite",
                        crate::clock::rfc3339(expires)
                    )
                }),
            },
            None => InForce::Nothing {
                reason: "offline mode cached-indefinite: no cached policy".into(),
            },
        },
        OfflineMode::DefaultPolicy => match held.shipped {
            Some((version, _)) => InForce::Default { version },
            None => InForce::Nothing {
                reason: "offline mode default-policy: the policy shipped with the installer is missing or does not verify".into(),
            },
        },
    }
}

fn hours(d: Duration) -> String {
    format!("{} h", d.whole_hours())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn held(confirmed_hours_ago: i64) -> Holdings {
        Holdings {
            cached: Some((4, NOW + Duration::days(10))),
            shipped: Some((1, NOW + Duration::days(5))),
            last_confirmed: Some(NOW - Duration::hours(confirmed_hours_ago)),
        }
    }

    #[test]
    fn each_mode_decides_as_named() {
        let day = Duration::hours(24);
        assert!(matches!(
            decide(OfflineMode::FailClosed, day, &held(0), NOW),
            InForce::Nothing { .. }
        ));
        assert_eq!(
            decide(OfflineMode::CachedWithExpiry, day, &held(23), NOW),
            InForce::Cached {
                version: 4,
                warning: None
            }
        );
        assert!(matches!(
            decide(OfflineMode::CachedWithExpiry, day, &held(25), NOW),
            InForce::Nothing { .. }
        ));
        assert!(matches!(
            decide(OfflineMode::CachedIndefinite, day, &held(24 * 400), NOW),
            InForce::Cached {
                version: 4,
                warning: None
            }
        ));
        assert_eq!(
            decide(OfflineMode::DefaultPolicy, day, &held(0), NOW),
            InForce::Default { version: 1 }
        );
    }

    #[test]
    fn an_expired_cache_is_never_used_by_cached_with_expiry() {
        let mut h = held(1);
        h.cached = Some((4, NOW - Duration::minutes(1)));
        let d = decide(OfflineMode::CachedWithExpiry, Duration::hours(24), &h, NOW);
        assert!(
            matches!(d, InForce::Nothing { ref reason } if reason.contains("expired")),
            "{d:?}"
        );
        let d = decide(OfflineMode::CachedIndefinite, Duration::hours(24), &h, NOW);
        assert!(
            matches!(
                d,
                InForce::Cached {
                    warning: Some(_),
                    ..
                }
            ),
            "{d:?}"
        );
    }
}
