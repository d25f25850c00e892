//! The built-in classifier: which of the policy's command classes
//! (`safety.require_approval_for`, `approvals.*`; the names are
//! [`crate::policy::vocab::APPROVAL_CLASSES`]) one command belongs to.
//!
//! A command may be in several classes (`sudo rm -rf x`: privilege_escalation,
//! destructive_commands, file_deletion). The tables are the spec: the README's
//! "Decision engine" section lists them, and tests/enforce_corpus.rs holds examples.

use super::shell::{Invocation, Word};
use super::wrappers::command_name;

pub const DESTRUCTIVE: &str = "destructive_commands";
pub const PRIVILEGE: &str = "privilege_escalation";
pub const NETWORK: &str = "network_operations";
pub const HIGH_RISK: &str = "high_risk_commands";
pub const PROD_DB: &str = "production_database_operations";
pub const SAFE: &str = "safe_commands";
pub const READ_ONLY: &str = "read_only_operations";
pub const PACKAGES: &str = "package_installation";
pub const CREDENTIALS: &str = "credential_access";
pub const EXFILTRATION: &str = "data_exfiltration";
pub const DELETION: &str = "file_deletion";
pub const SYSTEM: &str = "system_configuration";

/// Commands with no effect outside the shell's own output.
const SAFE_COMMANDS: &[&str] = &[
    "true", "false", ":", "echo", "printf", "pwd", "date", "whoami", "id", "uname", "hostname",
    "cd", "test", "[", "type", "which", "basename", "dirname", "seq", "sleep", "expr", "yes",
    "tty", "groups", "arch", "nproc", "realpath", "readlink", "export", "unset", "declare",
    "local", "readonly", "exit", "return", "wait", "shift", "set",
];

/// Commands that read and report, never write (with the options below excluded).
const READ_ONLY_COMMANDS: &[&str] = &[
    "ls",
    "cat",
    "head",
    "tail",
    "less",
    "more",
    "grep",
    "egrep",
    "fgrep",
    "rg",
    "ag",
    "wc",
    "stat",
    "file",
    "du",
    "df",
    "ps",
    "tree",
    "sort",
    "uniq",
    "cut",
    "tr",
    "diff",
    "cmp",
    "comm",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "shasum",
    "jq",
    "yq",
    "column",
    "nl",
    "od",
    "hexdump",
    "xxd",
    "strings",
    "lsof",
    "free",
    "uptime",
    "w",
    "who",
    "last",
    "env",
    "printenv",
    "locale",
    "find",
    "fd",
    "locate",
    "man",
    "help",
    "history",
    "lsblk",
    "mount",
    "ip",
    "ifconfig",
    "netstat",
    "ss",
    "top",
    "htop",
    "vmstat",
    "iostat",
];

/// Commands that delete files whatever their options.
const DELETERS: &[&str] = &["rm", "rmdir", "unlink", "shred", "srm", "wipe"];

/// Commands that destroy data on disks or file systems.
const DISK_DESTROYERS: &[&str] = &[
    "dd",
    "mkfs",
    "mkfs.ext4",
    "mkfs.ext3",
    "mkfs.xfs",
    "mkfs.vfat",
    "mkfs.btrfs",
    "mke2fs",
    "wipefs",
    "fdisk",
    "sfdisk",
    "gdisk",
    "sgdisk",
    "parted",
    "diskutil",
    "format",
    "truncate",
    "blkdiscard",
    "cryptsetup",
];

const NETWORK_COMMANDS: &[&str] = &[
    "curl",
    "wget",
    "ssh",
    "scp",
    "sftp",
    "rsync",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "telnet",
    "ftp",
    "nmap",
    "http",
    "https",
    "aria2c",
    "ping",
    "dig",
    "nslookup",
    "host",
    "traceroute",
    "mosh",
    "aws",
    "gcloud",
    "gsutil",
    "az",
    "kubectl",
    "helm",
    "gh",
    "glab",
    "invoke-webrequest",
    "iwr",
    "irm",
    "invoke-restmethod",
];

const PRIVILEGED_COMMANDS: &[&str] = &[
    "sudo", "doas", "su", "pkexec", "runas", "sudoedit", "setcap", "chroot", "nsenter", "unshare",
    "visudo",
];

