#!/usr/bin/env bash
# Builds the lean device agent (`cargo build --no-default-features`: `fleetkit agent …`
# only) for every platform the artefacts ship, on one Linux machine:
#
#   scripts/build-agents.sh [PLATFORM…]            (default: all of them)
#   scripts/build-agents.sh --prepare [PLATFORM…]  (install the tools only, build nothing)
#
#   linux-x86_64  linux-arm64  windows-x86_64  windows-arm64  darwin-arm64  darwin-x86_64
#
# into target/agents/fleetkit-<platform>[.exe]. Copy that folder into a workspace as
# `agents/` and `fleetkit build --target all` finds every agent without a flag.
#
# One compiler for every platform: Debian's rustc-web (with std rebuilt from
# rust-web-src by -Zbuild-std, because no prebuilt std for these targets can be
# downloaded here), linked by zig (Linux, macOS, Windows arm64 against the UCRT) or
# mingw-w64 (Windows x86_64). Installs what is missing, idempotently, like
# scripts/test.sh.
#
# Reproducible: build paths are remapped, the profile is LTO with one codegen unit,
# the PE timestamp is left out, the Mach-O UUID is derived from the content
# (scripts/macho-uuid.py) and SOURCE_DATE_EPOCH is the commit's time, so two
# builds of one commit give the same bytes (scripts/reproducible-agents.sh checks it).
# FLEETKIT_AGENTS_OUT and FLEETKIT_AGENTS_BUILD_DIR move the output and build folders.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

all_platforms=(linux-x86_64 linux-arm64 windows-x86_64 windows-arm64 darwin-arm64 darwin-x86_64)
# --prepare: the test command installs first, then builds in the background beside
# other work; two apt-gets at once would fight over dpkg's lock.
prepare_only=0
if [ "${1:-}" = --prepare ]; then
  prepare_only=1
  shift
fi
platforms=("$@")
[ ${#platforms[@]} -gt 0 ] || platforms=("${all_platforms[@]}")

# platform → Rust target triple (zig's glibc floor for Linux: 2.17, what Rust supports).
declare -A triple=(
  [linux-x86_64]=x86_64-unknown-linux-gnu
  [linux-arm64]=aarch64-unknown-linux-gnu
  [windows-x86_64]=x86_64-pc-windows-gnu
  [windows-arm64]=aarch64-pc-windows-gnullvm
  [darwin-arm64]=aarch64-apple-darwin
  [darwin-x86_64]=x86_64-apple-darwin
)
for p in "${platforms[@]}"; do
  if [ -z "${triple[$p]:-}" ]; then
    echo "build-agents.sh: unknown platform '$p' (known: ${all_platforms[*]})" >&2
    exit 2
  fi
done

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
apt_install() {
  local stamp=/tmp/.fleetkit-apt-updated
  if [ ! -e "$stamp" ]; then
    as_root apt-get update -qq
    touch "$stamp"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

needs_zig=0 needs_mingw=0
for p in "${platforms[@]}"; do
  case $p in
    windows-x86_64) needs_mingw=1 ;;
    *) needs_zig=1 ;;
  esac
done

# Debian's compiler and std source (rustup's proxies come first on PATH, so the
# Debian tools are called by their full path below).
missing=()
[ -x /usr/bin/rustc ] || missing+=(rustc-web)
[ -x /usr/bin/cargo ] || missing+=(cargo-web)
[ -d /usr/lib/rustlib/src/rust/library ] || missing+=(rust-web-src)
[ $needs_mingw -eq 0 ] || command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(mingw-w64)
if [ $needs_zig -eq 0 ]; then :; elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-agents.sh: installing ${missing[*]}" >&2
  apt_install "${missing[@]}"
fi
# rustc strips Apple binaries with the rust-objcopy of its own sysroot; since 1.96
# Debian ships it in rust-web-llvm, which rustc-web only recommends.
needs_apple=0
for p in "${platforms[@]}"; do
  case $p in darwin-*) needs_apple=1 ;; esac
done
if [ $needs_apple -eq 1 ] &&
  [ ! -x "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$(/usr/bin/rustc -vV | sed -n 's/^host: //p')/bin/rust-objcopy" ]; then
  echo "build-agents.sh: installing rust-web-llvm (rust-objcopy)" >&2
  apt_install rust-web-llvm
fi

