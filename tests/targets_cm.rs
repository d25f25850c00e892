//! `fleetkit build` for the configuration-management targets, checked by the real
//! tools: ansible-playbook (run twice for real under a root prefix: the second run
//! changes nothing) and ansible-lint's production profile; puppet parser/epp
//! validate, puppet-lint and `puppet apply` twice; ruby -c and rubocop for the
//! cookbook. Also: hostile org, team and token values, byte-identical rebuilds, a
//! failed build that leaves no output, and the committed example role is current.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// A finished external command.
struct Ran {
    code: i32,
    out: String,
}

fn run(cmd: &mut Command) -> Ran {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    Ran {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    }
}

fn must(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let r = run(cmd);
    assert_eq!(r.code, 0, "{shown}:\n{}", r.out);
    r.out
}

/// `fleetkit build` of `org` into `out`.
fn build(org: &Org, out: &Path, extra: &[&str]) -> Ran {
    let mut cmd = Command::new(BIN);
    cmd.args(["--workspace", &org.ws(), "build", "--out"])
        .arg(out)
        .args(extra)
        .env("SOURCE_DATE_EPOCH", "1764547200");
    run(&mut cmd)
}

fn python() -> String {
    std::env::var("FLEETKIT_TEST_PYTHON").unwrap_or_else(|_| {
        must(Command::new("python3").args(["-c", "import sys; print(sys.executable)"]))
            .trim()
            .to_string()
    })
}

/// `--target all` with stand-ins for the macOS and Windows agents (so that it
/// includes the pkg, the MSI and the intunewin) and the real lean Linux agent (the
/// .deb ships nothing else; the Ansible and Puppet runs execute it). Without a built
/// Linux agent: every target but those that need the lean one, by name.
fn all_targets(dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for platform in ["darwin-arm64", "darwin-x86_64", "windows-x86_64"] {
        let file = executables::write_executable(dir, platform, 4096);
        args.push("--agent".to_string());
        args.push(format!("{platform}={}", file.display()));
    }
    match real_agent("linux-x86_64") {
        Some(agent) => {
            args.push("--agent".to_string());
            args.push(format!("linux-x86_64={}", agent.display()));
            args.extend(["--target".to_string(), "all".to_string()]);
        }
        None => {
            for spec in fleetkit::targets::TARGETS
                .iter()
                .filter(|s| !s.lean_agent_only)
            {
                args.extend(["--target".to_string(), spec.name.to_string()]);
            }
        }
    }
    args
}

/// A root prefix standing in for a machine, with its own hardware id.
fn machine(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/machine-id"), format!("{name}\n")).unwrap();
    root
}

/// The PLAY RECAP's `changed=` count.
fn changed(recap: &str) -> u32 {
    recap
        .split("changed=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no PLAY RECAP in:\n{recap}"))
}

/// Runs the example playbook with `extra_vars`, written as a YAML vars file whose
/// strings are all `!unsafe` (literal text, as an operator passes a secret).
fn ansible(dist: &Path, root: &Path, extra_vars: &serde_json::Value, check: bool) -> Ran {
    let vars = dist.join(format!(
        "vars-{}.yml",
        root.file_name().unwrap().to_string_lossy()
    ));
    let mut yaml = String::from("---\n");
    for (k, v) in extra_vars.as_object().unwrap() {
        yaml.push_str(&format!(
            "{k}: {}\n",
            fleetkit::targets::escape::ansible(v.as_str().unwrap())
        ));
    }
    std::fs::write(&vars, yaml).unwrap();
    let mut cmd = Command::new("ansible-playbook");
    cmd.current_dir(dist.join("ansible"))
        .args(["-i", "inventory.ini", "playbook.yml"])
        .arg("-e")
        .arg(format!("ansible_python_interpreter={}", python()))
        .arg("-e")
        .arg(format!("fleetkit_root={}", root.display()))
        .arg("-e")
        .arg(format!("@{}", vars.display()))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCALHOST_WARNING", "0");
    if check {
        cmd.arg("--check");
    }
    run(&mut cmd)
}