/// Package managers and the subcommands that install or remove packages.
const PACKAGE_MANAGERS: &[(&str, &[&str])] = &[
    (
        "apt",
        &[
            "install",
            "remove",
            "purge",
            "upgrade",
            "full-upgrade",
            "dist-upgrade",
            "reinstall",
            "autoremove",
        ],
    ),
    (
        "apt-get",
        &[
            "install",
            "remove",
            "purge",
            "upgrade",
            "dist-upgrade",
            "reinstall",
            "autoremove",
            "build-dep",
        ],
    ),
    (
        "dpkg",
        &[
            "-i",
            "--install",
            "-r",
            "--remove",
            "-P",
            "--purge",
            "--unpack",
        ],
    ),
    (
        "yum",
        &[
            "install",
            "remove",
            "erase",
            "update",
            "upgrade",
            "reinstall",
            "localinstall",
            "groupinstall",
        ],
    ),
    (
        "dnf",
        &[
            "install",
            "remove",
            "erase",
            "update",
            "upgrade",
            "reinstall",
            "swap",
            "group",
        ],
    ),
    (
        "zypper",
        &["install", "in", "remove", "rm", "update", "up", "dup"],
    ),
    (
        "rpm",
        &[
            "-i",
            "-U",
            "-F",
            "-e",
            "--install",
            "--upgrade",
            "--freshen",
            "--erase",
            "-ivh",
            "-Uvh",
            "-Fvh",
        ],
    ),
    ("apk", &["add", "del", "upgrade"]),
    ("pacman", &["-S", "-R", "-U", "-Syu", "-Sy", "-Rs"]),
    (
        "brew",
        &[
            "install",
            "uninstall",
            "remove",
            "upgrade",
            "reinstall",
            "tap",
        ],
    ),
    ("port", &["install", "uninstall", "upgrade"]),
    ("snap", &["install", "remove", "refresh"]),
    ("flatpak", &["install", "uninstall", "update"]),
    ("pip", &["install", "uninstall", "download"]),
    ("pip3", &["install", "uninstall", "download"]),
    (
        "pipx",
        &["install", "uninstall", "upgrade", "inject", "run"],
    ),
    ("uv", &["add", "remove", "pip", "tool"]),
    ("poetry", &["add", "remove", "install", "update"]),
    (
        "npm",
        &[
            "install",
            "i",
            "add",
            "uninstall",
            "remove",
            "rm",
            "update",
            "ci",
            "exec",
            "x",
        ],
    ),
    ("npx", &[]),
    ("pnpm", &["add", "install", "i", "remove", "update", "dlx"]),
    ("yarn", &["add", "install", "remove", "upgrade", "dlx"]),
    ("bun", &["add", "install", "remove", "x"]),
    ("gem", &["install", "uninstall", "update"]),
    ("bundle", &["install", "update", "add"]),
    ("cargo", &["install", "uninstall", "add", "remove"]),
    ("go", &["install", "get"]),
    ("composer", &["require", "install", "update", "remove"]),
    ("choco", &["install", "uninstall", "upgrade"]),
    ("winget", &["install", "uninstall", "upgrade"]),
    ("scoop", &["install", "uninstall", "update"]),
    ("conda", &["install", "remove", "update", "create"]),
    ("mamba", &["install", "remove", "update", "create"]),
    ("helm", &["install", "uninstall", "upgrade"]),
];

/// Commands and subcommands that change the system's configuration.
const SYSTEM_COMMANDS: &[&str] = &[
    "systemctl",
    "service",
    "launchctl",
    "sysctl",
    "crontab",
    "iptables",
    "ip6tables",
    "nft",
    "ufw",
    "firewall-cmd",
    "pfctl",
    "defaults",
    "reg",
    "update-alternatives",
    "modprobe",
    "insmod",
    "rmmod",
    "umount",
    "useradd",
    "userdel",
    "usermod",
    "groupadd",
    "groupdel",
    "passwd",
    "chpasswd",
    "chsh",
    "dscl",
    "scutil",
    "networksetup",
    "csrutil",
    "spctl",
    "nvram",
    "bcdedit",
    "set-executionpolicy",
    "hostnamectl",
    "timedatectl",
    "localectl",
    "update-grub",
    "grub-install",
    "kextload",
    "kmutil",
    "profiles",
    "tccutil",
    "sc",
    "schtasks",
    "netsh",
    "shutdown",
    "reboot",
    "halt",
    "poweroff",
    "init",
    "telinit",
];

/// Subcommands of the system commands above that only read.
const SYSTEM_READS: &[(&str, &[&str])] = &[
    (
        "systemctl",
        &[
            "status",
            "show",
            "list-units",
            "list-unit-files",
            "is-active",
            "is-enabled",
            "is-failed",
            "cat",
            "list-timers",
        ],
    ),
    ("launchctl", &["list", "print", "blame"]),
    ("sysctl", &["-a", "-n"]),
    ("crontab", &["-l"]),
    ("defaults", &["read", "read-type", "domains"]),
    ("reg", &["query"]),
    ("service", &["--status-all"]),
    ("profiles", &["list", "show", "status"]),
    ("netsh", &["show"]),
];

/// Credential stores and the commands that print secrets.
const CREDENTIAL_COMMANDS: &[(&str, &[&str])] = &[
    (
        "security",
        &[
            "find-generic-password",
            "find-internet-password",
            "dump-keychain",
            "export",
        ],
    ),
    ("aws", &["configure", "sts"]),
    ("gh", &["auth"]),
    ("gcloud", &["auth"]),
    ("az", &["account"]),
    ("vault", &["read", "kv", "token"]),
    ("op", &["read", "item", "signin"]),
    ("pass", &[]),
    ("gpg", &["--export-secret-keys", "--export-secret-subkeys"]),
    (
        "kubectl",
        &[
            "get secret",
            "get secrets",
            "describe secret",
            "describe secrets",
            "config view --raw",
        ],
    ),
    ("docker", &["login"]),
    ("npm", &["token"]),
    ("cmdkey", &["/list"]),
    ("mimikatz", &[]),
    ("secret-tool", &["lookup", "search"]),
    // `reg save HKLM\SAM`: a hive copied out is its password hashes.
    ("reg", &["save", "export"]),
];

