//! Claude Code's `PreToolUse` hook protocol: the JSON Claude Code writes on the
//! hook's standard input, and the JSON answer it reads back.
//!
//! Input (fields Claude Code may add later are ignored):
//! `{"session_id", "cwd", "permission_mode", "hook_event_name": "PreToolUse",
//!   "tool_name": "Bash", "tool_input": {"command": "…", "description": "…"}, …}`.
//! Answer: `{"hookSpecificOutput": {"hookEventName": "PreToolUse",
//! "permissionDecision": "allow" | "ask" | "deny", "permissionDecisionReason": "…"}}`
//! on standard output with exit status 0, or no answer at all (Claude Code's own
//! permission rules and mode then apply).
//!
//! The hook only restricts: it answers `deny` and `ask`, and never `allow`. A hook's
//! "allow" skips Claude Code's own permission prompt, so any gap in the engine's
//! reading of a command would become a silent grant; what the policy allows is
//! left to Claude Code's own rules and prompt instead. Errors are
//! the caller's to turn into exit status 2, the one status Claude Code treats as
//! "blocked" (any other failure lets the tool run).

use super::{Decision, Request, Verdict};
use serde::Deserialize;

/// Largest hook input read (Claude Code sends the command and a few ids).
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
pub struct HookInput {
    pub hook_event_name: Option<String>,
    pub tool_name: String,
    #[serde(default)]
    pub tool_input: serde_json::Map<String, serde_json::Value>,
    pub cwd: Option<String>,
    pub permission_mode: Option<String>,
    pub session_id: Option<String>,
}

/// Why a hook input cannot be decided (the hook then blocks the tool).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("the hook input is not the JSON Claude Code sends: {0}")]
    Json(String),
    #[error("the hook input is {0} bytes; more than {MAX_INPUT_BYTES} is not read")]
    TooLarge(usize),
    #[error("the hook was called for `{0}`, not PreToolUse")]
    Event(String),
    #[error("`tool_input.command` is missing or not a string")]
    NoCommand,
}

/// The request a hook input asks about. `None`: a tool this hook does not judge
/// (the managed settings match only Bash and PowerShell; anything else is left to
/// Claude Code).
pub fn request(bytes: &[u8]) -> Result<Option<(Request, HookInput)>, HookError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(HookError::TooLarge(bytes.len()));
    }
    let input: HookInput =
        serde_json::from_slice(bytes).map_err(|e| HookError::Json(e.to_string()))?;
    if let Some(event) = &input.hook_event_name
        && event != "PreToolUse"
    {
        return Err(HookError::Event(event.clone()));
    }
    if input.tool_name != "Bash" && input.tool_name != "PowerShell" {
        return Ok(None);
    }
    let command = input
        .tool_input
        .get("command")
        .and_then(|c| c.as_str())
        .ok_or(HookError::NoCommand)?
        .to_string();
    let request = Request::Command {
        command,
        cwd: input.cwd.clone(),
    };
    Ok(Some((request, input)))
}

/// Whether a PowerShell command is plain enough to be read with shell word rules:
/// one command of bare or quoted words, with none of PowerShell's own syntax
/// (variables, script blocks, subexpressions, pipelines, the backtick escape).
pub fn powershell_is_plain(command: &str) -> bool {
    !command.contains([
        '$', '`', '(', ')', '{', '}', '|', ';', '&', '@', '<', '>', ',', '\n', '\r',
    ])
}

/// PowerShell cmdlets and their built-in aliases (lower case; PowerShell ignores
/// case) as the tool the policy knows that does the same thing, so the same rules
/// and classes judge them: `Remove-Item` and `del` are `rm`, `iwr` is `curl`.
const CMDLET_EQUIVALENTS: &[(&[&str], &str)] = &[
    (
        &["remove-item", "ri", "rm", "rmdir", "rd", "del", "erase"],
        "rm",
    ),
    (&["get-content", "gc", "cat", "type"], "cat"),
    (
        &[
            "set-content",
            "sc",
            "add-content",
            "ac",
            "out-file",
            "tee-object",
            "tee",
        ],
        "tee",
    ),
    (&["copy-item", "copy", "cp", "cpi"], "cp"),
    (
        &["move-item", "move", "mv", "mi", "rename-item", "ren", "rni"],
        "mv",
    ),
    (&["new-item", "ni", "mkdir", "md"], "touch"),
    (&["get-childitem", "gci", "ls", "dir"], "ls"),
    (
        &[
            "set-location",
            "sl",
            "cd",
            "chdir",
            "push-location",
            "pushd",
        ],
        "cd",
    ),
    (&["get-location", "gl", "pwd"], "pwd"),
    (
        &[
            "invoke-webrequest",
            "iwr",
            "curl",
            "wget",
            "invoke-restmethod",
            "irm",
            "start-bitstransfer",
        ],
        "curl",
    ),
    (&["stop-process", "spps", "kill"], "kill"),
    (&["get-process", "gps", "ps"], "ps"),
    (&["select-string", "sls"], "grep"),
    (&["write-output", "write", "echo", "write-host"], "echo"),
];

