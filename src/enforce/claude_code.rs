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

/// A plain PowerShell command as the same words in bash syntax: PowerShell's
/// backslash is a path separator, not an escape, so each word is single-quoted
/// (`cat C:\Users\dev\.ssh\id_rsa` keeps its backslashes). `None` when the
/// command is not plain or its quotes do not close.
pub fn powershell_as_bash(command: &str) -> Option<String> {
    if !powershell_is_plain(command) {
        return None;
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
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(
        words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" "),
    )
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
