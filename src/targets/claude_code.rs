//! The `claude-code` target: Claude Code's `managed-settings.json` for each channel
//! that installs the agent (the hook names the agent where that channel puts it),
//! with a README saying where each file goes. The settings themselves are made by
//! [`crate::enforce::claude_settings`], which the agent also uses to rewrite them
//! when a new policy comes into force.
//!
//! ```text
//! claude-code/README.txt
//! claude-code/macos/managed-settings.json          /usr/local/bin/fleetkit
//! claude-code/linux-package/managed-settings.json  /usr/bin/fleetkit (.deb, .rpm)
//! claude-code/linux-cm/managed-settings.json       /usr/local/bin/fleetkit (Ansible, Chef, Puppet)
//! claude-code/windows/managed-settings.json        C:\Program Files\fleetkit\fleetkit.exe
//! ```

use super::artefact::{Artefact, Contents, FILE_MODE, OutFile};
use super::{Result, Target};
use crate::build::payload::Payload;
use crate::enforce::claude_settings::{
    self, HOOK_BINARIES, MANAGED_SETTINGS_LINUX, MANAGED_SETTINGS_MACOS, MANAGED_SETTINGS_WINDOWS,
};

pub fn build(payload: &Payload) -> Result<Artefact> {
    let mut files = Vec::new();
    for (channel, bin) in HOOK_BINARIES {
        let bytes = claude_settings::render(&payload.policy, bin);
        files.push(OutFile {
            path: format!("{channel}/managed-settings.json"),
            contents: Contents::Text(String::from_utf8_lossy(&bytes).into_owned()),
            mode: FILE_MODE,
        });
    }
    files.push(OutFile {
        path: "README.txt".into(),
        contents: Contents::Text(readme(payload)),
        mode: FILE_MODE,
    });
    let mut notes = Vec::new();
    if !claude_settings::allows_claude(&payload.policy) {
        notes.push(
            "the policy's inference rules do not allow the `anthropic` backend Claude Code uses: \
             with these settings the hook still judges every command, but the policy itself \
             forbids Claude Code's model service"
                .into(),
        );
    }
    Ok(Artefact {
        target: Target::ClaudeCode,
        files,
        notes,
    })
}

fn readme(payload: &Payload) -> String {
    format!(
        "Claude Code managed settings for {org} (policy bundle v{version}).\n\
         \n\
         Every installer fleetkit builds puts the right file in place and the agent\n\
         rewrites it whenever a new policy comes into force. To install by hand, copy\n\
         the file of the channel that installed the agent to Claude Code's managed path:\n\
         \n\
         macos/          -> {macos}\n\
         linux-package/  -> {linux}   (agent from the .deb or .rpm)\n\
         linux-cm/       -> {linux}   (agent from Ansible, Chef or Puppet)\n\
         windows/        -> {windows}\n\
         \n\
         Owner root (Administrators on Windows), mode 0644: users must be able to read\n\
         it and must not be able to change it.\n",
        org = payload.org,
        version = payload.bundle_version,
        macos = MANAGED_SETTINGS_MACOS,
        linux = MANAGED_SETTINGS_LINUX,
        windows = MANAGED_SETTINGS_WINDOWS,
    )
}