#[test]
fn the_ansible_role_installs_registers_and_a_second_run_changes_nothing() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let token = create_token(&server, &org, "platform", 2, 3600).token;
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    let b = build(&org, &dist, &["--target", "ansible"]);
    assert_eq!(b.code, 0, "{}", b.out);

    let lint = run(Command::new("ansible-lint")
        .args(["--profile", "production", "--nocolor"])
        .current_dir(dist.join("ansible")));
    assert_eq!(lint.code, 0, "ansible-lint:\n{}", lint.out);
    assert!(
        lint.out
            .contains("Profile 'production' was required, and it passed"),
        "{}",
        lint.out
    );

    let vars = serde_json::json!({
        "fleetkit_server_url": server.url(),
        "fleetkit_enroll_token": token,
        "fleetkit_team": "platform",
        "fleetkit_department": "sre",
    });
    // Check mode first: it reports what it would do and writes nothing.
    let dry_root = machine(dir.path(), "dry");
    let dry = ansible(&dist, &dry_root, &vars, true);
    assert_eq!(dry.code, 0, "check mode:\n{}", dry.out);
    assert!(
        !dry_root.join("usr/local/bin/fleetkit").exists(),
        "check mode installed the agent"
    );
    assert!(inventory(&server, &org).is_empty());

    let root = machine(dir.path(), "host-a");
    let first = ansible(&dist, &root, &vars, false);
    assert_eq!(first.code, 0, "first run:\n{}", first.out);
    assert!(changed(&first.out) > 0, "{}", first.out);
    assert!(
        !first.out.contains(&token),
        "the token was logged:\n{}",
        first.out
    );
    let second = ansible(&dist, &root, &vars, false);
    assert_eq!(second.code, 0, "second run:\n{}", second.out);
    assert_eq!(
        changed(&second.out),
        0,
        "the second run changed something:\n{}",
        second.out
    );

    let manifest = std::fs::read_to_string(root.join("var/lib/fleetkit/manifest.yaml")).unwrap();
    assert!(
        manifest.contains("enrollment: \"registered\""),
        "{manifest}"
    );
    assert!(manifest.contains("department: \"sre\""), "{manifest}");
    let fact: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("etc/ansible/facts.d/fleetkit.fact")).unwrap(),
    )
    .unwrap();
    let devices = inventory(&server, &org);
    assert_eq!(devices.len(), 1);
    assert_eq!(fact["device_id"], devices[0].device_id.as_str());
    assert_eq!(devices[0].department.as_deref(), Some("sre"));
    assert!(
        root.join("etc/systemd/system/fleetkit-sync.timer")
            .is_file()
    );
    let mode = std::fs::metadata(root.join("usr/local/bin/fleetkit")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o755
    );

    // Claude Code's managed settings: the claude-code target's file for agents the
    // tools install, byte for byte. Lost, they come back at the next run (one
    // change); someone else's file is left alone, reported and not a change.
    let claude = root.join(CLAUDE_SETTINGS);
    let expected = cm_claude_settings(&org, &dir.path().join("cc"));
    assert_eq!(std::fs::read_to_string(&claude).unwrap(), expected);
    std::fs::remove_file(&claude).unwrap();
    let third = ansible(&dist, &root, &vars, false);
    assert_eq!(third.code, 0, "third run:\n{}", third.out);
    assert_eq!(changed(&third.out), 1, "{}", third.out);
    assert_eq!(std::fs::read_to_string(&claude).unwrap(), expected);
    std::fs::write(&claude, SOMEONE_ELSES_SETTINGS).unwrap();
    let fourth = ansible(&dist, &root, &vars, false);
    assert_eq!(fourth.code, 0, "fourth run:\n{}", fourth.out);
    assert_eq!(changed(&fourth.out), 0, "{}", fourth.out);
    assert!(
        fourth.out.contains("not written by fleetkit"),
        "{}",
        fourth.out
    );
    assert_eq!(
        std::fs::read_to_string(&claude).unwrap(),
        SOMEONE_ELSES_SETTINGS
    );
}

