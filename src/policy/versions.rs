//! Tool version constraints: semver requirements (`>=2.30.0`, `<1.30.0`, `~1.6.0`),
//! and whether a list of them can hold at once.

use semver::{Op, Version, VersionReq};

/// Parses one constraint.
pub fn parse(s: &str) -> Result<VersionReq, String> {
    VersionReq::parse(s).map_err(|e| e.to_string())
}

/// True when some version satisfies every requirement. Candidate versions are the
/// bounds the requirements mention and their immediate neighbours, which is where
/// an intersection of semver ranges starts or ends.
pub fn satisfiable(reqs: &[VersionReq]) -> bool {
    let mut candidates = vec![Version::new(0, 0, 0)];
    for req in reqs {
        for c in &req.comparators {
            let (ma, mi, pa) = (c.major, c.minor.unwrap_or(0), c.patch.unwrap_or(0));
            candidates.push(Version::new(ma, mi, pa));
            candidates.push(Version::new(ma, mi, pa + 1));
            candidates.push(Version::new(ma, mi + 1, 0));
            candidates.push(Version::new(ma + 1, 0, 0));
            if pa > 0 {
                candidates.push(Version::new(ma, mi, pa - 1));
            }
            if mi > 0 {
                candidates.push(Version::new(ma, mi - 1, u64::from(u32::MAX)));
            }
            if ma > 0 {
                candidates.push(Version::new(
                    ma - 1,
                    u64::from(u32::MAX),
                    u64::from(u32::MAX),
                ));
            }
            if matches!(c.op, Op::Exact) {
                candidates.push(Version::new(ma, mi, pa));
            }
        }
    }
    candidates.iter().any(|v| reqs.iter().all(|r| r.matches(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(list: &[&str]) -> Vec<VersionReq> {
        list.iter().map(|s| parse(s).unwrap()).collect()
    }

    #[test]
    fn satisfiability() {
        assert!(satisfiable(&reqs(&[">=1.25.0", "<1.30.0"])));
        assert!(satisfiable(&reqs(&["~1.6.0"])));
        assert!(satisfiable(&reqs(&[">=2.30.0"])));
        assert!(!satisfiable(&reqs(&[">=2", "<1"])));
        assert!(!satisfiable(&reqs(&["=1.2.3", ">1.2.3"])));
        assert!(satisfiable(&reqs(&[">1.2.3", "<1.2.5"])));
    }

    #[test]
    fn bad_constraints() {
        assert!(parse(">=2.x.y").is_err());
        assert!(parse("latest").is_err());
    }
}