# zig (PyPI's ziglang) in a virtualenv of its own, and cargo-zigbuild, made once, at
# the versions the agents were measured with: another linker may give other bytes.
zig_version=0.17.1 zigbuild_version=0.24.1
if [ $needs_zig -eq 1 ]; then
  zig_venv="${FLEETKIT_ZIG_VENV:-$HOME/.cache/fleetkit/zig-venv}"
  if ! "$zig_venv/bin/python3" -c "import importlib.metadata as m, sys; sys.exit(m.version('ziglang') != '$zig_version')" 2>/dev/null; then
    echo "build-agents.sh: installing ziglang $zig_version into $zig_venv" >&2
    python3 -m venv "$zig_venv"
    "$zig_venv/bin/pip" install -q --disable-pip-version-check "ziglang==$zig_version"
  fi
  CARGO_ZIGBUILD_ZIG_PATH=$("$zig_venv/bin/python3" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
  export CARGO_ZIGBUILD_ZIG_PATH
  if [ "$(cargo-zigbuild --version 2>/dev/null)" != "cargo-zigbuild $zigbuild_version" ]; then
    echo "build-agents.sh: cargo install cargo-zigbuild $zigbuild_version" >&2
    cargo install -q --locked --version "$zigbuild_version" cargo-zigbuild
  fi
fi

[ $prepare_only -eq 0 ] || exit 0

out="${FLEETKIT_AGENTS_OUT:-$root/target/agents}"
mkdir -p "$out"
# A target directory of its own: the Debian compiler's artefacts never mix with the
# rustup-built test binaries.
export CARGO_TARGET_DIR="${FLEETKIT_AGENTS_BUILD_DIR:-$root/target/agents-build}"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
sysroot_src=$(/usr/bin/rustc --print sysroot)/lib/rustlib/src/rust
# The llvm-objcopy rustc itself strips Apple binaries with.
objcopy=$(/usr/bin/rustc --print sysroot)/lib/rustlib/$(/usr/bin/rustc -vV | sed -n 's/^host: //p')/bin/rust-objcopy
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"
remap="--remap-path-prefix=$root=/fleetkit --remap-path-prefix=$registry=/cargo --remap-path-prefix=$sysroot_src=/rustc"

# Sets a PE file's COFF TimeDateStamp (4 bytes at e_lfanew + 8) to 0.
zero_pe_timestamp() {
  python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(0x3C)
    (pe,) = struct.unpack("<I", f.read(4))
    f.seek(pe)
    if f.read(4) != b"PE\0\0":
        sys.exit(f"{sys.argv[1]}: not a PE file")
    f.seek(pe + 8)
    f.write(b"\0\0\0\0")
PY
}

build_one() {
  local platform=$1 t=${triple[$1]} ext="" rustflags="$remap"
  local cargo=(/usr/bin/cargo build)
  case $platform in
    windows-arm64)
      ext=.exe
      cargo=(/usr/bin/cargo zigbuild)
      ;;
    windows-*)
      ext=.exe
      export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
      export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
      # The PE header's link time would differ on every build.
      rustflags="$rustflags -C link-arg=-Wl,--no-insert-timestamp"
      ;;
    linux-*)
      cargo=(/usr/bin/cargo zigbuild)
      t=$t.2.17
      ;;
    darwin-*)
      cargo=(/usr/bin/cargo zigbuild)
      # Without it zig marks the binary as needing the newest macOS.
      case $platform in
        darwin-arm64) export MACOSX_DEPLOYMENT_TARGET=11.0 ;;
        *) export MACOSX_DEPLOYMENT_TARGET=10.12 ;;
      esac
      # No macOS SDK can be installed here: the frameworks the agent links
      # (CoreFoundation, IOKit) are text stubs derived from the dependencies' own
      # extern blocks (scripts/apple-stubs.py says how and why); zig brings libSystem.
      # The profile's strip runs rustc's own rust-objcopy, which signs the arm64
      # binary ad hoc again; `fleetkit build` signs the agent for the pkg in any case.
      sdk="$CARGO_TARGET_DIR/macos-sdk"
      CARGO=/usr/bin/cargo python3 scripts/apple-stubs.py --sdk "$sdk" --target "${triple[$platform]}"
      export SDKROOT="$sdk"
      ;;
  esac
  local started=$SECONDS
  echo "build-agents.sh: building $platform (${triple[$platform]})" >&2
  RUSTFLAGS="$rustflags" "${cargo[@]}" --locked --quiet --profile agent --no-default-features \
    --target "$t" -Zbuild-std=std,panic_abort
  local built="$CARGO_TARGET_DIR/${triple[$platform]}/agent/fleetkit$ext"
  install -m 0755 "$built" "$out/fleetkit-$platform$ext.tmp"
  case $platform in
    windows-arm64)
      # zig's linker has no switch to leave the link time out of the PE header
      # (mingw's --no-insert-timestamp), so it is zeroed here, as mingw leaves it.
      zero_pe_timestamp "$out/fleetkit-$platform$ext.tmp"
      ;;
    darwin-*)
      # zig's LC_UUID differs on every link (the only bytes that do): derive it
      # from the content, then let rust-objcopy sign the arm64 binary ad hoc again.
      python3 scripts/macho-uuid.py "$out/fleetkit-$platform.tmp"
      "$objcopy" "$out/fleetkit-$platform.tmp" "$out/fleetkit-$platform.tmp2"
      mv -f "$out/fleetkit-$platform.tmp2" "$out/fleetkit-$platform.tmp"
      ;;
  esac
  mv -f "$out/fleetkit-$platform$ext.tmp" "$out/fleetkit-$platform$ext"
  echo "build-agents.sh: $platform: $(stat -c %s "$out/fleetkit-$platform$ext") bytes in $((SECONDS - started)) s → $out/fleetkit-$platform$ext" >&2
}

for p in "${platforms[@]}"; do
  build_one "$p"
done