const CLAUDE_SETTINGS: &str = "etc/claude-code/managed-settings.json";
const SOMEONE_ELSES_SETTINGS: &str = "{\"permissions\":{\"deny\":[\"Bash(rm:*)\"]}}\n";

/// Claude Code's managed settings for an agent Ansible, Chef or Puppet installed
/// (`/usr/local/bin/fleetkit`), as the `claude-code` target builds them.
fn cm_claude_settings(org: &Org, out: &Path) -> String {
    let b = build(org, out, &["--target", "claude-code"]);
    assert_eq!(b.code, 0, "{}", b.out);
    std::fs::read_to_string(out.join("claude-code/linux-cm/managed-settings.json")).unwrap()
}

#[test]
fn the_puppet_module_validates_and_applies_twice() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let token = create_token(&server, &org, "platform", 1, 3600).token;
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    let b = build(&org, &dist, &["--target", "puppet"]);
    assert_eq!(b.code, 0, "{}", b.out);
    let module = dist.join("puppet/fleetkit");

    for entry in walk(&module) {
        let name = entry.to_string_lossy().into_owned();
        if name.ends_with(".pp") {
            must(
                Command::new("puppet")
                    .args(["parser", "validate"])
                    .arg(&entry),
            );
        } else if name.ends_with(".epp") {
            must(Command::new("puppet").args(["epp", "validate"]).arg(&entry));
        }
    }
    let lint = run(Command::new("puppet-lint")
        .args(["--fail-on-warnings"])
        .arg(&module));
    assert_eq!(lint.code, 0, "puppet-lint:\n{}", lint.out);
    assert!(lint.out.trim().is_empty(), "puppet-lint:\n{}", lint.out);

    let root = machine(dir.path(), "puppet-host");
    let manifest = dir.path().join("site.pp");
    std::fs::write(
        &manifest,
        format!(
            "class {{ 'fleetkit':\n  team => 'platform',\n  root => '{}',\n  server_url => '{}',\n  enroll_token => Sensitive('{}'),\n}}\n",
            root.display(),
            server.url(),
            token
        ),
    )
    .unwrap();
    let apply = |what: &str| {
        let r = run(Command::new("puppet")
            .args([
                "apply",
                "--detailed-exitcodes",
                "--color=false",
                "--modulepath",
            ])
            .arg(dist.join("puppet"))
            .arg(&manifest));
        assert!(
            !r.out.contains(&token),
            "{what}: the token was logged:\n{}",
            r.out
        );
        r
    };
    let first = apply("first");
    assert_eq!(
        first.code, 2,
        "first apply should change things:\n{}",
        first.out
    );
    let second = apply("second");
    assert_eq!(
        second.code, 0,
        "second apply changed something:\n{}",
        second.out
    );
    let text = std::fs::read_to_string(root.join("var/lib/fleetkit/manifest.yaml")).unwrap();
    assert!(text.contains("enrollment: \"registered\""), "{text}");
    assert_eq!(inventory(&server, &org).len(), 1);
    assert!(
        root.join("etc/puppetlabs/facter/facts.d/fleetkit.json")
            .is_file()
    );
    // Claude Code's managed settings, byte for byte; lost, they come back at the
    // next apply (a change), and the apply after that changes nothing.
    let claude = root.join(CLAUDE_SETTINGS);
    let expected = cm_claude_settings(&org, &dir.path().join("cc"));
    assert_eq!(std::fs::read_to_string(&claude).unwrap(), expected);
    std::fs::remove_file(&claude).unwrap();
    let third = apply("third");
    assert_eq!(
        third.code, 2,
        "the settings were not restored:\n{}",
        third.out
    );
    assert!(
        third.out.contains("fleetkit claude-code settings"),
        "{}",
        third.out
    );
    assert_eq!(std::fs::read_to_string(&claude).unwrap(), expected);
    assert_eq!(apply("fourth").code, 0);
}

