//! The open-file limit (`RLIMIT_NOFILE`) against `fleetkit serve --max-connections`.
//!
//! Every connection is a file descriptor, and so are the listener, the runtime's
//! poller, the database (SQLite: the file, its WAL and shared memory, per
//! connection; PostgreSQL: one socket per connection) and the files read at start.
//! With the default cap of 1024 and systemd's default soft limit of 1024, the
//! connections used the last descriptors first, so the database could not open a
//! connection and `accept` failed with `EMFILE` while the cap was not reached.
//!
//! At start the server raises its soft limit to the hard one (as Go's runtime and
//! nginx's `worker_rlimit_nofile` do: the hard limit is what the administrator
//! allowed), then lowers the connection cap if the cap plus a reserve for
//! everything else still does not fit. Unix only; elsewhere nothing is changed
//! (Windows has no such per-process limit on sockets).

/// Descriptors kept beside the connections whatever the database: stdio, the
/// listener, the runtime's poller and wakers, files read at start, headroom.
pub const RESERVED_FDS: u64 = 64;

/// Descriptors one database connection may hold (an SQLite connection keeps the
/// database file and its WAL open, and maps the shared-memory file through a third).
pub const FDS_PER_DB_CONNECTION: u64 = 3;

/// What the open-file limit made of the connection cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    /// The connection cap to use.
    pub max_connections: usize,
    /// The soft open-file limit in force (after raising it); `None` when unknown
    /// or unlimited (not unix, or `getrlimit` failed).
    pub soft_limit: Option<u64>,
    /// The hard open-file limit, when known.
    pub hard_limit: Option<u64>,
    /// The descriptors kept for everything but connections.
    pub reserved: u64,
    /// `Some(asked)` when the cap was lowered from `asked` to fit.
    pub lowered_from: Option<usize>,
}

/// Why the server cannot start under its open-file limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "the open-file limit ({soft}) leaves no room for connections: the server keeps {reserved} descriptors for the database and itself, and needs a few more for connections"
)]
pub struct FdLimitError {
    pub soft: u64,
    pub reserved: u64,
}

/// The descriptors kept for everything but connections with `db_connections`
/// database connections.
pub fn reserved(db_connections: u32) -> u64 {
    RESERVED_FDS + FDS_PER_DB_CONNECTION * u64::from(db_connections)
}

/// Raises the soft open-file limit to the hard one (unix), then fits
/// `max_connections` under it with [`fit`].
pub fn raise_and_fit(max_connections: usize, db_connections: u32) -> Result<Fit, FdLimitError> {
    let (soft, hard) = raise_soft_limit();
    fit(max_connections, db_connections, soft, hard)
}

/// `max_connections`, lowered when it and the reserve for `db_connections` do not
/// fit under the soft limit `soft` (`None`: unknown or unlimited, kept as asked).
/// The lowest cap is 4, as `--max-connections` allows; below that it is an error.
pub fn fit(
    max_connections: usize,
    db_connections: u32,
    soft: Option<u64>,
    hard: Option<u64>,
) -> Result<Fit, FdLimitError> {
    let reserved = reserved(db_connections);
    let mut result = Fit {
        max_connections,
        soft_limit: soft,
        hard_limit: hard,
        reserved,
        lowered_from: None,
    };
    let Some(soft) = soft else {
        return Ok(result);
    };
    let room = soft.saturating_sub(reserved);
    if (max_connections as u64) <= room {
        return Ok(result);
    }
    if room < 4 {
        return Err(FdLimitError { soft, reserved });
    }
    result.max_connections = usize::try_from(room).unwrap_or(usize::MAX);
    result.lowered_from = Some(max_connections);
    Ok(result)
}

/// Raises the soft `RLIMIT_NOFILE` as far as the hard limit allows; returns the
/// soft and hard limits then in force (`None` for unknown or unlimited).
#[cfg(unix)]
pub fn raise_soft_limit() -> (Option<u64>, Option<u64>) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (None, None);
    }
    // rlim_t is u32 on some 32-bit targets, u64 on the others.
    #[allow(clippy::unnecessary_cast)]
    let known = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v as u64);
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < lim.rlim_max {
        // An unlimited hard limit is refused as a soft one by Linux (above
        // fs.nr_open) and macOS (above OPEN_MAX): then try large finite values.
        let candidates = [lim.rlim_max, 1 << 20, 1 << 16, 10240];
        for want in candidates {
            if want <= lim.rlim_cur || want > lim.rlim_max {
                continue;
            }
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads one rlimit through a valid pointer.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = want;
                break;
            }
        }
    }
    (known(lim.rlim_cur), known(lim.rlim_max))
}

/// Not unix: no per-process descriptor limit to raise or fit under.
#[cfg(not(unix))]
pub fn raise_soft_limit() -> (Option<u64>, Option<u64>) {
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_that_fits_is_kept() {
        let f = fit(100, 8, Some(256), Some(256)).unwrap();
        assert_eq!(f.max_connections, 100);
        assert_eq!(f.lowered_from, None);
        let f = fit(1024, 8, None, None).unwrap();
        assert_eq!(f.max_connections, 1024);
    }

    #[test]
    fn a_cap_above_the_limit_is_lowered_to_fit() {
        let f = fit(1024, 8, Some(1024), Some(1024)).unwrap();
        assert_eq!(f.max_connections, 1024 - 64 - 24);
        assert_eq!(f.lowered_from, Some(1024));
    }

    #[test]
    fn a_limit_without_room_is_an_error() {
        assert!(fit(1024, 8, Some(90), Some(90)).is_err());
        assert_eq!(fit(1024, 8, Some(92), None).unwrap().max_connections, 4);
    }
}
