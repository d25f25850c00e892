//! The audit trail at fleet scale (issue 16's goals):
//!
//! 1. **Queries on 10 million records**, SQLite and PostgreSQL: a generated fleet
//!    (2,000 devices, 40 teams, 8,000 users, 60 days) loaded through the store's
//!    own bulk import, then the filtered queries `fleetkit audit list` makes —
//!    newest 100 of a team, of a user since a week, of a device, denials by one
//!    rule — and `audit stats` over a day and over 30 days. Each query runs 5
//!    times; the median and the slowest are printed. Goal: a filtered list query
//!    under one second.
//! 2. **Impact replay of 1 million recorded requests**: the grouping query on the
//!    store, then the replay through two policies on every core. The recorded
//!    requests are drawn from 20,000 distinct commands (a fleet repeats itself);
//!    a second run with 100,000 distinct commands shows the cost per distinct
//!    command. Goal: under 10 s on 2 cores.
//!
//! `cargo bench --bench audit` runs it at full size (FLEETKIT_BENCH_AUDIT_RECORDS
//! changes the record count; PostgreSQL when FLEETKIT_TEST_POSTGRES is set;
//! FLEETKIT_BENCH_AUDIT_STORES=postgres or =sqlite runs one store only, as a 10M
//! load takes about 20 minutes each); `cargo test --benches` runs it as a quick
//! smoke run (5,000 records).

#[path = "fixtures/scratch_postgres.rs"]
mod scratch_postgres;

use fleetkit::enforce::Engine;
use fleetkit::enforce::impact::{Recorded, replay};
use fleetkit::server::store::Store;
use fleetkit::server::store::audit::{AuditFilter, AuditRow};
use scratch_postgres::ScratchDb;
use std::time::{Duration, Instant};

const DAY_MS: i64 = 86_400_000;
const TEAMS: u64 = 40;
const DEVICES: u64 = 2_000;
const USERS: u64 = 8_000;
const DAYS: i64 = 60;

/// A small deterministic generator.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

const COMMANDS: [&str; 12] = [
    "git status",
    "git push origin main",
    "ls -la",
    "cargo test",
    "kubectl get pods -n prod",
    "curl https://example.com/install.sh | sh",
    "rm -rf ./target",
    "npm install",
    "docker run --privileged alpine",
    "cat ~/.ssh/id_rsa",
    "terraform apply",
    "python3 -m pytest",
];

/// The `n`th distinct command of a fleet with `distinct` of them.
fn command(i: u64) -> String {
    format!("{} # {}", COMMANDS[(i % 12) as usize], i / 12)
}

/// Record `i` of `records` in the generated fleet: they arrive in time order over
/// the last [`DAYS`] days (as devices send them), with a few seconds of jitter.
fn row(i: u64, records: u64, rng: &mut Lcg, now_ms: i64) -> AuditRow {
    let device = rng.next(DEVICES);
    let team = device % TEAMS;
    let user = rng.next(USERS);
    let decision = match rng.next(100) {
        0..=84 => "allow",
        85..=94 => "ask",
        _ => "deny",
    };
    let rule = format!("safety.rule[{}]", rng.next(30));
    let c = command(rng.next(20_000));
    AuditRow {
        id: format!("{i:032x}"),
        device_id: format!("dev_{device:06}"),
        seq: i as i64,
        time_ms: now_ms - DAYS * DAY_MS
            + (i as i128 * (DAYS * DAY_MS) as i128 / records.max(1) as i128) as i64
            + rng.next(5_000) as i64,
        event: "decision".into(),
        team: format!("team-{team:02}"),
        username: Some(format!("user{user:05}")),
        policy_version: Some(7),
        mode: Some(
            if device.is_multiple_of(50) {
                "audit-only"
            } else {
                "enforce"
            }
            .into(),
        ),
        source: Some("claude-code".into()),
        decision: Some(decision.into()),
        applied: Some(decision.into()),
        rule: Some(rule),
        reason: Some("generated".into()),
        command_sha256: Some(format!("{:064x}", i % 20_000)),
        command: Some(c),
        cwd: Some("/home/dev/src".into()),
        line: format!("{{\"v\":1,\"seq\":{i},\"generated\":true}}"),
    }
}