#[test]
fn the_chef_cookbook_passes_ruby_and_rubocop() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    let b = build(&org, &dist, &["--target", "chef"]);
    assert_eq!(b.code, 0, "{}", b.out);
    let cookbook = dist.join("chef/fleetkit");
    for entry in walk(&cookbook) {
        let name = entry.to_string_lossy().into_owned();
        if name.ends_with(".rb") {
            must(Command::new("ruby").arg("-c").arg(&entry));
        } else if name.ends_with(".erb") {
            // Compile the template to Ruby and check that.
            let ruby = must(Command::new("erb").args(["-x", "-T", "-"]).arg(&entry));
            let checked = dir.path().join("template.rb");
            std::fs::write(&checked, ruby).unwrap();
            must(Command::new("ruby").arg("-c").arg(&checked));
        }
    }
    let rubocop = run(Command::new("rubocop")
        .args(["--format", "simple", "--no-color"])
        .current_dir(&cookbook));
    assert_eq!(rubocop.code, 0, "rubocop:\n{}", rubocop.out);
    assert!(
        rubocop.out.contains("no offenses detected"),
        "{}",
        rubocop.out
    );
    // The attributes, read by Ruby itself, hold the org's values.
    let values = ruby_attributes(&cookbook.join("attributes/default.rb"));
    assert_eq!(values["org"], "acme-corp");
}

