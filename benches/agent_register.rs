//! What `fleetkit agent register` costs a device: CPU time (user + system) and peak
//! memory (max RSS) of the real binary registering against `fleetkit serve` on
//! loopback, each run a fresh device under its own `--root`. Also `agent sync` on a
//! registered device with nothing new (the timer's everyday run).
//!
//! `cargo bench --bench agent_register [-- --runs N]`
//!
//! The figures come from wait4(2)'s rusage of each agent process, so the server's
//! work is not counted; the report gives the median and the worst run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_fleetkit");

fn fleetkit(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One finished child: exit status, CPU time, peak RSS.
struct Usage {
    ok: bool,
    cpu: Duration,
    max_rss_kib: u64,
}

/// Runs the command and reads its rusage with wait4.
fn run_measured(cmd: &mut Command) -> Usage {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value; wait4 fills it for the
    // child we just spawned and have not waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    std::mem::forget(child); // already reaped
    Usage {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
    }
}

fn install(dir: &Path, ws: &str, name: &str, url: &str) -> std::path::PathBuf {
    let root = dir.join(name);
    let etc = root.join("etc/fleetkit");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(format!("{ws}/anchors.json"), etc.join("anchors.json")).unwrap();
    std::fs::copy(
        format!("{ws}/bundles/policy-v1.json"),
        etc.join("bundle.json"),
    )
    .unwrap();
    std::fs::write(
        etc.join("agent.yaml"),
        format!("org: acme-corp\nserver_url: {url}\nteam: platform\n"),
    )
    .unwrap();
    std::fs::write(root.join("etc/machine-id"), format!("bench-{name}\n")).unwrap();
    root
}

fn report(what: &str, mut runs: Vec<Usage>) {
    assert!(runs.iter().all(|u| u.ok), "{what}: a run failed");
    runs.sort_by_key(|u| u.cpu);
    let cpu_median = runs[runs.len() / 2].cpu;
    let cpu_max = runs.last().unwrap().cpu;
    let rss_max = runs.iter().map(|u| u.max_rss_kib).max().unwrap();
    let mut rss: Vec<u64> = runs.iter().map(|u| u.max_rss_kib).collect();
    rss.sort();
    println!(
        "{what}: {} runs, CPU time median {:.1} ms (worst {:.1} ms), peak memory median {:.1} MiB (worst {:.1} MiB)",
        runs.len(),
        cpu_median.as_secs_f64() * 1e3,
        cpu_max.as_secs_f64() * 1e3,
        rss[rss.len() / 2] as f64 / 1024.0,
        rss_max as f64 / 1024.0
    );
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 3 } else { 50 });

    let dir = tempfile::tempdir().unwrap();
    let ws_path = dir.path().join("acme");
    let ws = ws_path.to_str().unwrap();
    fleetkit(&["init", ws, "--org", "acme-corp"]);
    fleetkit(&["--workspace", ws, "policy", "sign"]);
    let mut server = Command::new(BIN)
        .args(["--workspace", ws, "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .split_once("127.0.0.1:")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server did not start: {line}"));
    let url = format!("https://localhost:{port}");
    let token_json = fleetkit(&[
        "--workspace",
        ws,
        "token",
        "create",
        "--team",
        "platform",
        "--uses",
        &runs.to_string(),
        "--expires",
        "1h",
        "--server",
        &url,
        "--json",
    ]);
    let token: serde_json::Value = serde_json::from_str(&token_json).unwrap();
    let token = token["token"].as_str().unwrap().to_string();

    let mut registers = Vec::new();
    let mut syncs = Vec::new();
    for i in 0..runs {
        let root = install(dir.path(), ws, &format!("d{i}"), &url);
        registers.push(run_measured(
            Command::new(BIN)
                .args(["agent", "register", "--root"])
                .arg(&root)
                .env("FLEETKIT_ENROLL_TOKEN", &token),
        ));
        syncs.push(run_measured(
            Command::new(BIN)
                .args(["agent", "sync", "--root"])
                .arg(&root),
        ));
    }
    let _ = server.kill();
    let _ = server.wait();
    report("agent register", registers);
    report("agent sync (nothing new)", syncs);
}
