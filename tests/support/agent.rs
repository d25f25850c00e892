//! Devices for the agent suites: a root prefix holding what an installer would put
//! on the machine (agent.yaml, anchors, the shipped bundle, a hardware id), and the
//! real `fleetkit agent` binary run against it.

use super::{BIN, Org};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One simulated machine: everything under `root`.
pub struct DeviceRoot {
    pub root: PathBuf,
}

/// What `fleetkit agent …` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }
}

impl DeviceRoot {
    /// Installs the agent's files for `org` under `dir/name`, as an artefact would.
    pub fn install(
        org: &Org,
        dir: &Path,
        name: &str,
        server_url: &str,
        extra_settings: &str,
    ) -> Self {
        let root = dir.join(name);
        let etc = root.join("etc/fleetkit");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::copy(org.path().join("anchors.json"), etc.join("anchors.json")).unwrap();
        std::fs::copy(
            org.path().join("bundles/policy-v1.json"),
            etc.join("bundle.json"),
        )
        .unwrap();
        std::fs::write(
            etc.join("agent.yaml"),
            format!("org: acme-corp\nserver_url: {server_url}\n{extra_settings}"),
        )
        .unwrap();
        std::fs::write(root.join("etc/machine-id"), format!("hw-{name}\n")).unwrap();
        Self { root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn data(&self, file: &str) -> PathBuf {
        self.root.join("var/lib/fleetkit").join(file)
    }

    /// Rewrites one `key: value` line of agent.yaml (or appends it).
    pub fn set_setting(&self, key: &str, value: &str) {
        let path = self.path("etc/fleetkit/agent.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}:")))
            .map(str::to_string)
            .collect();
        lines.push(format!("{key}: {value}"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }

    /// Runs `fleetkit agent <args> --root <root>` with extra environment.
    pub fn agent(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        self.agent_binary(Path::new(BIN), args, env)
    }

    /// Runs `bin agent ARGS --root ROOT` (e.g. the lean agent instead of the full
    /// fleetkit binary).
    pub fn agent_binary(&self, bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(bin);
        cmd.arg("agent")
            .args(args)
            .arg("--root")
            .arg(&self.root)
            .env_remove("FLEETKIT_ENROLL_TOKEN")
            .env_remove("FLEETKIT_AGENT_ROOT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run fleetkit agent"))
    }

    pub fn register(&self, token: &str) -> Run {
        self.agent(&["register"], &[("FLEETKIT_ENROLL_TOKEN", token)])
    }

    pub fn status(&self) -> serde_json::Value {
        let run = self.agent(&["status", "--json"], &[]);
        assert_eq!(run.code, 0, "{run:?}");
        run.json()
    }

    /// The bytes of the policy in force.
    pub fn policy_bytes(&self) -> Vec<u8> {
        std::fs::read(self.data("policy.json")).unwrap()
    }

    /// The manifest, parsed.
    pub fn manifest(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.data("manifest.yaml")).unwrap();
        serde_saphyr::from_str(&text).unwrap()
    }
}

impl DeviceRoot {
    /// Runs the hook of the device's Claude Code settings file as Claude Code runs
    /// it for an ordinary user (`nobody`, through setpriv; the root prefix opened to
    /// others): (exit code, stdout, stderr). `None`, said on stderr, when this run
    /// cannot switch users (not root).
    pub fn hook_as_nobody(&self, command: &str) -> Option<(i32, String, String)> {
        let uid = Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("not root: the hook is not run as another user");
            return None;
        }
        let settings: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.path("etc/claude-code/managed-settings.json")).unwrap(),
        )
        .unwrap();
        let mut dir = self.root.as_path();
        while let Some(parent) = dir.parent() {
            // The test's temporary folders are 0700; a device's / is not.
            if dir.starts_with(std::env::temp_dir()) && dir != std::env::temp_dir() {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir).unwrap().permissions().mode();
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o711))
                    .unwrap();
            }
            dir = parent;
        }
        let hook = &settings["hooks"]["PreToolUse"][0]["hooks"][0];
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(hook["command"].as_str().unwrap());
        for arg in hook["args"].as_array().unwrap() {
            cmd.arg(arg.as_str().unwrap());
        }
        let input = serde_json::json!({"session_id": "s", "transcript_path": "/tmp/t.jsonl",
            "cwd": "/tmp", "hook_event_name": "PreToolUse", "tool_name": "Bash",
            "tool_input": {"command": command}});
        let out = run_with_stdin(
            cmd.env("FLEETKIT_AGENT_ROOT", &self.root)
                .env("HOME", "/nonexistent"),
            &input.to_string(),
        );
        Some((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// Runs `cmd` with `input` on its stdin, as Claude Code feeds a hook.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hook's command");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