/// Files and folders whose reading is credential access (`~` for home; matched
/// without regard to case).
pub const SECRET_PATHS: &[&str] = &[
    "**/.ssh/**",
    "**/.aws/**",
    "**/.azure/**",
    "**/.claude/.credentials.json",
    "**/_netrc",
    "**/appdata/roaming/gcloud/**",
    "**/.gnupg/**",
    "**/.kube/config",
    "**/.netrc",
    "**/.docker/config.json",
    "**/.git-credentials",
    "**/.vault-token",
    "~/.ssh/**",
    "~/.aws/**",
    "~/.claude/.credentials.json",
    "~/_netrc",
    "~/.kube/config",
    "~/.gnupg/**",
    "~/.netrc",
    "~/.docker/config.json",
    "~/.config/gcloud/**",
    "~/.azure/**",
    "~/.git-credentials",
    "~/.npmrc",
    "~/.pypirc",
    "~/.vault-token",
    "~/.config/gh/hosts.yml",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d/**",
    "/etc/ssh/ssh_host_*_key",
    "~/Library/Keychains/**",
    "/Library/Keychains/**",
    "**/.env",
    "**/id_rsa",
    "**/id_ed25519",
    "**/*.p12",
    "**/*.pfx",
    // Browsers' saved passwords (Chrome, Edge, Brave, Chromium; Firefox).
    "**/login data",
    "**/login data for account",
    "**/firefox/**/logins.json",
    "**/firefox/**/key4.db",
    // Windows' password hashes and LSA secrets, and the hives that decrypt them.
    "C:/Windows/System32/config/SAM",
    "C:/Windows/System32/config/SECURITY",
    "C:/Windows/System32/config/SYSTEM",
    // Command histories: typed passwords and tokens end up there.
    "**/psreadline/consolehost_history.txt",
    "**/.bash_history",
    "**/.zsh_history",
    "**/.psql_history",
    "**/.mysql_history",
    "**/.python_history",
    "**/.node_repl_history",
    "**/.local/share/fish/fish_history",
    // Browser cookies (session tokens) and the other stores of red-team round 5.
    "**/cookies",
    "**/firefox/**/cookies.sqlite",
    "**/.cargo/credentials",
    "**/.cargo/credentials.toml",
    "**/.config/hub",
    "**/.terraform.d/credentials.tfrc.json",
    "**/.local/share/keyrings/**",
    "**/.password-store/**",
    "**/user/globalstorage/state.vscdb",
    "C:/Windows/System32/config/RegBack/**",
    "C:/Windows/repair/**",
    "/proc/*/environ",
    // Browser profiles by their folders, so that reading a whole folder above
    // them (`zip -r x ~/.config`, `grep -r pass ~`) reaches them.
    "~/.config/google-chrome/**/login data",
    "~/.config/chromium/**/login data",
    "~/.config/bravesoftware/**/login data",
    "~/.config/microsoft-edge/**/login data",
    "~/Library/Application Support/Google/Chrome/**/login data",
    "~/AppData/Local/Google/Chrome/User Data/**/login data",
    "~/AppData/Local/Microsoft/Edge/User Data/**/login data",
    "~/.mozilla/firefox/**/logins.json",
    "~/Library/Application Support/Firefox/**/logins.json",
    "~/AppData/Roaming/Mozilla/Firefox/**/logins.json",
    // Red-team round 7: database, build-tool and cloud-sync credentials.
    "**/.pgpass",
    "**/.my.cnf",
    "**/.m2/settings.xml",
    "**/.gem/credentials",
    "**/.config/rclone/rclone.conf",
    "**/.s3cfg",
    "**/.boto",
    "**/.config/op/**",
    "**/appdata/roaming/github cli/hosts.yml",
    "**/.config/gh/hosts.yml",
];

/// Database clients: their use against a production host or database.
const DATABASE_CLIENTS: &[&str] = &[
    "psql",
    "pg_dump",
    "pg_restore",
    "mysql",
    "mysqldump",
    "mongo",
    "mongosh",
    "mongodump",
    "mongorestore",
    "redis-cli",
    "sqlcmd",
    "cqlsh",
    "clickhouse-client",
    "cockroach",
];

/// Interpreters whose inline code (`-c`, `-e`) does anything.
const INTERPRETERS: &[(&str, &str)] = &[
    ("python", "-c"),
    ("python3", "-c"),
    ("perl", "-e"),
    ("ruby", "-e"),
    ("node", "-e"),
    ("php", "-r"),
    ("osascript", "-e"),
    ("powershell", "-command"),
    ("pwsh", "-command"),
];