/// Evaluates a cookbook's attributes file with a stand-in for Chef's `default`,
/// printing the result as JSON: Ruby itself reads every literal back.
fn ruby_attributes(file: &Path) -> serde_json::Value {
    let script = "require 'json'\n\
        attrs = Hash.new { |h, k| h[k] = Hash.new(&h.default_proc) }\n\
        define_method(:default) { attrs }\n\
        eval(File.read(ARGV[0]), binding, ARGV[0])\n\
        puts JSON.generate(attrs['fleetkit'])\n";
    let out = must(Command::new("ruby").args(["-e", script]).arg(file));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

const HOSTILE: &str = "Ac'me \"Corp\" $(touch /tmp/pwned) `id` ${HOME} #{x} {{ lookup('pipe','id') }} <%= 1 %> ü漢\\ end";

#[test]
fn hostile_org_team_and_token_values_render_safely_into_every_target() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("hostile");
    let org_name = format!("{HOSTILE}\nsecond line");
    fleetkit(&["init", ws.to_str().unwrap(), "--org", &org_name]);
    fleetkit(&["--workspace", ws.to_str().unwrap(), "policy", "sign"]);
    let dist = dir.path().join("dist");
    let team = HOSTILE;
    let mut cmd = Command::new(BIN);
    cmd.args(["--workspace", ws.to_str().unwrap(), "build", "--out"])
        .arg(&dist)
        .args(["--team", team])
        .args(all_targets(dir.path()));
    let b = run(&mut cmd);
    assert_eq!(b.code, 0, "{}", b.out);

    // Ansible: the defaults read back (by PyYAML, with Ansible's !unsafe) exactly.
    let defaults = dist.join("ansible/roles/fleetkit/defaults/main.yml");
    let read = must(
        Command::new(python())
            .args([
                "-c",
                "import json, sys, yaml\n\
         class L(yaml.SafeLoader): pass\n\
         L.add_constructor('!unsafe', lambda l, n: l.construct_scalar(n))\n\
         print(json.dumps(yaml.load(open(sys.argv[1]), Loader=L)))",
            ])
            .arg(&defaults),
    );
    let values: serde_json::Value = serde_json::from_str(read.trim()).unwrap();
    assert_eq!(values["fleetkit_org"], org_name.as_str());
    assert_eq!(values["fleetkit_team"], team);
    must(
        Command::new("ansible-playbook")
            .current_dir(dist.join("ansible"))
            .args(["-i", "inventory.ini", "playbook.yml", "--syntax-check"]),
    );
    // And for real, with the hostile team, department and token as run-time values
    // and no server: registration is pending, the settings hold the exact values.
    let ansible_root = machine(dir.path(), "hostile-ansible");
    let vars = serde_json::json!({
        "fleetkit_server_url": "https://localhost:9",
        "fleetkit_enroll_token": HOSTILE,
        "fleetkit_department": HOSTILE,
    });
    let ran = ansible(&dist, &ansible_root, &vars, false);
    assert_eq!(ran.code, 0, "{}", ran.out);
    assert!(
        ran.out.contains("registers at its next policy sync"),
        "{}",
        ran.out
    );
    let settings = std::fs::read_to_string(ansible_root.join("etc/fleetkit/agent.yaml")).unwrap();
    let parsed = fleetkit::agent::settings::AgentSettings::parse(&settings)
        .unwrap_or_else(|e| panic!("{e}\n{settings}"));
    assert_eq!(parsed.org, org_name);
    assert_eq!(parsed.assignment.team.as_deref(), Some(team));
    assert_eq!(parsed.assignment.department.as_deref(), Some(HOSTILE));

    // Puppet: the module parses, and the class's own values come back exactly.
    let module = dist.join("puppet/fleetkit");
    must(
        Command::new("puppet")
            .args(["parser", "validate"])
            .arg(module.join("manifests/init.pp")),
    );
    let probe = dir.path().join("probe.pp");
    std::fs::write(
        &probe,
        "include fleetkit\nnotice(\"ORG=${fleetkit::org}\")\nnotice(\"TEAM=${fleetkit::team}\")\n",
    )
    .unwrap();
    // Applying for real under a prefix, with no server: registration is pending
    // (exit 75, accepted), and agent.yaml holds the exact values.
    let root = machine(dir.path(), "hostile-host");
    let site = dir.path().join("site.pp");
    std::fs::write(
        &site,
        format!(
            "class {{ 'fleetkit':\n  root => '{}',\n  server_url => 'https://localhost:9',\n  enroll_token => Sensitive({}),\n}}\nnotice(\"ORG=${{fleetkit::org}}\")\n",
            root.display(),
            fleetkit::targets::escape::puppet(HOSTILE)
        ),
    )
    .unwrap();
    let applied = run(Command::new("puppet")
        .args([
            "apply",
            "--detailed-exitcodes",
            "--color=false",
            "--modulepath",
        ])
        .arg(dist.join("puppet"))
        .arg(&site));
    assert_eq!(applied.code, 2, "{}", applied.out);
    assert!(
        applied.out.contains(&format!("ORG={HOSTILE}")),
        "{}",
        applied.out
    );
    assert!(!Path::new("/tmp/pwned").exists());
    let settings = std::fs::read_to_string(root.join("etc/fleetkit/agent.yaml")).unwrap();
    let parsed = fleetkit::agent::settings::AgentSettings::parse(&settings)
        .unwrap_or_else(|e| panic!("{e}\n{settings}"));
    assert_eq!(parsed.org, org_name);
    assert_eq!(parsed.assignment.team.as_deref(), Some(team));

    // Chef: Ruby reads the attributes back exactly; the files are valid Ruby.
    let cookbook = dist.join("chef/fleetkit");
    for f in ["metadata.rb", "attributes/default.rb", "recipes/default.rb"] {
        must(Command::new("ruby").arg("-c").arg(cookbook.join(f)));
    }
    let values = ruby_attributes(&cookbook.join("attributes/default.rb"));
    assert_eq!(values["org"], org_name.as_str());
    assert_eq!(values["team"], team);
    let rubocop = run(Command::new("rubocop")
        .args(["--format", "simple", "--no-color"])
        .current_dir(&cookbook));
    assert_eq!(rubocop.code, 0, "rubocop:\n{}", rubocop.out);
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn two_builds_from_the_same_inputs_are_byte_identical() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let agents = all_targets(dir.path());
    let args: Vec<&str> = agents.iter().map(String::as_str).collect();
    let built = build(&org, &a, &args);
    assert_eq!(built.code, 0, "{}", built.out);
    assert_eq!(build(&org, &b, &args).code, 0);
    let files_a = walk(&a);
    assert!(files_a.len() > 30, "{files_a:?}");
    let differing: Vec<String> = files_a
        .iter()
        .map(|f| f.strip_prefix(&a).unwrap())
        .filter(|rel| std::fs::read(a.join(rel)).unwrap() != std::fs::read(b.join(rel)).unwrap())
        .map(|rel| rel.display().to_string())
        .collect();
    assert!(
        differing.is_empty(),
        "differ between the builds: {differing:?}"
    );
    assert_eq!(files_a.len(), walk(&b).len());
    // SHA256SUMS matches the files (checked by sha256sum itself).
    let check = run(Command::new("sha256sum")
        .args(["--check", "--quiet", "SHA256SUMS"])
        .current_dir(&a));
    assert_eq!(check.code, 0, "{}", check.out);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("build.json")).unwrap()).unwrap();
    assert_eq!(record["built_at"], "2025-12-01T00:00:00Z");
    assert_eq!(record["policy"]["version"], 1);
    // inspect reports what the artefacts carry, and checks it.
    let inspected = must(Command::new(BIN).args(["inspect", "--json"]).arg(&a));
    let inspected: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(inspected.as_array().unwrap().len(), 3);
    for i in inspected.as_array().unwrap() {
        assert_eq!(i["bundle_verified"], true, "{i}");
        assert_eq!(i["description"]["bundle_version"], 1);
        assert!(i["problems"].as_array().unwrap().is_empty(), "{i}");
    }
}