/// Commands that run code fleetkit cannot read (a string, a script block, another
/// program by name, a remote session) or install software: always approval.
const CMDLETS_RUNNING_CODE: &[&str] = &[
    "invoke-expression",
    "iex",
    "invoke-command",
    "icm",
    "start-process",
    "saps",
    "start",
    "invoke-item",
    "ii",
    "start-job",
    "sajb",
    "start-threadjob",
    "powershell",
    "powershell.exe",
    "pwsh",
    "pwsh.exe",
    "cmd",
    "cmd.exe",
    "wsl",
    "wsl.exe",
    "bash",
    "bash.exe",
    "install-module",
    "install-package",
    "install-script",
    "winget",
    "choco",
    "scoop",
    "set-executionpolicy",
    "new-pssession",
    "enter-pssession",
    "add-type",
    "import-module",
    "ipmo",
];

/// PowerShell's approved verbs that only read or show: a `Verb-Noun` cmdlet with
/// another approved verb (`Set-`, `Clear-`, `Disable-`, `Uninstall-`, …) changes
/// the machine and asks unless [`CMDLET_EQUIVALENTS`] knows it.
const READING_VERBS: &[&str] = &[
    "get",
    "find",
    "search",
    "select",
    "format",
    "show",
    "measure",
    "compare",
    "test",
    "resolve",
    "trace",
    "convert",
    "convertfrom",
    "convertto",
    "group",
    "sort",
    "join",
    "split",
    "read",
    "receive",
    "wait",
    "watch",
    "ping",
    "limit",
    "skip",
    "confirm",
];

/// Every approved PowerShell verb (`Get-Verb`); a dashed name whose first part is
/// not one (`apt-get`, `docker-compose`) is an ordinary program.
const APPROVED_VERBS: &[&str] = &[
    "add",
    "clear",
    "close",
    "copy",
    "enter",
    "exit",
    "find",
    "format",
    "get",
    "hide",
    "join",
    "lock",
    "move",
    "new",
    "open",
    "optimize",
    "pop",
    "push",
    "redo",
    "remove",
    "rename",
    "reset",
    "resize",
    "search",
    "select",
    "set",
    "show",
    "skip",
    "split",
    "step",
    "switch",
    "undo",
    "unlock",
    "watch",
    "connect",
    "disconnect",
    "read",
    "receive",
    "send",
    "write",
    "backup",
    "checkpoint",
    "compare",
    "compress",
    "convert",
    "convertfrom",
    "convertto",
    "dismount",
    "edit",
    "expand",
    "export",
    "group",
    "import",
    "initialize",
    "limit",
    "merge",
    "mount",
    "out",
    "publish",
    "restore",
    "save",
    "sync",
    "unpublish",
    "update",
    "debug",
    "measure",
    "ping",
    "repair",
    "resolve",
    "test",
    "trace",
    "approve",
    "assert",
    "build",
    "complete",
    "confirm",
    "deny",
    "deploy",
    "disable",
    "enable",
    "install",
    "invoke",
    "register",
    "request",
    "restart",
    "resume",
    "start",
    "stop",
    "submit",
    "suspend",
    "uninstall",
    "unregister",
    "wait",
    "block",
    "grant",
    "protect",
    "revoke",
    "unblock",
    "unprotect",
    "use",
    "sort",
];