/// Classes of one command. `allowed_tool`: the policy lists the command in
/// `allowed_tools`, which covers what the tool does by its nature (kubectl and aws
/// talk to the network); what a given use does (delete, print secrets) still counts.
pub fn classes(inv: &Invocation, allowed_tool: bool) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut add = |c: &'static str| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    let Some(name) = inv.argv.first().and_then(command_name) else {
        return out;
    };
    if inv.wraps && super::wrappers::NEUTRAL_WRAPPERS.contains(&name.as_str()) {
        return vec![SAFE];
    }
    let args: Vec<&str> = inv.argv.iter().skip(1).map(|w| w.text.as_str()).collect();
    let has = |flag: &str| args.contains(&flag);
    let sub = first_operand(&args);
    let joined = args.join(" ");

    if inv
        .wrappers
        .iter()
        .any(|w| PRIVILEGED_COMMANDS.contains(&w.as_str()))
        || PRIVILEGED_COMMANDS.contains(&name.as_str())
    {
        add(PRIVILEGE);
    }
    if (name == "chmod" && args.iter().any(|a| is_setuid_mode(a)))
        || (name == "chown" && args.iter().any(|a| a.starts_with("root")))
    {
        add(PRIVILEGE);
    }
    if DELETERS.contains(&name.as_str()) {
        add(DELETION);
        add(DESTRUCTIVE);
    }
    if DISK_DESTROYERS.contains(&name.as_str()) || name.starts_with("mkfs.") {
        add(DESTRUCTIVE);
        add(HIGH_RISK);
    }
    match name.as_str() {
        "find" if has("-delete") => {
            add(DELETION);
            add(DESTRUCTIVE);
        }
        "git" => match sub {
            Some("reset") if has("--hard") => add(DESTRUCTIVE),
            Some("clean")
                if args
                    .iter()
                    .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('f'))
                    || has("--force") =>
            {
                add(DESTRUCTIVE);
                add(DELETION);
            }
            Some("push")
                if args
                    .iter()
                    .any(|a| *a == "-f" || a.starts_with("--force") || a.starts_with('+')) =>
            {
                add(DESTRUCTIVE);
                add(NETWORK);
            }
            Some(
                "push" | "pull" | "fetch" | "clone" | "ls-remote" | "submodule" | "send-pack"
                | "http-push" | "fetch-pack" | "archive" | "request-pull" | "svn" | "p4",
            ) => add(NETWORK),
            Some("branch") if has("-D") => add(DESTRUCTIVE),
            Some("checkout" | "restore") if has("--") || has(".") => add(DESTRUCTIVE),
            Some(
                "status" | "log" | "diff" | "show" | "blame" | "rev-parse" | "describe"
                | "shortlog" | "grep" | "ls-files",
            ) => add(READ_ONLY),
            Some("branch" | "tag" | "remote" | "stash") if args.len() == 1 => add(READ_ONLY),
            _ => {}
        },
        "kubectl" => match sub {
            Some("delete" | "drain" | "replace" | "scale" | "cordon" | "taint") => add(DESTRUCTIVE),
            Some(
                "get" | "describe" | "logs" | "top" | "explain" | "api-resources" | "version"
                | "cluster-info",
            ) => add(READ_ONLY),
            _ => {}
        },
        "terraform" | "tofu" => match sub {
            Some("destroy") => add(DESTRUCTIVE),
            Some("apply" | "plan")
                if args.iter().any(|a| {
                    let b = a.trim_start_matches('-');
                    a.starts_with('-') && (b == "destroy" || b == "destroy=true")
                }) =>
            {
                add(DESTRUCTIVE)
            }
            Some(
                "plan" | "show" | "validate" | "fmt" | "version" | "output" | "providers" | "graph",
            ) => add(READ_ONLY),
            _ => {}
        },
        "docker" | "podman" => match sub {
            Some("rm" | "rmi" | "prune" | "kill") => add(DESTRUCTIVE),
            Some("system" | "volume" | "image" | "container" | "network")
                if joined.contains("prune") || joined.contains(" rm") =>
            {
                add(DESTRUCTIVE)
            }
            Some("run")
                if has("--privileged")
                    || args.iter().any(|a| {
                        a.starts_with("--pid=host")
                            || a.starts_with("--net=host")
                            || a.starts_with("-v=/:")
                            || *a == "/:/host"
                    }) =>
            {
                add(PRIVILEGE);
                add(HIGH_RISK);
            }
            Some("pull" | "push" | "login") => add(NETWORK),
            Some("ps" | "images" | "inspect" | "logs" | "version" | "info") => add(READ_ONLY),
            _ => {}
        },
        "aws" if joined.contains("configure set") || joined.contains("configure import") => {
            // Re-pointing a profile (`source_profile`, `role_arn`) changes what an
            // approved profile name reaches.
            add(CREDENTIALS);
            add(HIGH_RISK);
        }
        "aws" if joined.contains("s3 sync") && args.contains(&"--delete") => {
            add(DESTRUCTIVE);
        }
        "aws" => {
            if joined.contains(" rm ")
                || joined.ends_with(" rm")
                || args
                    .iter()
                    .any(|a| a.starts_with("delete-") || a.starts_with("terminate-"))
                || joined.contains("s3 rb")
            {
                add(DESTRUCTIVE);
            }
            if args.iter().any(|a| {
                a.starts_with("describe-") || a.starts_with("list-") || a.starts_with("get-")
            }) || joined.starts_with("s3 ls")
            {
                add(READ_ONLY);
            }
        }
        "chmod" | "chown" | "chgrp" if has("-R") || has("--recursive") => add(DESTRUCTIVE),
        "chmod" if args.iter().any(|a| a.ends_with("777")) => add(HIGH_RISK),
        "mv" | "cp" if has("-f") || has("--force") => {}
        "kill" | "pkill" | "killall"
            if has("-9") || has("-KILL") || args.iter().any(|a| *a == "1" || *a == "-1") =>
        {
            add(DESTRUCTIVE)
        }
        "eval" | "source" | "." => add(HIGH_RISK),
        "date"
            if args
                .iter()
                .any(|a| a.starts_with("-s") || a.starts_with("--set")) =>
        {
            add(SYSTEM)
        }
        "hostname" if args.iter().any(|a| !a.starts_with('-')) => add(SYSTEM),
        "ss" if args.iter().any(|a| *a == "-K" || a.starts_with("--kill")) => add(DESTRUCTIVE),
        "ip" if args
            .iter()
            .any(|a| *a == "exec" || *a == "-b" || a.starts_with("-batch")) =>
        {
            add(HIGH_RISK)
        }
        "history" if has("-c") => add(DESTRUCTIVE),
        // Windows' downloaders and script hosts ([`super::launchers`] asks for the
        // uses that run code it cannot read).
        "certutil"
            if args.iter().any(|a| {
                let a = a.to_ascii_lowercase();
                a.contains("urlcache") || a.contains("verifyctl") || a.contains("://")
            }) =>
        {
            add(NETWORK)
        }
        "bitsadmin" | "start-bitstransfer" => add(NETWORK),
        "msiexec" => add(PACKAGES),
        "mshta" | "regsvr32" | "rundll32" | "cscript" | "wscript" | "installutil" | "regasm"
        | "regsvcs" | "forfiles" | "wmic" | "cmd" => add(HIGH_RISK),
        "crontab" if has("-r") => add(DESTRUCTIVE),
        "sed" | "perl" if args.iter().any(|a| a.starts_with("-i")) => {}
        _ => {}
    }
    if NETWORK_COMMANDS.contains(&name.as_str()) && !allowed_tool {
        add(NETWORK);
    }
    if inv.wrappers.iter().any(|w| w == "ssh") {
        add(NETWORK);
    }
    // Sending local data somewhere.
    let sends = match name.as_str() {
        "curl" => {
            args.iter().any(|a| {
                [
                    "-d",
                    "--data",
                    "--data-binary",
                    "--data-raw",
                    "--data-urlencode",
                    "-F",
                    "--form",
                    "-T",
                    "--upload-file",
                    "--json",
                ]
                .iter()
                .any(|f| a == f || a.starts_with(&format!("{f}=")))
                    || (a.starts_with("-d") && a.len() > 2)
            }) || args.windows(2).any(|w| {
                matches!(w[0], "-X" | "--request") && matches!(w[1], "POST" | "PUT" | "PATCH")
            })
        }
        "wget" => args.iter().any(|a| {
            a.starts_with("--post-file")
                || a.starts_with("--post-data")
                || a.starts_with("--body-file")
        }),
        "scp" | "rsync" => args.last().is_some_and(|a| is_remote(a)),
        "nc" | "ncat" | "netcat" | "socat" | "telnet" => {
            inv.redirects.iter().any(|r| !r.write) || inv.piped_input
        }
        _ => false,
    };
    if sends {
        add(EXFILTRATION);
    }
    if name == "aws"
        && (joined.starts_with("s3 cp") || joined.starts_with("s3 sync"))
        && args
            .iter()
            .skip(2)
            .last()
            .is_some_and(|a| a.starts_with("s3://"))
    {
        add(EXFILTRATION);
    }
    for (pm, subs) in PACKAGE_MANAGERS {
        if name == *pm && (subs.is_empty() || args.iter().any(|a| subs.contains(a))) {
            add(PACKAGES);
            add(NETWORK);
        }
    }
    if SYSTEM_COMMANDS.contains(&name.as_str()) {
        let reads = SYSTEM_READS
            .iter()
            .any(|(c, subs)| *c == name && args.iter().any(|a| subs.contains(a)));
        let mount_listing = name == "mount" && args.is_empty();
        if !reads && !mount_listing {
            add(SYSTEM);
        } else {
            add(READ_ONLY);
        }
        if matches!(name.as_str(), "shutdown" | "reboot" | "halt" | "poweroff") {
            add(HIGH_RISK);
        }
    }
    // Without regard to case: Windows' tools take `reg SAVE`, `cmdkey /LIST`.
    for (c, subs) in CREDENTIAL_COMMANDS {
        if name == *c
            && (subs.is_empty()
                || subs.iter().any(|s| {
                    joined
                        .get(..s.len())
                        .is_some_and(|head| head.eq_ignore_ascii_case(s))
                        || args.iter().any(|a| a.eq_ignore_ascii_case(s))
                }))
        {
            add(CREDENTIALS);
        }
    }
    if matches!(name.as_str(), "env" | "printenv" | "set" | "export") && inv.argv.len() == 1 {
        // The environment holds tokens (AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN…).
        add(CREDENTIALS);
    }
    if DATABASE_CLIENTS.contains(&name.as_str())
        && args.iter().any(|a| a.to_ascii_lowercase().contains("prod"))
    {
        add(PROD_DB);
        add(HIGH_RISK);
    }
    for (interp, flag) in INTERPRETERS {
        if name == *interp && args.iter().any(|a| a.eq_ignore_ascii_case(flag)) {
            add(HIGH_RISK);
        }
    }
    // bash opens a connection for `/dev/tcp/HOST/PORT` redirections.
    if inv.redirects.iter().any(|r| {
        let t = r.target.text.as_str();
        t.starts_with("/dev/tcp/") || t.starts_with("/dev/udp/")
    }) {
        add(NETWORK);
        add(EXFILTRATION);
    }
    if READ_ONLY_COMMANDS.contains(&name.as_str()) && runs_programs(&name, &args) {
        add(HIGH_RISK);
    }
    if inv.wrappers.iter().any(|w| w == "eval") {
        add(HIGH_RISK);
    }
    if out.is_empty() {
        let mut add = |c| out.push(c);
        let writes = inv
            .redirects
            .iter()
            .any(|r| r.write && !super::paths::is_harmless(&r.target.text));
        if SAFE_COMMANDS.contains(&name.as_str()) && !writes {
            // Safe commands are read-only too; `approvals.auto_approve` of either
            // class covers them.
            add(SAFE);
        } else if READ_ONLY_COMMANDS.contains(&name.as_str())
            && !writes
            && !writes_despite_name(&name, &args)
        {
            add(READ_ONLY);
        }
    }
    out
}