#[test]
fn a_failed_build_leaves_the_previous_output_untouched() {
    let org = Org::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    assert_eq!(build(&org, &out, &["--target", "ansible"]).code, 0);
    let before: Vec<PathBuf> = walk(&out);
    let r = build(
        &org,
        &out,
        &[
            "--target",
            "all",
            "--agent",
            "linux-arm64=/nonexistent/fleetkit",
        ],
    );
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("/nonexistent/fleetkit"), "{}", r.out);
    assert_eq!(walk(&out), before);
    let r = build(&org, &out, &["--target", "msi"]);
    assert_eq!(r.code, 1, "{}", r.out);
    let r = build(&org, &out, &["--target", "ansibel"]);
    assert_eq!(r.code, 2, "{}", r.out);
    // An output directory that is not a build output is never replaced: not a
    // directory of other files, not the workspace (its keys).
    let other = dir.path().join("photos");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), b"meow").unwrap();
    let r = build(&org, &other, &["--target", "ansible"]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("not a fleetkit build output"), "{}", r.out);
    assert_eq!(std::fs::read(other.join("cat.jpg")).unwrap(), b"meow");
    let r = build(&org, &org.path(), &["--target", "ansible"]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(org.path().join("keys").is_dir());
    // No staging directories are left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".fleetkit-build-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The example org's generated text (role, module, cookbook; not the payload
/// files) is committed; this fails when it is not current. Regenerate with
/// FLEETKIT_UPDATE_SNAPSHOTS=1 cargo test --test targets_cm committed.
#[test]
fn the_committed_example_outputs_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    fleetkit(&["demo", "--out", demo.to_str().unwrap()]);
    let dist = dir.path().join("dist");
    let mut cmd = Command::new(BIN);
    cmd.args(["--workspace", demo.to_str().unwrap(), "build", "--out"])
        .arg(&dist)
        .args(all_targets(dir.path()))
        .env("SOURCE_DATE_EPOCH", "1764547200");
    must(&mut cmd);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var("FLEETKIT_UPDATE_SNAPSHOTS").is_ok();
    for (generated, committed) in [
        ("ansible", repo.join("ansible")),
        ("puppet/fleetkit", repo.join("tests/snapshots/puppet")),
        ("chef/fleetkit", repo.join("tests/snapshots/chef")),
    ] {
        let from = dist.join(generated);
        let text_files: Vec<PathBuf> = walk(&from)
            .into_iter()
            .filter(|f| !f.components().any(|c| c.as_os_str() == "files"))
            .collect();
        if update {
            let _ = std::fs::remove_dir_all(&committed);
        }
        for f in &text_files {
            let rel = f.strip_prefix(&from).unwrap();
            let target = committed.join(rel);
            let now = std::fs::read_to_string(f).unwrap();
            if update {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(&target, &now).unwrap();
            } else {
                let was = std::fs::read_to_string(&target).unwrap_or_else(|_| {
                    panic!("{} is not committed; run FLEETKIT_UPDATE_SNAPSHOTS=1 cargo test --test targets_cm committed", target.display())
                });
                assert_eq!(
                    was,
                    now,
                    "{} is not current; run FLEETKIT_UPDATE_SNAPSHOTS=1 cargo test --test targets_cm committed",
                    target.display()
                );
            }
        }
        let committed_files: Vec<PathBuf> = walk(&committed)
            .into_iter()
            .filter(|f| f.file_name().is_some_and(|n| n != "README.fleetkit.md"))
            .collect();
        assert_eq!(
            committed_files.len(),
            text_files.len(),
            "{} holds files fleetkit no longer generates",
            committed.display()
        );
    }
}