/// Runs `q` 5 times: (median, slowest, the last run's answer).
fn timed<F: std::future::Future>(
    rt: &tokio::runtime::Runtime,
    mut q: impl FnMut() -> F,
) -> (Duration, Duration, F::Output) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let start = Instant::now();
        last = Some(rt.block_on(q()));
        times.push(start.elapsed());
    }
    times.sort();
    (times[2], times[4], last.expect("five runs"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn bench_store(rt: &tokio::runtime::Runtime, name: &str, url: &str, records: u64) {
    let store = rt.block_on(Store::open(url, "acme-corp", 4)).unwrap();
    let now_ms = fleetkit::clock::now().unix_timestamp() * 1000;
    let mut rng = Lcg(7);
    let start = Instant::now();
    let mut loaded = 0u64;
    let batch = 100_000u64;
    while loaded < records {
        let n = batch.min(records - loaded);
        let rows: Vec<AuditRow> = (loaded..loaded + n)
            .map(|i| row(i, records, &mut rng, now_ms))
            .collect();
        loaded += rt
            .block_on(store.import_audit(&rows, now_ms / 1000))
            .unwrap();
    }
    let load = start.elapsed();
    println!(
        "{name}: loaded {loaded} records in {:.1} s ({:.0} records/s)",
        load.as_secs_f64(),
        loaded as f64 / load.as_secs_f64()
    );
    let week = now_ms - 7 * DAY_MS;
    let day = now_ms - DAY_MS;
    let month = now_ms - 30 * DAY_MS;
    let f = |team: Option<&str>,
             user: Option<&str>,
             device: Option<&str>,
             decision: Option<&str>,
             rule: Option<&str>,
             since: Option<i64>| AuditFilter {
        team: team.map(str::to_string),
        user: user.map(str::to_string),
        device: device.map(str::to_string),
        decision: decision.map(str::to_string),
        rule: rule.map(str::to_string),
        event: None,
        since,
        until: None,
    };
    let lists = [
        (
            "list: newest 100 of a team",
            f(Some("team-07"), None, None, None, None, None),
        ),
        (
            "list: a user's, last 7 days",
            f(None, Some("user00042"), None, None, None, Some(week)),
        ),
        (
            "list: a device's newest 100",
            f(None, None, Some("dev_000123"), None, None, None),
        ),
        (
            "list: a team's denials by one rule, 7 days",
            f(
                Some("team-07"),
                None,
                None,
                Some("deny"),
                Some("safety.rule[3]"),
                Some(week),
            ),
        ),
        (
            "list: all denials, last 24 h",
            f(None, None, None, Some("deny"), None, Some(day)),
        ),
    ];
    for (what, filter) in &lists {
        let (median, slowest, (rows, _)) =
            timed(rt, || store.audit_query(filter, 100)).map_result();
        println!(
            "{name}: {what}: median {}, slowest {} ({} rows)",
            ms(median),
            ms(slowest),
            rows.len()
        );
    }
    for (what, since) in [("stats: last 24 h", day), ("stats: last 30 days", month)] {
        let filter = f(None, None, None, None, None, Some(since));
        let (median, slowest, groups) = timed(rt, || store.audit_by_team_rule(&filter, 200));
        let (groups, _) = groups.unwrap();
        let (tm, _, top) = timed(rt, || store.audit_top_denied(&filter, 20));
        let (dm, _, dry) = timed(rt, || store.audit_only_devices(&filter));
        println!(
            "{name}: {what}: by team x rule median {} (slowest {}, {} groups); top denied {} ({}); audit-only devices {} ({})",
            ms(median),
            ms(slowest),
            groups.len(),
            ms(tm),
            top.unwrap().len(),
            ms(dm),
            dry.unwrap().len()
        );
    }
    // The impact analysis' grouping query over about a million records.
    let since = now_ms - (DAYS * DAY_MS) * 1_000_000 / records.max(1) as i64;
    let filter = f(None, None, None, None, None, Some(since));
    let start = Instant::now();
    let groups = rt.block_on(store.audit_requests(&filter)).unwrap();
    let in_window: i64 = groups.iter().map(|g| g.count).sum();
    println!(
        "{name}: impact grouping: {in_window} recorded requests → {} groups in {}",
        groups.len(),
        ms(start.elapsed())
    );
}

trait MapResult<T, E> {
    fn map_result(self) -> (Duration, Duration, T);
}
impl<T, E: std::fmt::Debug> MapResult<T, E> for (Duration, Duration, Result<T, E>) {
    fn map_result(self) -> (Duration, Duration, T) {
        (self.0, self.1, self.2.unwrap())
    }
}

fn engine(extra: &str) -> Engine {
    let text = fleetkit::policy::starter_policy("acme-corp", time::macros::date!(2026 - 01 - 01));
    let text = if extra.is_empty() {
        text
    } else {
        text.replacen(
            "blocked_patterns:\n",
            &format!("blocked_patterns:\n    - pattern: '{extra}'\n      reason: \"bench\"\n"),
            1,
        )
    };
    let src = fleetkit::diag::SourceFile::new("bench.yaml", text);
    Engine::compile(&fleetkit::policy::parse(&src).unwrap().policy).unwrap()
}

fn bench_replay(requests: u64, distinct: u64) {
    let mut rng = Lcg(11);
    let mut counts = vec![0u64; distinct as usize];
    for _ in 0..requests {
        counts[rng.next(distinct) as usize] += 1;
    }
    let recorded: Vec<Recorded> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| Recorded {
            team: format!("team-{:02}", i as u64 % TEAMS),
            command: command(i as u64),
            cwd: Some("/home/dev/src".into()),
            recorded: "allow".into(),
            count: *n,
        })
        .collect();
    let (baseline, candidate) = (engine(""), engine(r"git\s+push"));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let impact = replay(&baseline, &candidate, &recorded, threads);
    let took = start.elapsed();
    println!(
        "impact replay: {} recorded requests, {} distinct, {threads} threads: {:.2} s ({:.1} µs per distinct command, both policies); {} would change",
        impact.requests,
        impact.distinct,
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / impact.distinct.max(1) as f64,
        impact.changed
    );
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let records: u64 = std::env::var("FLEETKIT_BENCH_AUDIT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 5_000 } else { 10_000_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("FLEETKIT_BENCH_AUDIT_STORES").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    if only != "postgres" {
        bench_store(
            &rt,
            "SQLite",
            &format!("sqlite://{}/audit.db", dir.path().display()),
            records,
        );
    }
    if only != "sqlite"
        && let Some(db) = ScratchDb::create("fleetkit_bench_audit")
    {
        bench_store(&rt, "PostgreSQL", &db.url, records);
    }
    let requests = if smoke { 5_000 } else { 1_000_000 };
    bench_replay(requests, if smoke { 500 } else { 20_000 });
    bench_replay(requests, if smoke { 1_000 } else { 100_000 });
}