/// Read-only commands with an option that runs another program.
fn runs_programs(name: &str, args: &[&str]) -> bool {
    match name {
        "sort" => args.iter().any(|a| a.len() >= 4 && a.starts_with("--c")),
        "ip" => args
            .iter()
            .any(|a| *a == "exec" || *a == "-b" || a.starts_with("-batch")),
        "fd" => args
            .iter()
            .any(|a| matches!(*a, "-x" | "-X") || a.starts_with("--exec")),
        "rg" => args.iter().any(|a| a.starts_with("--pre")),
        "man" => args
            .iter()
            .any(|a| a.starts_with("-P") || a.starts_with("--pager")),
        "less" | "more" => args.iter().any(|a| a.starts_with('+')),
        "find" => args
            .iter()
            .any(|a| matches!(*a, "-exec" | "-execdir" | "-ok" | "-okdir")),
        _ => false,
    }
}

/// Read-only commands with an option that writes or runs something.
fn writes_despite_name(name: &str, args: &[&str]) -> bool {
    match name {
        "find" => args.iter().any(|a| {
            matches!(
                *a,
                "-exec"
                    | "-execdir"
                    | "-ok"
                    | "-okdir"
                    | "-delete"
                    | "-fprint"
                    | "-fprint0"
                    | "-fprintf"
                    | "-fls"
            )
        }),
        // `-uo FILE`: a cluster holding `o`; long options by any prefix.
        "sort" => args.iter().any(|a| {
            (a.starts_with('-') && !a.starts_with("--") && a.contains('o'))
                || a.starts_with("--o")
                || (a.len() >= 4 && a.starts_with("--c"))
        }),
        "ss" => args.iter().any(|a| {
            matches!(*a, "-D" | "-K" | "--kill")
                || a.starts_with("--diag")
                || (a.starts_with('-') && !a.starts_with("--") && a.contains(['D', 'K']))
        }),
        "date" => args
            .iter()
            .any(|a| a.starts_with("-s") || a.starts_with("--set")),
        "hostname" => args.iter().any(|a| !a.starts_with('-')),
        // An output file after the input.
        "uniq" => {
            args.iter()
                .filter(|a| !a.starts_with('-') || **a == "-")
                .count()
                > 1
        }
        "xxd" => {
            args.iter().any(|a| a.starts_with("-r"))
                || args.iter().filter(|a| !a.starts_with('-')).count() > 1
        }
        "fd" => args
            .iter()
            .any(|a| matches!(*a, "-x" | "-X") || a.starts_with("--exec")),
        "rg" => args.iter().any(|a| a.starts_with("--pre")),
        "man" => args.iter().any(|a| {
            a.starts_with("-P")
                || a.starts_with("--pager")
                || a.starts_with("-H")
                || a.starts_with("--html")
        }),
        "history" => !args.is_empty(),
        "less" | "more" => args.iter().any(|a| {
            a.starts_with('+')
                || a.starts_with("-o")
                || a.starts_with("-O")
                || a.starts_with("--log-file")
        }),
        "diff" => args.iter().any(|a| a.starts_with("--to-file")),
        "env" | "printenv" => false,
        "mount" => !args.is_empty(),
        "ip" => args.iter().any(|a| {
            matches!(
                *a,
                "add"
                    | "del"
                    | "delete"
                    | "set"
                    | "flush"
                    | "change"
                    | "replace"
                    | "append"
                    | "exec"
                    | "netns"
                    | "-b"
                    | "-batch"
                    | "-force"
            )
        }),
        "ifconfig" => args.len() > 1,
        "tree" => args.contains(&"-o"),
        "yq" => args.iter().any(|a| {
            a.starts_with("-i") || a.starts_with("--inplace") || a.starts_with("--in-place")
        }),
        _ => false,
    }
}