/// The `ReadWritePaths=` entries of a unit file: each path and whether systemd may
/// skip it when it is missing (a leading `-`).
fn read_write_paths(unit: &str) -> Vec<(PathBuf, bool)> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix("ReadWritePaths="))
        .flat_map(str::split_whitespace)
        .map(|entry| match entry.strip_prefix('-') {
            Some(path) => (PathBuf::from(path), true),
            None => (PathBuf::from(entry), false),
        })
        .collect()
}

/// Runs `command` as the unit would under `ProtectSystem=strict`: in a mount
/// namespace of its own (`unshare --mount`; the host's mounts are untouched) where
/// `root`, the machine, is read-only but for `writable`, each bind-mounted onto
/// itself first. A missing path fails the run unless it is optional, as systemd
/// fails the unit.
fn sandboxed(root: &Path, writable: &[(PathBuf, bool)], command: &[String]) -> Ran {
    use fleetkit::targets::escape::shell;
    let q = |p: &Path| shell(&p.to_string_lossy());
    let mut script = format!("set -e\nmount --bind {0} {0}\n", q(root));
    for (path, optional) in writable {
        if *optional {
            script.push_str(&format!(
                "if [ -e {0} ]; then mount --bind {0} {0}; fi\n",
                q(path)
            ));
        } else {
            script.push_str(&format!("mount --bind {0} {0}\n", q(path)));
        }
    }
    script.push_str(&format!("mount -o remount,bind,ro {}\nexec", q(root)));
    for arg in command {
        script.push(' ');
        script.push_str(&shell(arg));
    }
    run(Command::new("unshare").args(["--mount", "sh", "-c", &script]))
}

