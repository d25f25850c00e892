//! What the profile's SCEP payload needs from outside fleetkit.yaml: the challenge
//! and the CA certificate it pins.
//!
//! - **The challenge** is a server-issued enrollment token of the SCEP kind
//!   (`fleetkit token create --scep`). macOS sends it as the CSR's
//!   challengePassword, so it must be what the server issued, byte for byte: one
//!   line of printable ASCII, at most 255 bytes (PKCS#9's bound on
//!   challengePassword). It comes from a file (`--scep-challenge-file`) so that it
//!   never sits in a shell history or a process list; one trailing newline, as an
//!   editor or `echo` leaves it, is dropped. Anything else is refused naming the
//!   file, line and column, never the content.
//! - **The pinned CA** is the issuing CA (`keys/issuing-ca.pem`): the server's
//!   GetCACert answers [RA certificate, issuing CA], and the profile's
//!   `CAFingerprint` must match the CA there. It is checked to be a CA certificate
//!   signed by the anchors' root CA, so a profile never pins a CA the fleet does not
//!   chain to.
//!
//! The challenge is a secret: [`ScepChallenge`] has no `Display` or `Serialize`,
//! its `Debug` is redacted and its memory is cleared on drop.

use crate::fsutil::{self, ReadError};
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// PKCS#9's upper bound on challengePassword (`pkcs-9-ub-challengePassword`).
pub const MAX_CHALLENGE_BYTES: usize = 255;

/// Largest challenge file read: a little room for whitespace around a challenge,
/// and an early answer for a file that is plainly something else.
const MAX_CHALLENGE_FILE_BYTES: u64 = 4096;

/// A SCEP challenge, checked to be one line of printable ASCII.
#[derive(Clone)]
pub struct ScepChallenge(Zeroizing<String>);

impl ScepChallenge {
    /// The challenge itself, for the one place that writes it: the profile.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ScepChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScepChallenge(<redacted>)")
    }
}

/// The profile's SCEP enrollment: present only when a challenge was given, as a
/// certificate payload that cannot enroll must never be shipped.
#[derive(Debug, Clone)]
pub struct ScepEnrollment {
    pub challenge: ScepChallenge,
    /// DER of the issuing CA certificate, which the profile pins.
    pub issuing_ca_der: Vec<u8>,
}

/// Why a challenge file or the issuing CA was refused. No variant carries any
/// part of the challenge.
#[derive(Debug, thiserror::Error)]
pub enum ScepError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{}: the SCEP challenge is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}:{line}:{column}: the SCEP challenge {what}", path.display())]
    BadCharacter {
        path: PathBuf,
        line: usize,
        column: usize,
        what: &'static str,
    },
    #[error(
        "{}: the SCEP challenge is {len} bytes; at most {MAX_CHALLENGE_BYTES} are allowed",
        path.display()
    )]
    TooLong { path: PathBuf, len: usize },
    #[error("{}: {reason}", path.display())]
    IssuingCa { path: PathBuf, reason: String },
}

impl ScepError {
    /// What to do next.
    pub fn help(&self) -> String {
        match self {
            Self::IssuingCa { .. } => {
                "the profile pins the issuing CA that `fleetkit init` wrote to keys/issuing-ca.pem, signed by the root CA in anchors.json; restore that file".into()
            }
            _ => "put in the file exactly the challenge `fleetkit token create --scep` printed, on one line".into(),
        }
    }
}

pub type Result<T, E = ScepError> = std::result::Result<T, E>;

/// Reads and checks the challenge in `path` (the module comment says what is
/// accepted).
pub fn read_challenge(path: &Path) -> Result<ScepChallenge> {
    let bytes = Zeroizing::new(fsutil::read_capped(path, MAX_CHALLENGE_FILE_BYTES)?);
    check_challenge(path, &bytes)
}

fn check_challenge(path: &Path, bytes: &[u8]) -> Result<ScepChallenge> {
    let value = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    if value.is_empty() {
        return Err(ScepError::Empty {
            path: path.to_path_buf(),
        });
    }
    let at = |i: usize, what| ScepError::BadCharacter {
        path: path.to_path_buf(),
        line: 1,
        // Every byte before `i` is printable ASCII, so bytes are columns.
        column: i + 1,
        what,
    };
    if let Some(i) = value.iter().position(|b| !(b' '..=b'~').contains(b)) {
        return Err(match value[i] {
            b'\n' | b'\r' => ScepError::BadCharacter {
                path: path.to_path_buf(),
                line: 2,
                column: 1,
                what: "file holds more than one line",
            },
            b if b.is_ascii() => at(i, "has a control character"),
            _ => at(i, "has a character that is not ASCII"),
        });
    }
    // Spaces inside are printable, but around the challenge they are almost
    // always a copy-and-paste slip, and every Mac's enrollment would fail on them.
    if value[0] == b' ' {
        return Err(at(0, "starts with a space"));
    }
    if value[value.len() - 1] == b' ' {
        return Err(at(value.len() - 1, "ends with a space"));
    }
    if value.len() > MAX_CHALLENGE_BYTES {
        return Err(ScepError::TooLong {
            path: path.to_path_buf(),
            len: value.len(),
        });
    }
    // Printable ASCII, so valid UTF-8.
    let text = String::from_utf8_lossy(value).into_owned();
    Ok(ScepChallenge(Zeroizing::new(text)))
}