/// The first word that is not an option (a subcommand), skipping `-x value` pairs
/// only for the options that are known to take one.
pub fn first_operand<'a>(args: &[&'a str]) -> Option<&'a str> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if !a.starts_with('-') {
            return Some(a);
        }
        // Global options that take a value: kubectl/helm (--context, -n, --namespace,
        // --kubeconfig), aws (--profile, --region), git (-C, -c), terraform (-chdir=).
        let takes_value = matches!(
            a,
            "--context"
                | "-n"
                | "--namespace"
                | "--kubeconfig"
                | "--cluster"
                | "--user"
                | "-s"
                | "--server"
                | "--profile"
                | "--region"
                | "--output"
                | "--endpoint-url"
                | "-C"
                | "-c"
                | "--git-dir"
                | "--work-tree"
                | "--as"
                | "--as-group"
                | "--as-uid"
                | "--cache-dir"
                | "--certificate-authority"
                | "--client-certificate"
                | "--client-key"
                | "--request-timeout"
                | "--tls-server-name"
                | "--token"
                | "--username"
                | "--password"
                | "-v"
                | "--v"
                | "--vmodule"
                | "--log-file"
                | "--profile-output"
                | "--config-env"
                | "--exec-path"
                | "--namespace-dir"
        );
        i += if takes_value { 2 } else { 1 };
    }
    None
}

fn is_setuid_mode(a: &str) -> bool {
    a.contains("+s")
        || (a.len() == 4 && a.starts_with(['4', '2', '6']) && a.chars().all(|c| c.is_ascii_digit()))
}

fn is_remote(a: &str) -> bool {
    // `host:path` or `user@host:path`, not a Windows drive (`C:\`) or a local `./a:b`.
    match a.split_once(':') {
        Some((host, _)) => host.len() > 1 && !host.contains('/') && !host.starts_with('.'),
        None => false,
    }
}

/// Whether the command writes to the paths it is given (the dangerous-path rules
/// treat every path argument of these as a write).
/// `classes`: the command's classes, as [`classes`] gave them.
pub fn writes_its_paths(inv: &Invocation, classes: &[&str]) -> bool {
    let Some(name) = inv.argv.first().and_then(command_name) else {
        return false;
    };
    const WRITERS: &[&str] = &[
        "rm", "rmdir", "unlink", "shred", "srm", "mv", "cp", "touch", "mkdir", "chmod", "chown",
        "chgrp", "ln", "truncate", "tee", "install", "rsync", "dd", "sudoedit", "vi", "vim",
        "nvim", "nano", "emacs", "ed", "patch", "tar", "unzip", "setfacl", "chattr", "xattr",
        "mkfs", "wipefs", "shred", "git",
    ];
    let args: Vec<&str> = inv.argv.iter().skip(1).map(|w| w.text.as_str()).collect();
    WRITERS.contains(&name.as_str())
        || (READ_ONLY_COMMANDS.contains(&name.as_str()) && writes_despite_name(&name, &args))
        || edits_in_place(&name, &args)
        || (name == "find" && args.contains(&"-delete"))
        || classes.contains(&DESTRUCTIVE)
}