/// Issue 11: the generated `fleetkit-sync.service` set `ProtectSystem=full`, which
/// makes /etc read-only, while `agent sync` writes its fact mirrors under /etc: every
/// sync exited 1 after installing the policy. The role (Ansible renders the shared
/// unit for real, under a root prefix) installs a unit whose `ReadWritePaths=` let
/// its `ExecStart=` sync a new policy with the whole machine read-only but for those
/// paths; with any mirror directory taken off the list the same sync fails, naming
/// it. `systemd-analyze verify` accepts the unit.
#[test]
fn systemd_unit_lets_sync_write_its_fact_mirrors() {
    let org = Org::new();
    let server = Server::start(&org, Db::Sqlite);
    let token = create_token(&server, &org, "platform", 1, 3600).token;
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    let b = build(&org, &dist, &["--target", "ansible"]);
    assert_eq!(b.code, 0, "{}", b.out);
    let root = machine(dir.path(), "sandboxed");
    let vars = serde_json::json!({
        "fleetkit_server_url": server.url(),
        "fleetkit_enroll_token": token,
    });
    let installed = ansible(&dist, &root, &vars, false);
    assert_eq!(installed.code, 0, "{}", installed.out);

    let unit_path = root.join("etc/systemd/system/fleetkit-sync.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert!(unit.contains("\nProtectSystem=strict\n"), "{unit}");
    let writable = read_write_paths(&unit);
    assert!(!writable.is_empty(), "no ReadWritePaths in:\n{unit}");
    for (path, _) in &writable {
        assert!(
            path.starts_with(&root),
            "{} is not under the root prefix",
            path.display()
        );
    }
    let exec: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart in:\n{unit}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();

    let fact = |rel: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(root.join(rel)).unwrap()).unwrap()
    };
    let mirrors = [
        ("etc/ansible/facts.d/fleetkit.fact", ""),
        ("etc/puppetlabs/facter/facts.d/fleetkit.json", "fleetkit"),
        ("etc/chef/ohai/hints/fleetkit.json", ""),
    ];
    let version_in = |(rel, key): (&str, &str)| {
        let v = fact(rel);
        let v = if key.is_empty() { v } else { v[key].clone() };
        v["policy_version"].as_u64()
    };
    let before: Vec<_> = mirrors.iter().map(|m| version_in(*m)).collect();
    assert!(before.iter().all(|v| *v == Some(1)), "{before:?}");

    // A new policy, synced by the unit's own command inside the unit's sandbox.
    let v2 = org.sign_next();
    server
        .admin(&org)
        .publish_bundle(&std::fs::read(&v2).unwrap())
        .unwrap();
    let synced = sandboxed(&root, &writable, &exec);
    assert_eq!(
        synced.code, 0,
        "sync in the unit's sandbox:\n{}",
        synced.out
    );
    assert_eq!(
        std::fs::read(root.join("var/lib/fleetkit/policy.json")).unwrap(),
        std::fs::read(&v2).unwrap()
    );
    for m in mirrors {
        assert_eq!(version_in(m), Some(2), "{} not updated", m.0);
    }

    // Each mirror directory is needed: without it on the list, sync fails and says
    // where it could not write.
    let mut tried = 0;
    for (i, (path, _)) in writable.iter().enumerate() {
        let is_mirror = mirrors
            .iter()
            .any(|(rel, _)| root.join(rel).parent() == Some(path.as_path()));
        if !is_mirror {
            continue;
        }
        tried += 1;
        let mut fewer = writable.clone();
        fewer.remove(i);
        let failed = sandboxed(&root, &fewer, &exec);
        assert_ne!(failed.code, 0, "sync without {} succeeded", path.display());
        assert!(
            failed.out.contains(&path.display().to_string()),
            "the failure does not name {}:\n{}",
            path.display(),
            failed.out
        );
    }

    assert_eq!(tried, mirrors.len(), "not every mirror directory is listed");

    // systemd-analyze exits 0 even on bad lines; what it says about the unit counts.
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(_) => {
            let verify = run(Command::new("systemd-analyze")
                .arg("verify")
                .arg(&unit_path));
            assert_eq!(verify.code, 0, "systemd-analyze verify:\n{}", verify.out);
            assert!(
                !verify.out.contains("fleetkit-sync.service:"),
                "systemd-analyze verify complains:\n{}",
                verify.out
            );
        }
        Err(e) => eprintln!("note: systemd-analyze is not available ({e}); unit not verified"),
    }
}
