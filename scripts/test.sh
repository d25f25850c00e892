#!/usr/bin/env bash
# The test command (README "Run the tests"): installs the independent validators the
# tests call, then runs formatting, lint and the whole test suite.
#
# Idempotent: a validator already on PATH is not installed again, and apt-get update
# runs at most once per machine boot. Works on a fresh Debian machine that has only
# the Rust toolchain; needs root or sudo only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Names the next phase and says how long the previous one took (for the CI note).
phase_started=$SECONDS
phase() {
  echo "test.sh: $* (the previous phase took $((SECONDS - phase_started)) s)" >&2
  phase_started=$SECONDS
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# command → Debian package providing it
declare -A apt_for=(
  [openssl]=openssl
  [python3]=python3
  [puppet]=puppet
  [puppet-lint]=puppet-lint
  [ruby]=ruby
  [rubocop]=rubocop
  [erb]=ruby
  [bsdtar]=libarchive-tools
  [7z]=p7zip-full
  [cpio]=cpio
  [msiinfo]=msitools
  [msiextract]=msitools
  [gcab]=gcab
  [cabextract]=cabextract
  # Windows Installer as Wine implements it installs, upgrades and removes the MSI.
  [/usr/lib/wine/wine64]=wine64
  [osslsigncode]=osslsigncode
  # SCEP: micromdm's client (tests/scep.rs) and reference server (the SCEP scenario
  # of benches/server_load.rs, which `cargo test --all-targets` runs as a smoke run),
  # and curl (raw requests).
  [scepclient]=scep
  [scepserver]=scep
  [curl]=curl
  # The .deb (tests/targets_deb.rs): Debian's own judge of a package.
  [lintian]=lintian
  # The .rpm (tests/targets_rpm.rs): rpm reads, verifies and installs it, rpmlint
  # judges it, gpg makes the signing keys an admin would.
  [rpm]=rpm
  [rpmkeys]=rpm
  [rpm2cpio]=rpm2cpio
  [rpmlint]=rpmlint
  [gpg]=gnupg
  # The .deb and .rpm installed for real in a Debian root (tests/linux_install.rs).
  [/usr/sbin/debootstrap]=debootstrap
  [chroot]=coreutils
  # Archives made by Info-ZIP's zip, read by the decision engine (tests/enforce.rs).
  [zip]=zip
)
# Ansible comes from PyPI into a virtualenv (Debian's Python refuses system-wide
# pip installs), which needs python3-venv.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_for[python3-venv-check]=python3-venv
fi
missing=()
for cmd in "${!apt_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${apt_for[$cmd]}")
done
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  stamp=/tmp/.fleetkit-apt-updated
  if [ ! -e "$stamp" ]; then
    as_root apt-get update -qq
    touch "$stamp"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ansible-playbook and ansible-lint, in a virtualenv of their own (made once).
venv="${FLEETKIT_TEST_VENV:-$HOME/.cache/fleetkit/ansible-venv}"
if [ ! -x "$venv/bin/ansible-playbook" ] || [ ! -x "$venv/bin/ansible-lint" ]; then
  echo "test.sh: installing ansible-core and ansible-lint into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check ansible-core ansible-lint
fi
# The macOS-shaped SCEP test client (tests/scep/macos_client.py).
if ! "$venv/bin/python3" -c 'import cryptography, asn1crypto' >/dev/null 2>&1; then
  echo "test.sh: installing cryptography and asn1crypto into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check cryptography asn1crypto
fi
# Claude Code's managed settings are validated against SchemaStore's schema
# (tests/claude_settings.rs).
if [ ! -x "$venv/bin/check-jsonschema" ]; then
  echo "test.sh: installing check-jsonschema into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check check-jsonschema
fi
export PATH="$venv/bin:$PATH"
export FLEETKIT_TEST_PYTHON="$venv/bin/python3"

phase "installing what the agent builds need"
# The real agents, cross-built as a user would: the lean Linux one registers and syncs
# (tests/agent_e2e.rs), the Windows one runs under Wine (tests/intune_e2e.rs), the
# darwin ones are code signed and verified. The demo that CI runs next ships them
# all. REQUIRED makes a missing agent a test failure rather than a skip.
agent_platforms=(linux-x86_64 windows-x86_64 darwin-arm64 darwin-x86_64)
scripts/build-agents.sh --prepare "${agent_platforms[@]}"

phase "starting the test PostgreSQL"
# The server suite runs against SQLite and against this local PostgreSQL; REQUIRED
# makes a missing PostgreSQL a test failure rather than a silent skip.
FLEETKIT_TEST_POSTGRES=$(scripts/postgres.sh)
export FLEETKIT_TEST_POSTGRES FLEETKIT_TEST_POSTGRES_REQUIRED=1

# The agents build in the background while lint and the test build run: an agent's
# last step (one LTO codegen unit) keeps one core busy for minutes, and the other
# core has the rest to do. Their own target folder, so no cargo lock is shared.
phase "building the agents (in the background), cargo fmt --check"
agents_log=$(mktemp)
# setsid: the build is a process group of its own, stopped whole if this script fails.
setsid scripts/build-agents.sh "${agent_platforms[@]}" >"$agents_log" 2>&1 &
agents_pid=$!
# The minimal Debian root the .deb is installed in (debootstrap once, then cached),
# also in the background: it mostly waits for the mirror.
root_log=$(mktemp)
setsid scripts/debian-root.sh >"$root_log" 2>&1 &
root_pid=$!
trap 'kill -- "-$agents_pid" "-$root_pid" 2>/dev/null || true' EXIT
cargo fmt --all -- --check
# The agents' builds are the longest chain here (their last step, LTO in one
# codegen unit, runs on one core): lint and the test build yield the CPU to them
# (nice), and take whatever core the agents leave idle.
phase "cargo clippy (the admin build, then the lean agent)"
nice -n 10 cargo clippy --all-targets --locked -- -D warnings
nice -n 10 cargo clippy --lib --bins --locked --no-default-features -- -D warnings
phase "building the tests"
nice -n 10 cargo test --all-targets --locked --no-run "$@"
phase "waiting for the Debian root"
root_status=0
wait "$root_pid" || root_status=$?
if [ "$root_status" -ne 0 ]; then
  cat "$root_log" >&2
  echo "test.sh: scripts/debian-root.sh failed (exit $root_status)" >&2
  exit "$root_status"
fi
FLEETKIT_TEST_DEBIAN_ROOT=$(tail -n 1 "$root_log")
rm -f "$root_log"
export FLEETKIT_TEST_DEBIAN_ROOT FLEETKIT_TEST_DEBIAN_ROOT_REQUIRED=1
phase "waiting for the agents"
agents_status=0
wait "$agents_pid" || agents_status=$?
trap - EXIT
cat "$agents_log" >&2
rm -f "$agents_log"
if [ "$agents_status" -ne 0 ]; then
  echo "test.sh: scripts/build-agents.sh failed (exit $agents_status)" >&2
  exit "$agents_status"
fi
export FLEETKIT_TEST_AGENTS="$PWD/target/agents" FLEETKIT_TEST_AGENTS_REQUIRED=1

phase "cargo test"
cargo test --all-targets --locked "$@"
phase "done"