/// Whether the command reads whole folders it is given: `grep -r`, `rg`, `ag`,
/// `ack`, `zip -r`, `7z a`, backup tools. A folder above a secret (`grep -r
/// AKIA ~`) then reads the secret.
pub fn reads_trees(inv: &Invocation) -> bool {
    let Some(name) = inv.argv.first().and_then(command_name) else {
        return false;
    };
    let args: Vec<&str> = inv.argv.iter().skip(1).map(|w| w.text.as_str()).collect();
    let short = |letters: &[char]| {
        args.iter()
            .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(letters))
    };
    match name.as_str() {
        "grep" | "egrep" | "fgrep" | "zgrep" => {
            short(&['r', 'R'])
                || args.iter().any(|a| {
                    // `--recu` (a GNU prefix), `--directories=recurse`, `-d recurse`.
                    (a.len() >= 5 && "--recursive".starts_with(a))
                        || a.starts_with("--recursive")
                        || a.starts_with("--dereference-recursive")
                        || *a == "recurse"
                        || (a.starts_with("--d") && a.ends_with("=recurse"))
                })
        }
        "rg" | "ag" | "ack" | "rclone" | "restic" | "borg" | "duplicity" => true,
        "zip" => short(&['r', 'R']) || args.contains(&"--recurse-paths"),
        "7z" | "7za" | "7zr" => args.first().is_some_and(|a| matches!(*a, "a" | "u")),
        // Cloud copies of whole folders.
        "gsutil" | "gcloud" => short(&['r', 'R']) || args.contains(&"--recursive"),
        "aws" | "azcopy" => {
            args.contains(&"sync") || args.iter().any(|a| *a == "--recursive" || *a == "-r")
        }
        _ => false,
    }
}

/// Editors of their input files: `sed -i`/`-Ei`/`--in-place`, `perl -pi`, `ruby
/// -i`, `gawk -i inplace` (an awk library that rewrites each file it reads).
fn edits_in_place(name: &str, args: &[&str]) -> bool {
    let cluster_with_i = |a: &&str| a.starts_with('-') && !a.starts_with("--") && a.contains('i');
    match name {
        "sed" | "gsed" => args.iter().any(|a| {
            let long = a.split('=').next().unwrap_or(a);
            cluster_with_i(a) || (long.len() >= 4 && "--in-place".starts_with(long))
        }),
        // Up to the first switch that takes the rest of the word (`-Mutf8`, `-e`).
        // Anywhere on the line: `perl -pe CODE -i FILE` edits FILE too.
        "perl" | "ruby" => args.iter().filter(|a| a.starts_with('-')).any(|a| {
            !a.starts_with("--")
                && a.chars()
                    .skip(1)
                    .take_while(|c| !"eEMmIxlCd0rI".contains(*c))
                    .any(|c| c == 'i')
        }),
        "awk" | "gawk" => {
            let include = |a: &str| {
                let long = a.split('=').next().unwrap_or(a);
                a == "-i" || (long.len() >= 4 && "--include".starts_with(long))
            };
            args.iter().any(|a| {
                a.starts_with("-iinplace")
                    || (include(a) && a.ends_with("=inplace"))
                    || (a.contains("@include") && a.contains("inplace"))
            }) || args
                .windows(2)
                .any(|p| include(p[0]) && p[1].starts_with("inplace"))
        }
        _ => false,
    }
}

/// The words that name a file the command writes through an option or as its
/// destination: after `-o`, `--output`, `--out`, `-O`, `--output-document`,
/// `--log-file`; `--output=FILE`, `-out=FILE`, `-oFILE`; the last operand of
/// `aws s3 cp|mv|sync`, `kubectl cp`, `docker cp`, `scp`, `rsync`, `install`.
pub fn output_arguments(inv: &Invocation) -> Vec<&Word> {
    const WITH_FILE: &[&str] = &[
        "-o",
        "--output",
        "--out",
        "-O",
        "--output-document",
        "--log-file",
        "-out",
        "--output-file",
        "--target-directory",
        "-t",
        // wget's and curl's folders for the files they fetch.
        "-P",
        "--directory-prefix",
        "--output-dir",
        // patch's file of rejected hunks.
        "--reject-file",
    ];
    let args: Vec<&Word> = inv.argv.iter().skip(1).collect();
    let mut out = Vec::new();
    for (k, w) in args.iter().enumerate() {
        let t = w.text.as_str();
        if WITH_FILE.contains(&t) {
            out.extend(args.get(k + 1).copied());
        } else if [
            "--output=",
            "--out=",
            "-out=",
            "--output-document=",
            "--log-file=",
            "--output-file=",
            "--target-directory=",
            "--directory-prefix=",
            "--output-dir=",
            "--reject-file=",
        ]
        .iter()
        .any(|p| t.starts_with(p))
            || ((t.starts_with("-o") || t.starts_with("-O") || t.starts_with("-P"))
                && t.len() > 2
                && !t.starts_with("--"))
        {
            out.push(*w);
        }
    }
    let name = inv.argv.first().and_then(command_name).unwrap_or_default();
    let ops: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
    let copies = match name.as_str() {
        "aws" => ops
            .windows(2)
            .any(|p| p[0] == "s3" && matches!(p[1], "cp" | "mv" | "sync")),
        "kubectl" | "docker" | "podman" => first_operand(&ops) == Some("cp"),
        "scp" | "rsync" | "install" | "cp" | "mv" => true,
        _ => false,
    };
    if copies && let Some(last) = args.iter().rev().find(|w| !w.text.starts_with('-')) {
        out.push(*last);
    }
    out
}

