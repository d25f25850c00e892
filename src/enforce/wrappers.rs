//! Commands that run other commands: `sudo`, `doas`, `su -c`, `env`, `command`,
//! `builtin`, `exec`, `nice`, `nohup`, `time`, `timeout`, `stdbuf`, `setsid`,
//! `xargs`, `find -exec`, `watch`, `ssh host CMD`, `eval`, and shells given a script
//! (`bash -c STR`, a here-document fed to `sh`).
//!
//! [`expand`] turns a command line into every command that would run: the wrappers
//! themselves (so `sudo` is judged as `sudo`) and what they wrap, each inner command
//! knowing the wrappers it was found in. Script strings are parsed again as shell.

use super::shell::{self, Invocation, Word};

/// Every command a line would run, after unwrapping.
#[derive(Debug, Clone, Default)]
pub struct Expanded {
    pub invocations: Vec<Invocation>,
    /// Renderings of pipelines and lists at every level (for the blocked patterns).
    pub renderings: Vec<String>,
    /// What could not be analysed, and why.
    pub unresolved: Vec<String>,
}

/// Wrappers that add nothing of their own: judged as safe commands, their
/// command as itself.
pub const NEUTRAL_WRAPPERS: &[&str] = &[
    "env",
    "command",
    "builtin",
    "exec",
    "nice",
    "nohup",
    "time",
    "timeout",
    "stdbuf",
    "setsid",
    "ionice",
    "unbuffer",
    "caffeinate",
    "xargs",
    "watch",
    "winpty",
    "taskset",
    "flock",
    "chrt",
    "numactl",
    "firejail",
];

/// The shells whose `-c` string and standard-input script are parsed.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "rbash", "fish", "tcsh", "csh",
    "yash", "posh", "lksh", "oksh", "pdksh", "ksh93", "elvish",
];

/// Why the last argument of a command `xargs` runs is not known: it stands for
/// the words xargs reads from standard input.
const XARGS_INPUT: &str = "arguments read from standard input by xargs";

/// The name a command word resolves to: its file name without directories or a
/// Windows executable extension, in lower case (`/usr/bin/kubectl`, `\kubectl`,
/// `KUBECTL.EXE` are all `kubectl`). `None` when only the shell knows it.
pub fn command_name(w: &Word) -> Option<String> {
    let v = w.value()?;
    if w.glob || v.is_empty() || v.contains(['{', '}']) {
        return None;
    }
    let base = v.rsplit(['/', '\\']).next().unwrap_or(v);
    let lower = base.to_ascii_lowercase();
    let stem = [".exe", ".com", ".cmd", ".bat"]
        .iter()
        .find_map(|ext| lower.strip_suffix(ext))
        .unwrap_or(&lower);
    (!stem.is_empty()).then(|| stem.to_string())
}

/// Parses `command` and unwraps every command in it.
pub fn expand(command: &str) -> Expanded {
    let mut out = Expanded::default();
    expand_into(command, &[], 0, &mut out);
    out
}

fn expand_into(script: &str, wrappers: &[String], depth: usize, out: &mut Expanded) {
    if depth > 8 {
        out.unresolved
            .push("commands wrapped in shells more than 8 deep".into());
        return;
    }
    let parsed = shell::parse(script);
    out.renderings.push(normalise_space(script));
    out.renderings.extend(parsed.renderings);
    out.unresolved.extend(parsed.unresolved);
    // Pipelines of this script get numbers of their own in the whole expansion.
    let base = out
        .invocations
        .iter()
        .map(|i| i.pipeline)
        .max()
        .unwrap_or(0)
        + 1000;
    let start = out.invocations.len();
    for mut inv in parsed.invocations {
        inv.wrappers.splice(0..0, wrappers.iter().cloned());
        inv.pipeline += base;
        unwrap_one(inv, depth, out);
    }
    // Each pipeline again, with its wrappers taken off (`curl x | sudo bash` is
    // `curl x | bash` to the blocked patterns).
    let mut seen: Vec<usize> = Vec::new();
    for inv in &out.invocations[start..] {
        if !seen.contains(&inv.pipeline) {
            seen.push(inv.pipeline);
        }
    }
    for id in seen {
        let stages: Vec<String> = out.invocations[start..]
            .iter()
            .filter(|i| i.pipeline == id && !i.wraps)
            .map(render_resolved)
            .collect();
        if stages.len() > 1 {
            out.renderings.push(stages.join(" | "));
        }
    }
}

/// A command rendered with its name resolved (`/bin/bash` → `bash`), as the
/// blocked patterns are written.
fn render_resolved(inv: &Invocation) -> String {
    let mut named = inv.clone();
    if let Some(first) = named.argv.first_mut()
        && let Some(name) = command_name(first)
    {
        first.text = name;
    }
    named.render()
}