/// A PowerShell parameter name (`-Path`), which `-Path:VALUE` joins to its value;
/// not a program's own `--option=` (which keeps its colon: `--output=C:\x`).
fn is_parameter(word: &str) -> bool {
    word.strip_prefix('-')
        .is_some_and(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Words PowerShell reads differently from what they look like, or that reach
/// what the path rules cannot see, ask: a `"` inside a word (PowerShell 5.1 and
/// 7.0–7.2 pass it to a program unescaped, splitting the word), network paths
/// (`\\host\share`: Windows sends the user's credentials there), 8.3 short names
/// (`C:\PROGRA~3`), wildcards in a path, and the `env:` and `variable:` drives.
fn powershell_word_check(word: &str) -> Result<(), String> {
    let ask = |what: &str| {
        Err(format!(
            "`{word}`: {what} in a PowerShell command is not analysed; approval required"
        ))
    };
    if word.contains('"') {
        return ask("a double quote inside a word");
    }
    let value = word
        .split_once(':')
        .map_or(word, |(p, v)| if is_parameter(p) { v } else { word });
    if value.starts_with("\\\\") || value.starts_with("//") {
        return ask("a network path");
    }
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("env:") || lower.starts_with("variable:") {
        return ask("the environment or variable drive");
    }
    let is_path = value.contains(['\\', '/']);
    if is_path && value.contains(['*', '?', '[']) {
        return ask("a wildcard in a path");
    }
    if value.split(['\\', '/']).any(|part| {
        part.split_once('~')
            .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit()))
    }) {
        return ask("a short (8.3) file name");
    }
    Ok(())
}

/// PowerShell's built-in aliases that [`CMDLET_EQUIVALENTS`] does not map, as the
/// cmdlets they stand for, so the verb rule judges them (`sp` is
/// `Set-ItemProperty`, which asks).
const BUILTIN_ALIASES: &[(&str, &str)] = &[
    ("sp", "set-itemproperty"),
    ("si", "set-item"),
    ("sv", "set-variable"),
    ("set", "set-variable"),
    ("sal", "set-alias"),
    ("nal", "new-alias"),
    ("epal", "export-alias"),
    ("ipal", "import-alias"),
    ("iwmi", "invoke-wmimethod"),
    ("icim", "invoke-cimmethod"),
    ("ipsn", "import-pssession"),
    ("nsn", "new-pssession"),
    ("etsn", "enter-pssession"),
    ("rp", "remove-itemproperty"),
    ("rv", "remove-variable"),
    ("spsv", "stop-service"),
    ("sasv", "start-service"),
    ("r", "invoke-history"),
    ("ihy", "invoke-history"),
    ("rjb", "remove-job"),
    ("clc", "clear-content"),
    ("cli", "clear-item"),
    ("clp", "clear-itemproperty"),
    ("clv", "clear-variable"),
    ("cpp", "copy-itemproperty"),
    ("mp", "move-itemproperty"),
    ("rnp", "rename-itemproperty"),
    ("nv", "new-variable"),
    ("nmo", "new-module"),
    ("rmo", "remove-module"),
    ("spjb", "stop-job"),
    ("rsn", "remove-pssession"),
    ("swmi", "set-wmiinstance"),
    ("rwmi", "remove-wmiobject"),
    ("rsnp", "remove-pssnapin"),
    ("asnp", "add-pssnapin"),
    ("clhy", "clear-history"),
    ("cnsn", "connect-pssession"),
    ("dnsn", "disconnect-pssession"),
    ("ndr", "new-psdrive"),
    ("rdr", "remove-psdrive"),
    ("mount", "new-psdrive"),
    ("rcjb", "receive-job"),
    ("gsv", "get-service"),
    ("gwmi", "get-wmiobject"),
    ("gcim", "get-ciminstance"),
    ("gi", "get-item"),
    ("gp", "get-itemproperty"),
    ("gal", "get-alias"),
    ("gcm", "get-command"),
    ("rvpa", "resolve-path"),
    ("gv", "get-variable"),
    ("gdr", "get-psdrive"),
    ("h", "get-history"),
    ("ghy", "get-history"),
];

/// What the first word of a plain PowerShell command is to the policy: the tool it
/// stands for, or why it needs approval.
fn powershell_program(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    // `curl.exe` is curl; a program named by a path (`.\ls`, `C:\tools\ls.exe`, a
    // share) is whatever file is there, or a script PowerShell runs.
    if lower.contains(['\\', '/']) {
        return Err(format!(
            "`{name}` runs the program or script at that path, which the policy engine cannot know; approval required"
        ));
    }
    let lower = BUILTIN_ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower.clone(), |(_, cmdlet)| (*cmdlet).to_string());
    let base = lower.as_str();
    let stem = base.strip_suffix(".exe").unwrap_or(base);
    if CMDLETS_RUNNING_CODE.contains(&base) || CMDLETS_RUNNING_CODE.contains(&stem) {
        return Err(format!(
            "`{name}` runs code or installs software the policy engine cannot read; approval required"
        ));
    }
    // `sc.exe` is the service controller, not `sc` (Set-Content): a name with
    // `.exe` is the program, which the bash rules know by its stem.
    if stem != base {
        return Ok(stem.to_string());
    }
    if let Some((_, tool)) = CMDLET_EQUIVALENTS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
    {
        return Ok((*tool).to_string());
    }
    if let Some((verb, _)) = lower.split_once('-')
        && APPROVED_VERBS.contains(&verb)
        && !READING_VERBS.contains(&verb)
    {
        return Err(format!(
            "`{name}` is a PowerShell cmdlet that changes the machine (verb `{verb}`) and the policy engine does not know it; approval required"
        ));
    }
    Ok(name.to_string())
}