/// Where `cp`, `mv`, `install`, `ln` and `git mv` put their sources.
pub struct CopyInto<'a> {
    /// The destination word: a folder, or the new name.
    pub dest: &'a Word,
    /// The destination as a path (`.claude` for `-t.claude` or
    /// `--target-dir=.claude`).
    pub folder: String,
    /// The names the sources get inside the destination folder.
    pub names: Vec<String>,
    /// Whether only those names are written there: `cp FILE… DIR` and `install`
    /// copy files. `mv`, `ln`, `cp -r` and `git mv` may instead make the
    /// destination itself, a folder of the source's contents (`mv evil .claude`
    /// when `.claude` does not exist yet).
    pub names_only: bool,
}

/// The destination of `cp`, `mv`, `install`, `ln` and `git mv` with the file
/// names its sources get there: the destination may be a folder (`cp
/// settings.json ~/.claude/` writes `~/.claude/settings.json`). `-t DIR` and
/// `--target-directory=DIR` name it first. `None` for other commands or fewer
/// than two operands.
pub fn copy_destination(inv: &Invocation) -> Option<CopyInto<'_>> {
    let name = inv.argv.first().and_then(command_name)?;
    let skip = match name.as_str() {
        "cp" | "mv" | "install" | "ln" => 1,
        "git" if inv.argv.get(1).is_some_and(|w| w.text == "mv") => 2,
        _ => return None,
    };
    let args = &inv.argv[skip..];
    let mut target: Option<(&Word, String)> = None;
    let mut operands: Vec<&Word> = Vec::new();
    let mut recursive = false;
    let mut parents = false;
    let mut k = 0;
    while k < args.len() {
        let t = args[k].text.as_str();
        let (long, inline) = t.split_once('=').map_or((t, None), |(n, v)| (n, Some(v)));
        // `--target-directory` by any GNU prefix (`--target-dir`, `--t`).
        if long.len() >= 3 && long.starts_with("--") && "--target-directory".starts_with(long) {
            match inline {
                Some(v) => target = Some((&args[k], v.to_string())),
                None => {
                    target = args.get(k + 1).map(|w| (w, w.text.clone()));
                    k += 1;
                }
            }
            k += 1;
            continue;
        }
        // `-t DIR` alone or at the end of a cluster, or glued (`-t.claude`,
        // `-sft.git/hooks`).
        if t.starts_with('-')
            && !t.starts_with("--")
            && t.len() > 1
            && let Some(at) = t[1..].find('t').map(|p| p + 1)
            && name != "install"
        {
            let glued = &t[at + 1..];
            if glued.is_empty() {
                target = args.get(k + 1).map(|w| (w, w.text.clone()));
                k += 1;
            } else {
                target = Some((&args[k], glued.to_string()));
            }
            recursive |= t[..at].contains(['r', 'R', 'a']);
            k += 1;
            continue;
        }
        if t.starts_with("--") {
            recursive |= matches!(t, "--recursive" | "--archive" | "--directory");
            parents |= t == "--parents";
        } else if t.starts_with('-') && t.len() > 1 {
            // cp's `-r`, `-R`, `-a`; install's `-d` makes folders.
            recursive |= t.contains(if name == "install" {
                &['d'][..]
            } else {
                &['r', 'R', 'a'][..]
            });
        } else {
            operands.push(&args[k]);
        }
        k += 1;
    }
    let ((dest, folder), sources) = match target {
        Some(dest) => (dest, operands.as_slice()),
        None => operands
            .split_last()
            .map(|(d, s)| ((*d, d.text.clone()), s))?,
    };
    if sources.is_empty() {
        return None;
    }
    let names = sources
        .iter()
        .filter_map(|w| {
            let base = w.text.trim_end_matches(['/', '\\']);
            // `cp --parents hooks/pre-commit .git/` writes `.git/hooks/pre-commit`.
            let base = if parents {
                base.trim_start_matches("./")
            } else {
                base.rsplit(['/', '\\']).next().unwrap_or(base)
            };
            (!base.is_empty() && base != "." && base != "..").then(|| base.to_string())
        })
        .collect();
    let names_only = matches!(name.as_str(), "cp" | "install") && !recursive;
    Some(CopyInto {
        dest,
        folder,
        names,
        names_only,
    })
}

/// The words of a command that could name files (not options, not `k=v`, not
/// git's messages: `git commit -m "$(cat <<'EOF' …)"` writes no file named by its
/// message, and what the substitution runs is judged on its own).
pub fn path_arguments(inv: &Invocation) -> impl Iterator<Item = &Word> {
    let git = inv
        .argv
        .first()
        .and_then(command_name)
        .is_some_and(|n| n == "git");
    inv.argv
        .iter()
        .enumerate()
        .skip(1)
        .filter(move |(i, w)| {
            let t = w.text.as_str();
            let message = git
                && inv
                    .argv
                    .get(i - 1)
                    .is_some_and(|p| is_git_message_option(&p.text));
            !message && (!t.starts_with('-') || t.contains('/'))
        })
        .map(|(_, w)| w)
}

/// `-m`, `--message`, and short clusters ending in `m` (`-am`): git options whose
/// value is a message.
fn is_git_message_option(word: &str) -> bool {
    word == "--message"
        || (word.starts_with('-')
            && !word.starts_with("--")
            && word.len() >= 2
            && word.ends_with('m')
            && word[1..].chars().all(|c| c.is_ascii_alphabetic()))
}