fn normalise_space(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a wrapper leaves to run.
enum Inner {
    /// No command: the wrapper alone (`sudo -l`, `env`, `command -v x`).
    Nothing,
    /// The words from this index on are the command.
    Argv(usize),
    /// A script to parse as shell.
    Script(String),
    /// Something runs that cannot be seen.
    Unknown(String),
    /// The command starts at one of these indices (the wrapper's options are
    /// not all known, so a word may be an option's value or the command): each
    /// is judged.
    Either(Vec<usize>),
}

/// Most wrappers around one command (`env env env … rm`): each is a level of
/// recursion here.
const MAX_WRAPPERS: usize = 16;

fn unwrap_one(inv: Invocation, depth: usize, out: &mut Expanded) {
    if inv.wrappers.len() > MAX_WRAPPERS {
        let why = format!("a command inside more than {MAX_WRAPPERS} wrappers");
        if !out.unresolved.contains(&why) {
            out.unresolved.push(why);
        }
        return;
    }
    let Some(first) = inv.argv.first() else {
        out.invocations.push(inv);
        return;
    };
    let Some(name) = command_name(first) else {
        out.invocations.push(inv);
        return;
    };
    let args: Vec<&Word> = inv.argv.iter().skip(1).collect();
    let inner = match name.as_str() {
        "sudo" => sudo(&args),
        "doas" => options_then_command(&args, &["-u", "-C"], false),
        "su" => su(&args),
        "env" => env(&args),
        "command" => {
            if args
                .iter()
                .take_while(|a| a.text.starts_with('-'))
                .any(|a| a.text.contains(['v', 'V']))
            {
                Inner::Nothing
            } else {
                options_then_command(&args, &[], false)
            }
        }
        "builtin" | "nohup" | "setsid" | "unbuffer" | "winpty" | "firejail" | "toybox" => {
            options_then_command(&args, &[], false)
        }
        "time" => options_then_command(&args, &["-o", "-f", "--output", "--format"], false),
        "caffeinate" => options_then_command(&args, &["-t", "-w"], false),
        // `taskset MASK CMD`, `taskset -c LIST CMD`, `chrt PRIO CMD`; `-p` changes
        // a running process.
        "taskset" | "chrt"
            if args
                .iter()
                .any(|a| a.text.starts_with("-p") || a.text == "--pid") =>
        {
            Inner::Nothing
        }
        "taskset" => options_then_command(&args, &[], true),
        "chrt" => options_then_command(&args, &["-T", "-P", "-D"], true),
        "numactl" => numactl(&args),
        "flock" => flock(&args),
        // Programs that run a command after options this engine does not list
        // one by one: each word that may start the command is judged.
        "setpriv" | "unshare" | "nsenter" | "pkexec" | "strace" | "ltrace" | "valgrind"
        | "fakeroot" | "eatmydata" | "proxychains" | "proxychains4" | "torsocks" | "xvfb-run"
        | "dbus-launch" | "ssh-agent" | "cgexec" | "rlwrap" | "prlimit" | "systemd-inhibit"
        | "cpulimit" | "trickle" | "parallel" | "runcon" | "sandbox-exec" | "catchsegv"
        | "chpst" | "sudo-rs" | "doas-rs" => loose_options(&args, 0),
        // faketime's time (after a value option or not), setarch's
        // architecture (absent under its other names: `linux32`, `x86_64`).
        "faketime" => either(loose_options(&args, 1), loose_options(&args, 2)),
        "setarch" => either(loose_options(&args, 0), loose_options(&args, 1)),
        "linux32" | "linux64" | "i386" | "x86_64" | "arm64" | "aarch64" | "ppc64" | "uname26" => {
            loose_options(&args, 0)
        }
        "launchctl" => match args.first().map(|a| a.text.as_str()) {
            Some("asuser" | "bsexec") => shifted(loose_options(&args[2.min(args.len())..], 0), 2),
            _ => Inner::Nothing,
        },
        "perf" => match args.first().map(|a| a.text.as_str()) {
            Some("stat" | "record" | "trace" | "top" | "sched" | "mem" | "kvm" | "c2c") => {
                shifted(loose_options(&args[1..], 0), 1)
            }
            _ => Inner::Nothing,
        },
        "gdb" | "lldb" => match args
            .iter()
            .position(|a| a.text == "--args" || a.text == "--")
        {
            Some(k) if k + 1 < args.len() => Inner::Argv(k + 1),
            _ => Inner::Nothing,
        },
        // `sg GROUP -c CMD` and `sg GROUP CMD…` run through `sh -c`; `runuser`
        // takes `-c` as su does, or a command after its options.
        "sg" => {
            // `sg [-] GROUP [-c] CMD`.
            let rest = match args.first() {
                Some(d) if d.text == "-" => &args[1..],
                _ => &args[..],
            };
            match rest.get(1) {
                Some(c) if c.text == "-c" => rest.get(2).map_or(Inner::Nothing, |w| script_word(w)),
                Some(_) => script_of(&rest[1..]),
                None => Inner::Nothing,
            }
        }
        "runuser" => match su(&args) {
            Inner::Nothing => loose_options(&args, 0),
            inner => inner,
        },
        "script" => script_command(&args),
        "tmux" | "screen" | "byobu" | "dtach" | "abduco" => terminal_multiplexer(&name, &args),
        "exec" => options_then_command(&args, &["-a"], false),
        "nice" => options_then_command(&args, &["-n", "--adjustment"], false),
        "ionice" => options_then_command(&args, &["-c", "-n", "--class", "--classdata"], false),
        "stdbuf" => options_then_command(
            &args,
            &["-i", "-o", "-e", "--input", "--output", "--error"],
            false,
        ),
        "chroot" => options_then_command(&args, &["--userspec", "--groups"], true),
        "timeout" => options_then_command(&args, &["-s", "-k", "--signal", "--kill-after"], true),
        "xargs" => xargs(&args),
        "find" => find(&inv, out),
        "watch" => watch(&args),
        "ssh" => ssh(&args),
        "eval" => script_of(match args.first() {
            Some(a) if a.text == "--" => &args[1..],
            _ => &args[..],
        }),
        "source" | "." => match args.iter().find(|a| a.text != "--") {
            Some(f) if f.dynamic.is_some() => Inner::Unknown(format!(
                "`{name}` runs a script given as `{}`, only known when it runs",
                f.text
            )),
            Some(f) if opens_a_descriptor(&f.text) => Inner::Unknown(format!(
                "`{name}` runs a script read from `{}`, another descriptor, which cannot be analysed",
                f.text
            )),
            Some(f) if reads_standard_input(&f.text) => stdin_script(&name, &inv),
            _ => Inner::Nothing,
        },
        n if SHELLS.contains(&n) => shell_script(n, &args, &inv),
        _ => {
            out.invocations.push(inv);
            return;
        }
    };
    let wrapper_argv_len = match &inner {
        Inner::Argv(i) => *i + 1,
        Inner::Either(at) => at.first().map_or(inv.argv.len(), |i| i + 1),
        _ => inv.argv.len(),
    };
    let mut wrapped = inv.wrappers.clone();
    wrapped.push(name.clone());
    // The wrapper is judged as itself (with its own options only).
    let own = Invocation {
        argv: inv.argv[..wrapper_argv_len.min(inv.argv.len())].to_vec(),
        wraps: matches!(inner, Inner::Argv(_) | Inner::Either(_)),
        ..inv.clone()
    };
    out.invocations.push(own);
    match inner {
        Inner::Nothing => {}
        Inner::Argv(i) => unwrap_at(i, &inv, &name, wrapped, depth, out),
        Inner::Either(at) => {
            for i in at {
                unwrap_at(i, &inv, &name, wrapped.clone(), depth, out);
            }
        }
        Inner::Script(s) => expand_into(&s, &wrapped, depth + 1, out),
        Inner::Unknown(why) => out.unresolved.push(why),
    }
}

/// Judges the command that starts after index `i` of a wrapper's arguments.
fn unwrap_at(
    i: usize,
    inv: &Invocation,
    name: &str,
    wrapped: Vec<String>,
    depth: usize,
    out: &mut Expanded,
) {
    {
        {
            let mut argv = inv.argv[i + 1..].to_vec();
            let mut assignments = inv.assignments.clone();
            if name == "env" {
                // `env A=1 B=2 cmd`: the assignments belong to cmd.
                let split = argv.iter().take_while(|w| is_assignment(&w.text)).count();
                for w in argv.drain(..split) {
                    if let Some((k, v)) = w.text.split_once('=') {
                        assignments.push((
                            k.to_string(),
                            Word {
                                text: v.to_string(),
                                dynamic: w.dynamic.clone(),
                                glob: false,
                            },
                        ));
                    }
                }
                if argv.is_empty() {
                    return;
                }
            }
            if name == "xargs" {
                argv.push(Word {
                    text: "…".into(),
                    dynamic: Some(XARGS_INPUT.into()),
                    glob: false,
                });
            }
            let inner = Invocation {
                assignments,
                argv,
                redirects: inv.redirects.clone(),
                piped_input: inv.piped_input,
                stdin_text: inv.stdin_text.clone(),
                wrappers: wrapped,
                wraps: false,
                pipeline: inv.pipeline,
            };
            unwrap_one(inner, depth, out);
        }
    }
}

fn is_assignment(s: &str) -> bool {
    match s.split_once('=') {
        Some((k, _)) => {
            !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Options (those in `with_value` take the next word unless given as `--x=v` or
/// `-xV`), an optional `--`, then the command. `positional` skips one more word
/// first (timeout's duration, chroot's directory).
fn options_then_command(args: &[&Word], with_value: &[&str], positional: bool) -> Inner {
    let mut i = skip_options(args, with_value);
    if positional && i < args.len() {
        i += 1;
    }
    command_at(args, i)
}

/// The index after a wrapper's options (and a `--` ending them).
fn skip_options(args: &[&Word], with_value: &[&str]) -> usize {
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == "--" {
            return i + 1;
        }
        if !t.starts_with('-') || t == "-" {
            break;
        }
        i += if takes_value(t, with_value) { 2 } else { 1 };
    }
    // An option that takes a value may be the last word.
    i.min(args.len())
}

/// Whether option word `t` takes the next word as its value: listed as is, a
/// GNU long option given by a prefix (`--sig` for `--signal`), or a cluster of
/// short options ending in one that takes a value (`-ca NAME`).
fn takes_value(t: &str, with_value: &[&str]) -> bool {
    if with_value.contains(&t) {
        return true;
    }
    if let Some(long) = t.strip_prefix("--") {
        return !long.is_empty()
            && !t.contains('=')
            && with_value
                .iter()
                .any(|v| v.starts_with("--") && v.starts_with(t));
    }
    t.len() > 2
        && t.chars()
            .last()
            .is_some_and(|c| with_value.contains(&format!("-{c}").as_str()))
        && t[1..].chars().all(|c| c.is_ascii_alphabetic())
}

fn command_at(args: &[&Word], i: usize) -> Inner {
    if i < args.len() {
        Inner::Argv(i)
    } else {
        Inner::Nothing
    }
}

fn sudo(args: &[&Word]) -> Inner {
    const WITH_VALUE: &[&str] = &[
        "-u",
        "-g",
        "-h",
        "-p",
        "-C",
        "-D",
        "-r",
        "-t",
        "-U",
        "-T",
        "-R",
        "--user",
        "--group",
        "--host",
        "--prompt",
        "--close-from",
        "--chdir",
        "--role",
        "--type",
        "--other-user",
        "--command-timeout",
        "--chroot",
    ];
    let end = skip_options(args, WITH_VALUE);
    if let Some(e) = args[..end]
        .iter()
        .position(|w| w.text == "-e" || w.text == "--edit")
    {
        // sudoedit: the rest are files to edit as root.
        return Inner::Script(format!(
            "sudoedit {}",
            args[e + 1..]
                .iter()
                .map(|w| quote(&w.text))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    command_at(args, end)
}

/// `su [options] [user] -c CMD`: `-c CMD`, `-cCMD`, `--command[=]CMD` and
/// `--session-command` by any GNU prefix (`--comm`).
fn su(args: &[&Word]) -> Inner {
    for (i, w) in args.iter().enumerate() {
        let t = w.text.as_str();
        let (name, inline) = t.split_once('=').map_or((t, None), |(n, v)| (n, Some(v)));
        let long = name.len() > 3
            && name.starts_with("--")
            && ("--command".starts_with(name) || "--session-command".starts_with(name));
        if long {
            return match inline {
                Some(v) => Inner::Script(v.to_string()),
                None => args.get(i + 1).map_or(Inner::Nothing, |w| script_word(w)),
            };
        }
        if let Some(rest) = t.strip_prefix('-').filter(|r| !r.starts_with('-'))
            && let Some(k) = rest.find('c')
        {
            let value = &rest[k + 1..];
            return if value.is_empty() {
                args.get(i + 1).map_or(Inner::Nothing, |w| script_word(w))
            } else {
                Inner::Script(value.to_string())
            };
        }
    }
    Inner::Nothing
}

fn env(args: &[&Word]) -> Inner {
    const WITH_VALUE: &[&str] = &[
        "-u",
        "-C",
        "-P",
        "-S",
        "--unset",
        "--chdir",
        "--split-string",
    ];
    let end = skip_options(args, WITH_VALUE);
    for (i, w) in args[..end].iter().enumerate() {
        let t = w.text.as_str();
        // GNU getopt: `-S STR`, `-SSTR`, `-iS STR`, and `--split-string` by any
        // unique prefix (`--split STR`, `--s=STR`).
        let (name, value) = t.split_once('=').map_or((t, None), |(n, v)| (n, Some(v)));
        let long = name.len() >= 3 && name.starts_with("--") && "--split-string".starts_with(name);
        if long {
            return match value {
                Some(v) => Inner::Script(v.to_string()),
                None => args.get(i + 1).map_or(Inner::Nothing, |w| script_word(w)),
            };
        }
        if !t.starts_with("--")
            && let Some(k) = t.find('S')
        {
            let rest = &t[k + 1..];
            return if rest.is_empty() {
                args.get(i + 1).map_or(Inner::Nothing, |w| script_word(w))
            } else {
                Inner::Script(rest.to_string())
            };
        }
    }
    // NAME=VALUE words come next, then the command (handled by the caller).
    command_at(args, end)
}

fn xargs(args: &[&Word]) -> Inner {
    // Long options take their value after `=` only (`--max-lines[=N]`, `--eof[=E]`
    // are optional); `-i`, `-l`, `-e` take theirs attached.
    const WITH_VALUE: &[&str] = &[
        "-I",
        "-L",
        "-n",
        "-P",
        "-s",
        "-d",
        "-E",
        "-a",
        "--arg-file",
        "--delimiter",
        "--max-args",
        "--max-procs",
        "--max-chars",
        "--process-slot-var",
    ];
    // Without a command xargs runs echo.
    command_at(args, skip_options(args, WITH_VALUE))
}

/// `find ROOTS… -exec CMD {} ;`: each action's command runs on files under the
/// roots, so `{}` stands for the roots.
fn find(inv: &Invocation, out: &mut Expanded) -> Inner {
    let args = &inv.argv[1..];
    let roots: Vec<&Word> = args
        .iter()
        .take_while(|w| !w.text.starts_with('-') && !matches!(w.text.as_str(), "(" | "!"))
        .collect();
    let mut i = 0;
    let mut wrappers = inv.wrappers.clone();
    wrappers.push("find".into());
    while i < args.len() {
        let t = args[i].text.as_str();
        if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
            let start = i + 1;
            let mut end = start;
            while end < args.len() && !matches!(args[end].text.as_str(), ";" | "+") {
                end += 1;
            }
            let argv: Vec<Word> = args[start..end]
                .iter()
                .flat_map(|w| {
                    if w.text == "{}" {
                        if roots.is_empty() {
                            vec![Word::literal(".")]
                        } else {
                            roots.iter().map(|r| (*r).clone()).collect()
                        }
                    } else {
                        vec![w.clone()]
                    }
                })
                .collect();
            if !argv.is_empty() {
                let inner = Invocation {
                    argv,
                    wrappers: wrappers.clone(),
                    pipeline: inv.pipeline,
                    ..Invocation::default()
                };
                out.renderings.push(inner.render());
                unwrap_one(inner, 0, out);
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    Inner::Nothing
}

fn watch(args: &[&Word]) -> Inner {
    let mut i = 0;
    while i < args.len() && args[i].text.starts_with('-') {
        let t = args[i].text.as_str();
        i += if ["-n", "--interval", "-q"].contains(&t)
            || t.starts_with("--int") && !t.contains('=')
        {
            2
        } else {
            1
        };
    }
    script_of(&args[i.min(args.len())..])
}

/// The command after a wrapper's options when which options take a value is not
/// known: every word that may start it (the first word after the options, and
/// each one before it that may be an option's value instead) is a candidate,
/// at most 32. `positional`: words that come first and are not options
/// (faketime's time, setarch's architecture).
fn loose_options(args: &[&Word], positional: usize) -> Inner {
    let mut at = Vec::new();
    let mut left = positional;
    for (j, w) in args.iter().enumerate() {
        let t = w.text.as_str();
        if t == "--" {
            if j + 1 < args.len() {
                at.push(j + 1);
            }
            break;
        }
        if t.starts_with('-') && t.len() > 1 {
            continue;
        }
        if left > 0 {
            left -= 1;
            continue;
        }
        at.push(j);
        let after_option = j > 0 && {
            let p = args[j - 1].text.as_str();
            p.starts_with('-') && p.len() > 1 && !p.contains('=')
        };
        if !after_option || at.len() >= 32 {
            break;
        }
    }
    if at.is_empty() {
        Inner::Nothing
    } else {
        Inner::Either(at)
    }
}

/// The candidates of both readings.
fn either(a: Inner, b: Inner) -> Inner {
    let at = |i: Inner| match i {
        Inner::Argv(k) => vec![k],
        Inner::Either(v) => v,
        _ => Vec::new(),
    };
    let mut all = at(a);
    for k in at(b) {
        if !all.contains(&k) {
            all.push(k);
        }
    }
    if all.is_empty() {
        Inner::Nothing
    } else {
        Inner::Either(all)
    }
}

/// `inner` found in `args[by..]`, its indices made relative to `args`.
fn shifted(inner: Inner, by: usize) -> Inner {
    match inner {
        Inner::Argv(i) => Inner::Argv(i + by),
        Inner::Either(at) => Inner::Either(at.into_iter().map(|i| i + by).collect()),
        other => other,
    }
}

/// `numactl [options] CMD`: its options are glued (`--cpunodebind=0`, `-N0`) or
/// take the next word (`-N 0`).
fn numactl(args: &[&Word]) -> Inner {
    const WITH_VALUE: &[&str] = &[
        "-a",
        "-b",
        "-C",
        "-i",
        "-l",
        "-m",
        "-N",
        "-p",
        "-P",
        "--interleave",
        "--membind",
        "--cpunodebind",
        "--physcpubind",
        "--preferred",
        "--preferred-many",
    ];
    options_then_command(args, WITH_VALUE, false)
}

/// `flock [options] FILE|DIR CMD…`, `flock [options] FILE -c STRING` (run by
/// `sh -c`), or `flock [options] FD` (locks an open file, runs nothing).
fn flock(args: &[&Word]) -> Inner {
    let i = skip_options(
        args,
        &["-w", "--timeout", "--wait", "-E", "--conflict-exit-code"],
    );
    let rest = &args[i.min(args.len())..];
    match rest {
        [] | [_] => Inner::Nothing,
        [_, c, script, ..] if c.text == "-c" || c.text == "--command" => script_word(script),
        [_, ..] => Inner::Argv(i + 1),
    }
}

/// `script [options] [FILE]`: with `-c STRING` it runs the string through the
/// user's shell; without, an interactive shell.
fn script_command(args: &[&Word]) -> Inner {
    for (k, w) in args.iter().enumerate() {
        let t = w.text.as_str();
        // getopt takes any unambiguous prefix of a long option (`--comm`, `--c`).
        let (long, inline) = t.split_once('=').unwrap_or((t, ""));
        let command = long.len() > 2 && long.starts_with("--") && "--command".starts_with(long);
        if command && t.contains('=') {
            return Inner::Script(inline.to_string());
        }
        // `-qc CMD`, `-cCMD`: in a cluster, what follows `c` is its value.
        if let Some(k) = t
            .strip_prefix('-')
            .filter(|r| !r.starts_with('-'))
            .and_then(|r| r.find('c'))
            && k + 2 < t.len()
        {
            return Inner::Script(t[k + 2..].to_string());
        }
        let cluster_c = t.starts_with('-') && !t.starts_with("--") && t.ends_with('c');
        if command || cluster_c {
            return match args.get(k + 1) {
                Some(s) => script_word(s),
                None => Inner::Unknown("`script -c` without a command".into()),
            };
        }
    }
    Inner::Nothing
}

/// tmux, screen and their kind run a command in a terminal of their own, later
/// or in the background (`tmux new -d 'CMD'`, `tmux send-keys … Enter`, `screen
/// -dm CMD`): not followed. Listing and attaching run nothing new.
fn terminal_multiplexer(name: &str, args: &[&Word]) -> Inner {
    const HARMLESS: &[&str] = &[
        "ls",
        "list-sessions",
        "list-windows",
        "lsw",
        "list-panes",
        "lsp",
        "attach",
        "attach-session",
        "a",
        "at",
        "kill-session",
        "kill-server",
        "has-session",
        "has",
        "-ls",
        "-list",
        "-r",
        "-x",
        "-v",
        "-V",
        "-h",
        "--help",
        "-version",
    ];
    // tmux chains commands with `;` (`tmux new -d CMD \; attach`).
    let harmless = args
        .first()
        .is_none_or(|a| HARMLESS.contains(&a.text.as_str()))
        && !args.iter().any(|a| a.text.ends_with(';'));
    if harmless {
        return Inner::Nothing;
    }
    Inner::Unknown(format!(
        "`{name}` runs a command in a terminal session of its own, which the policy engine does not follow"
    ))
}

/// `ssh [options] host [command…]`: the command runs on the host, through its shell.
/// Options that run a local command (`-o ProxyCommand=…`, `LocalCommand`,
/// `KnownHostsCommand`, `Match exec`) or read another configuration (`-F`) ask.
fn ssh(args: &[&Word]) -> Inner {
    let runs_locally = args.iter().any(|a| {
        let t = a.text.to_ascii_lowercase();
        t.contains("proxycommand")
            || t.contains("localcommand")
            || t.contains("knownhostscommand")
            || (a.text.starts_with("-F"))
    });
    if runs_locally {
        return Inner::Unknown(
            "`ssh` is given an option that runs a local command or reads another configuration, which is not analysed".into(),
        );
    }
    const WITH_VALUE: &str = "BbcDEeFIiJLlmOoPpQRSWw";
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == "--" {
            i += 1;
            break;
        }
        if !t.starts_with('-') {
            break;
        }
        let last = t.chars().last().unwrap_or('-');
        i += if t.len() == 2 && WITH_VALUE.contains(last) {
            2
        } else {
            1
        };
    }
    // args[i] is the host.
    if i + 1 < args.len() {
        script_of(&args[i + 1..])
    } else {
        Inner::Nothing
    }
}

/// The words joined by spaces, as `eval` and `ssh` give them to a shell.
fn script_of(words: &[&Word]) -> Inner {
    if words.is_empty() {
        return Inner::Nothing;
    }
    if let Some(w) = words.iter().find(|w| w.dynamic.is_some()) {
        return Inner::Unknown(format!(
            "a command built at run time (`{}`) cannot be analysed",
            w.text
        ));
    }
    Inner::Script(
        words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn script_word(w: &Word) -> Inner {
    match w.value() {
        Some(s) => Inner::Script(s.to_string()),
        None => Inner::Unknown(format!(
            "a shell script given as `{}` is only known when it runs",
            w.text
        )),
    }
}

/// `bash [-options] -c STRING`, `sh -s`, `bash < script`, `curl … | sh`.
fn shell_script(name: &str, args: &[&Word], inv: &Invocation) -> Inner {
    let mut args = args;
    if name == "busybox" {
        match args.first().and_then(|w| command_name(w)) {
            Some(n) if SHELLS.contains(&n.as_str()) => args = &args[1..],
            // Any other applet is that program (`busybox nc …`).
            Some(_) => return Inner::Argv(0),
            None => return Inner::Nothing,
        }
    }
    let mut i = 0;
    let mut dash_c = false;
    let mut dash_s = false;
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == "--" || t == "-" {
            i += 1;
            break;
        }
        if !(t.starts_with('-') || t.starts_with('+')) {
            break;
        }
        if t == "-o" || t == "+o" || t == "-O" || t == "+O" || t == "--rcfile" || t == "--init-file"
        {
            i += 2;
            continue;
        }
        if !t.starts_with("--") && t[1..].contains('c') {
            dash_c = true;
        }
        // `-s`: the script is standard input, and the operands are its arguments.
        if !t.starts_with("--") && t.starts_with('-') && t[1..].contains('s') {
            dash_s = true;
        }
        // `-euxo pipefail`: a cluster ending in `o` takes the next word.
        i += if !t.starts_with("--") && t.ends_with(['o', 'O']) {
            2
        } else {
            1
        };
    }
    if dash_c {
        return match args.get(i) {
            Some(w) => script_word(w),
            None => Inner::Unknown(format!("`{name} -c` without a command")),
        };
    }
    if i < args.len() && !dash_s {
        let file = args[i];
        if file.dynamic.is_some() {
            // `bash <(curl …)`, `bash "$F"`.
            return Inner::Unknown(format!(
                "`{name}` runs a script given as `{}`, only known when it runs",
                file.text
            ));
        }
        if opens_a_descriptor(&file.text) {
            return Inner::Unknown(format!(
                "`{name}` runs a script read from `{}`, another descriptor, which cannot be analysed",
                file.text
            ));
        }
        if !reads_standard_input(&file.text) {
            // A script file: it runs as any program does; its content is not read.
            return Inner::Nothing;
        }
    }
    stdin_script(name, inv)
}

/// `/dev/fd/N` or `/proc/PID/fd/N` for a descriptor other than 0.
fn opens_a_descriptor(file: &str) -> bool {
    let names: Vec<&str> = file
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    names.len() >= 2
        && names[names.len() - 2] == "fd"
        && names[names.len() - 1].parse::<u32>().is_ok_and(|n| n != 0)
}

/// `/dev/stdin`, `/dev/fd/N`, `/proc/self/fd/N`: a file name that is the
/// command's standard input or another open descriptor (a here-document's).
pub fn reads_standard_input(file: &str) -> bool {
    // Any spelling (`//dev/stdin`, `/dev/./stdin`, `../../dev/stdin`, `stdin`
    // after `cd /dev`): the last names decide.
    let names: Vec<&str> = file
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let number = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    file == "-"
        || names.last() == Some(&"stdin")
        || (names.len() >= 2 && names[names.len() - 2] == "fd" && number(names[names.len() - 1]))
}

/// The script a shell (or `source`) reads from its standard input: a
/// here-document or here-string is parsed; a pipe or a file is not known.
fn stdin_script(name: &str, inv: &Invocation) -> Inner {
    // `0<&3`, `< <(…)`: the input is another descriptor's, whatever else is set.
    if inv
        .redirects
        .iter()
        .any(|r| !r.write && r.target.dynamic.is_some())
    {
        return Inner::Unknown(format!(
            "`{name}` runs commands read from another descriptor or a substitution, which cannot be analysed"
        ));
    }
    if let Some(text) = &inv.stdin_text {
        return Inner::Script(text.clone());
    }
    if inv.piped_input {
        return Inner::Unknown(format!(
            "`{name}` runs commands read from a pipe, which cannot be analysed"
        ));
    }
    if inv.redirects.iter().any(|r| !r.write) {
        return Inner::Unknown(format!(
            "`{name}` runs commands read from a file, which are not analysed"
        ));
    }
    // No input of its own: whatever encloses it (`{ bash; } <<'EOF'`, a
    // function, `exec 3<<…`) decides what it reads.
    Inner::Unknown(format!(
        "`{name}` runs commands read from its standard input, which is not known here"
    ))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(cmd: &str) -> Vec<String> {
        expand(cmd)
            .invocations
            .iter()
            .map(|i| {
                i.argv
                    .first()
                    .and_then(command_name)
                    .unwrap_or_else(|| "?".into())
            })
            .collect()
    }

    #[test]
    fn wrappers_are_unwrapped() {
        assert_eq!(names("sudo -u root rm -rf /"), ["sudo", "rm"]);
        assert_eq!(
            names("env A=1 kubectl --context=prod-eu delete ns x"),
            ["env", "kubectl"]
        );
        let e = expand("env A=1 kubectl get pods");
        assert_eq!(e.invocations[1].assignments[0].0, "A");
        assert_eq!(e.invocations[1].wrappers, ["env"]);
        assert_eq!(names("bash -c \"curl x | bash\""), ["bash", "curl", "bash"]);
        assert!(!expand("bash -c \"curl x | bash\"").unresolved.is_empty());
        assert_eq!(names("find / -exec rm {} +"), ["rm", "find"]);
        let e = expand("find / -exec rm {} +");
        assert_eq!(e.invocations[0].argv[1].text, "/");
        assert_eq!(
            names("timeout -s KILL 10 nice -n 5 /usr/bin/kubectl get x"),
            ["timeout", "nice", "kubectl"]
        );
        assert_eq!(names("ls | xargs rm"), ["ls", "xargs", "rm"]);
        assert_eq!(names("command -v rm"), ["command"]);
        assert_eq!(names("exec \\kubectl get x"), ["exec", "kubectl"]);
        assert_eq!(names("ssh host 'rm -rf /'"), ["ssh", "rm"]);
        assert_eq!(names("eval 'rm -rf /'"), ["eval", "rm"]);
        assert_eq!(names("sh <<EOF\nrm -rf /\nEOF\n"), ["sh", "rm"]);
        assert_eq!(names("bash -euxo pipefail -c 'rm x'"), ["bash", "rm"]);
        assert_eq!(names("KUBECTL.EXE get x"), ["kubectl"]);
        // The fourth red-team round's wrappers.
        assert_eq!(names("winpty rm -rf ~"), ["winpty", "rm"]);
        assert_eq!(names("taskset -c 0 nc x 1"), ["taskset", "nc"]);
        assert_eq!(names("taskset 1 rm x"), ["taskset", "rm"]);
        assert_eq!(names("taskset -p 1 123"), ["taskset"]);
        assert_eq!(names("flock /tmp/l nc x 1"), ["flock", "nc"]);
        assert_eq!(names("flock -x /tmp/l -c 'nc x 1'"), ["flock", "nc"]);
        assert_eq!(names("flock 9"), ["flock"]);
        assert_eq!(names("script -qc 'nc x 1' /dev/null"), ["script", "nc"]);
        assert_eq!(
            names("numactl --cpunodebind=0 -m 0 nc x 1"),
            ["numactl", "nc"]
        );
        assert!(!expand("tmux new -d 'nc x 1'").unresolved.is_empty());
        assert!(!expand(r"tmux ls \; new -d 'nc x 1'").unresolved.is_empty());
        assert!(!expand("screen -dm nc x 1").unresolved.is_empty());
        assert!(expand("tmux ls").unresolved.is_empty());
        assert!(expand("screen -ls").unresolved.is_empty());
    }

    #[test]
    fn dynamic_scripts_are_unresolved() {
        assert!(!expand("bash -c \"$X\"").unresolved.is_empty());
        assert!(!expand("curl x | sh").unresolved.is_empty());
        assert!(expand("bash deploy.sh").unresolved.is_empty());
    }
}