/// Reads the issuing CA certificate at `path` and checks that it is a CA
/// certificate signed by `root_ca_pem` (the anchors' root); returns its DER.
pub fn read_issuing_ca(path: &Path, root_ca_pem: &str) -> Result<Vec<u8>> {
    let refuse = |reason: String| ScepError::IssuingCa {
        path: path.to_path_buf(),
        reason,
    };
    let pem = fsutil::read_capped(path, crate::pki::MAX_KEY_FILE_BYTES)?;
    let pem = String::from_utf8(pem).map_err(|_| refuse("not a PEM certificate".into()))?;
    let der = crate::pki::parse_ca_cert_pem(&pem).map_err(refuse)?;
    let root_der = crate::pki::parse_ca_cert_pem(root_ca_pem)
        .map_err(|e| refuse(format!("the anchors' root CA: {e}")))?;
    let (_, issuing) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| refuse(format!("not an X.509 certificate ({e})")))?;
    let (_, root) = x509_parser::parse_x509_certificate(&root_der)
        .map_err(|e| refuse(format!("the anchors' root CA: {e}")))?;
    issuing
        .verify_signature(Some(root.public_key()))
        .map_err(|_| {
            refuse("not signed by the root CA in anchors.json: devices could not chain a certificate from it".into())
        })?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8]) -> Result<ScepChallenge> {
        check_challenge(Path::new("challenge.txt"), bytes)
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(check(b"abc-123").unwrap().expose(), "abc-123");
        assert_eq!(check(b"abc-123\n").unwrap().expose(), "abc-123");
        assert_eq!(check(b"abc-123\r\n").unwrap().expose(), "abc-123");
        assert_eq!(check(b"a b").unwrap().expose(), "a b");
        let longest = "x".repeat(MAX_CHALLENGE_BYTES);
        assert_eq!(check(longest.as_bytes()).unwrap().expose(), longest);
    }

    #[test]
    fn bad_challenges_are_located_and_never_quoted() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "challenge.txt: the SCEP challenge is empty"),
            (b"\n", "challenge.txt: the SCEP challenge is empty"),
            (
                b"secret\n\n",
                "challenge.txt:2:1: the SCEP challenge file holds more than one line",
            ),
            (
                b"secret\nmore",
                "challenge.txt:2:1: the SCEP challenge file holds more than one line",
            ),
            (
                b"secr\x07et",
                "challenge.txt:1:5: the SCEP challenge has a control character",
            ),
            (
                b"secret\t",
                "challenge.txt:1:7: the SCEP challenge has a control character",
            ),
            (
                "secr\u{e9}t".as_bytes(),
                "challenge.txt:1:5: the SCEP challenge has a character that is not ASCII",
            ),
            (
                b" secret",
                "challenge.txt:1:1: the SCEP challenge starts with a space",
            ),
            (
                b"secret \n",
                "challenge.txt:1:7: the SCEP challenge ends with a space",
            ),
        ];
        for (bytes, message) in cases {
            let e = check(bytes).unwrap_err();
            assert_eq!(e.to_string(), *message, "{bytes:?}");
        }
        let long = "s".repeat(MAX_CHALLENGE_BYTES + 1);
        let e = check(long.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "challenge.txt: the SCEP challenge is 256 bytes; at most 255 are allowed"
        );
        assert!(e.help().contains("fleetkit token create --scep"));
    }

    #[test]
    fn the_challenge_never_shows_in_debug() {
        let c = check(b"hunter2-token").unwrap();
        let shown = format!("{c:?} {:?}", Some(&c));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_large_file_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'a'; 10_000]).unwrap();
        assert!(matches!(
            read_challenge(&path),
            Err(ScepError::Read(ReadError::TooLarge { .. }))
        ));
    }

    #[test]
    fn the_issuing_ca_must_chain_to_the_anchors_root() {
        let now = time::OffsetDateTime::now_utc();
        let ca = crate::pki::OrgCa::generate("acme", now).unwrap();
        let other = crate::pki::OrgCa::generate("acme", now).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("issuing-ca.pem");
        std::fs::write(&path, ca.issuing_cert_pem()).unwrap();
        assert_eq!(
            read_issuing_ca(&path, &ca.root_cert_pem()).unwrap(),
            ca.issuing_cert_der()
        );
        let e = read_issuing_ca(&path, &other.root_cert_pem()).unwrap_err();
        assert!(e.to_string().contains("not signed by the root CA"), "{e}");
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(matches!(
            read_issuing_ca(&path, &ca.root_cert_pem()),
            Err(ScepError::IssuingCa { .. })
        ));
    }
}