/// A plain PowerShell command as the same words in bash syntax, its cmdlet or alias
/// replaced by the tool it stands for: PowerShell's backslash is a path separator,
/// not an escape, so each word is single-quoted (`cat C:\Users\dev\.ssh\id_rsa`
/// keeps its backslashes). `Err` with the reason when the command is not plain, its
/// quotes do not close, or its cmdlet runs code or changes the machine unknown to
/// the engine.
pub fn powershell_as_bash(command: &str) -> Result<String, String> {
    const SYNTAX: &str =
        "this PowerShell command uses syntax the policy engine does not analyse; approval required";
    if !powershell_is_plain(command) {
        return Err(SYNTAX.into());
    }
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in command.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(SYNTAX.into());
    }
    if in_word {
        words.push(word);
    }
    let mut judged = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        powershell_word_check(w)?;
        // `-Path:C:\x` is `-Path C:\x` to PowerShell: two words, so the value is
        // judged as the path it is.
        let parts: Vec<&str> = match w.split_once(':') {
            Some((param, value)) if i > 0 && is_parameter(param) && !value.is_empty() => {
                vec![param, value]
            }
            _ => vec![w.as_str()],
        };
        // PowerShell's `\` is Windows' path separator and never an escape: the
        // engine reads `/` as one everywhere (`--output=C:\x` included).
        judged.extend(parts.iter().map(|p| p.replace('\\', "/")));
    }
    if let Some(first) = judged.first_mut() {
        *first = powershell_program(&words[0])?;
    }
    let words = named_parameters_in_place(judged);
    Ok(words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Named parameters put where the bash tool they stand for reads them:
/// `Copy-Item -Destination D -Path S` and `Move-Item` (any prefix, `-d`, `-dest`)
/// have their destination last, as `cp S D`; `New-Item -Path P -Name N` creates
/// `P/N`, which is added as a path of its own.
fn named_parameters_in_place(mut words: Vec<String>) -> Vec<String> {
    let value_of = |words: &[String], names: &[&str]| {
        words.iter().position(|w| {
            w.strip_prefix('-').is_some_and(|p| {
                !p.is_empty() && names.iter().any(|n| n.starts_with(&p.to_ascii_lowercase()))
            })
        })
    };
    match words.first().map(String::as_str) {
        Some("cp" | "mv") => {
            if let Some(k) = value_of(&words, &["destination"])
                && k + 1 < words.len()
            {
                let dest = words.remove(k + 1);
                words.remove(k);
                words.push(dest);
            }
        }
        Some("touch") => {
            let path = value_of(&words, &["path"]).and_then(|k| words.get(k + 1));
            let name = value_of(&words, &["name"]).and_then(|k| words.get(k + 1));
            if let (Some(p), Some(n)) = (path, name) {
                let joined = format!("{}/{n}", p.trim_end_matches('/'));
                words.push(joined);
            }
        }
        _ => {}
    }
    words
}

/// The answer for a decision; `None` when the hook should say nothing.
pub fn answer(decision: &Decision) -> Option<serde_json::Value> {
    if decision.mode == crate::policy::EnforcementMode::AuditOnly.as_str() {
        return None;
    }
    let word = match decision.applied {
        Verdict::Deny => "deny",
        Verdict::Ask => "ask",
        Verdict::Allow => return None,
    };
    Some(hook_output(word, &decision.rule, &decision.reason))
}

/// The hook's answer JSON: `word` (`deny` or `ask`) with the deciding rule.
pub fn hook_output(word: &str, rule: &str, reason: &str) -> serde_json::Value {
    serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": word,
            "permissionDecisionReason": format!("fleetkit policy ({rule}): {reason}"),
        }
    })
}
