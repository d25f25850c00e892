//! The policy checker against real files: valid policies pass, and each malformed
//! policy under tests/fixtures/policies/bad produces the located, readable error its
//! `# expect:` header names — never a panic.
//!
//! Header format, one line per expected error: `# expect: LINE[:COL] FIELD MESSAGE`,
//! where `-` for LINE or FIELD means "not checked" and MESSAGE is a substring of the
//! message or help.

use fleetkit::diag::{Diagnostics, SourceFile};
use fleetkit::policy;
use std::path::{Path, PathBuf};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policies")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

struct Expect {
    line: Option<usize>,
    column: Option<usize>,
    field: Option<String>,
    text: String,
}

fn expectations(text: &str) -> Vec<Expect> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let mut parts = rest.splitn(3, ' ');
            let place = parts.next().unwrap();
            let field = parts.next().unwrap();
            let text = parts.next().unwrap_or("").to_string();
            let (line, column) = match place.split_once(':') {
                Some((l, c)) => (l.parse().ok(), c.parse().ok()),
                None => (place.parse().ok(), None),
            };
            Expect {
                line,
                column,
                field: (field != "-").then(|| field.to_string()),
                text,
            }
        })
        .collect()
}

fn render(d: &Diagnostics) -> String {
    d.iter()
        .map(|d| {
            format!(
                "{}:{} [{}] {} / {:?}",
                d.line, d.column, d.field, d.message, d.help
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bad_policies_each_give_their_located_error() {
    let files = fixtures("bad");
    assert!(
        files.len() >= 25,
        "the bad-input suite needs at least 25 policies"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{}: no `# expect:` header",
            file.display()
        );
        let errors = match policy::load(&file) {
            Ok(_) => panic!("{}: accepted, but it is invalid", file.display()),
            Err(e) => e,
        };
        let shown = render(&errors);
        for e in &expected {
            let hit = errors.iter().any(|d| {
                e.line.is_none_or(|l| d.line == l)
                    && e.column.is_none_or(|c| d.column == c)
                    && e.field.as_ref().is_none_or(|f| &d.field == f)
                    && (d.message.contains(&e.text)
                        || d.help.as_deref().is_some_and(|h| h.contains(&e.text)))
            });
            assert!(
                hit,
                "{}: expected {:?}:{:?} {:?} {:?}; got\n{shown}",
                file.display(),
                e.line,
                e.column,
                e.field,
                e.text
            );
        }
        // Every finding is readable: names the file, has a message and a way out.
        for d in errors.iter() {
            assert_eq!(d.file, file.display().to_string());
            assert!(
                !d.message.is_empty() && d.help.as_deref().is_some_and(|h| !h.is_empty()),
                "{shown}"
            );
            if d.line > 0 {
                assert!(d.to_string().contains(&format!(
                    "{}:{}:{}",
                    file.display(),
                    d.line,
                    d.column
                )));
            }
        }
    }
}

#[test]
fn all_errors_of_a_file_are_reported_in_one_run() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policies/bad/34_many_errors.yaml");
    let errors = policy::load(&file).unwrap_err();
    assert_eq!(errors.len(), 5, "{}", render(&errors));
    // In file order.
    let lines: Vec<usize> = errors.iter().map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn valid_policies_pass() {
    let mut files = fixtures("valid");
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme-corp/policy.yaml"));
    for file in files {
        if let Err(e) = policy::load(&file) {
            panic!("{}:\n{e}", file.display());
        }
    }
}

#[test]
fn the_adr_example_pipe_pattern_is_flagged_as_a_warning() {
    let text = "version: \"1.0\"\norganization: acme\neffective_date: \"2025-12-01\"\nsafety:\n  blocked_patterns:\n    - pattern: \"curl .* | bash\"\n      reason: \"pipe to shell\"\n";
    let checked = policy::parse(&SourceFile::new("p.yaml", text)).unwrap();
    assert_eq!(checked.warnings.len(), 1);
    let w = &checked.warnings.0[0];
    assert_eq!(
        (w.line, w.field.as_str()),
        (6, "safety.blocked_patterns[0].pattern")
    );
    assert!(w.help.as_deref().unwrap().contains("\\|"));
}

#[test]
fn starter_policy_is_valid_for_any_org_name() {
    let date = time::macros::date!(2025 - 12 - 01);
    for org in [
        "acme-corp",
        "Ac\"me' $(rm -rf /) `id` \\ \n Çà 株式会社 \u{2028}",
    ] {
        let text = policy::starter_policy(org, date);
        let checked = policy::parse(&SourceFile::new("policy.yaml", &text))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(checked.policy.organization, org);
        assert!(checked.warnings.is_empty(), "{}", checked.warnings);
        let p = &checked.policy;
        // Every section of the schema is used.
        assert!(
            !p.safety.blocked_patterns.is_empty()
                && !p.safety.additional_dangerous_paths.is_empty()
        );
        assert!(!p.allowed_tools.is_empty() && !p.blocked_tools.is_empty());
        assert!(!p.inference.model_allowlist.is_empty() && !p.approvals.auto_approve.is_empty());
        assert!(p.audit.log_retention_days > 0 && !p.compliance.frameworks.is_empty());
    }
}

#[test]
fn binary_garbage_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.yaml");
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let errors = policy::load(&path).unwrap_err();
    assert!(
        errors.0[0].message.contains("not UTF-8") || errors.0[0].message.contains("NUL"),
        "{errors}"
    );
    std::fs::write(&path, b"version: \"1.0\"\n\x00\x01\x02").unwrap();
    let errors = policy::load(&path).unwrap_err();
    assert!(errors.0[0].message.contains("NUL"), "{errors}");
    assert_eq!(errors.0[0].line, 2);
}

#[test]
fn a_50_mb_policy_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(50 * 1024 * 1024).unwrap();
    let errors = policy::load(&path).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors.0[0].message.contains("52428800 bytes"), "{errors}");
    assert!(errors.0[0].help.is_some());
}

#[test]
fn a_missing_file_says_so() {
    let errors = policy::load(Path::new("/nonexistent/policy.yaml")).unwrap_err();
    assert!(errors.0[0].message.contains("cannot read"), "{errors}");
}

#[test]
fn signed_json_round_trips_into_the_model() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme-corp/policy.yaml");
    let p = policy::load(&file).unwrap().policy;
    let json = serde_json::to_value(&p).unwrap();
    let back: policy::OrgPolicy = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
    assert_eq!(p.rule_count(), 2 + 2 + 4 + 2 + 1 + 2);
}
