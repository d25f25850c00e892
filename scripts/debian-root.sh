#!/usr/bin/env bash
# A minimal Debian bookworm root, made once with debootstrap and kept as a tarball
# for the package install tests (tests/linux_install.rs extracts a fresh copy per
# test): prints the tarball's path.
#
#   scripts/debian-root.sh          (~2 min the first time, then instant)
#
# Needs root (debootstrap, and the root's files keep their owners) and the Debian
# mirror. Installs debootstrap when it is missing, like scripts/test.sh.
set -euo pipefail

cache="${FLEETKIT_DEBIAN_ROOT_CACHE:-$HOME/.cache/fleetkit}"
tarball="$cache/bookworm-minbase-systemd.tar"
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
  echo "debian-root.sh: installing debootstrap" >&2
  stamp=/tmp/.fleetkit-apt-updated
  if [ ! -e "$stamp" ]; then
    as_root apt-get update -qq
    touch "$stamp"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/bookworm.XXXXXX")
trap 'as_root rm -rf --one-file-system "$work"' EXIT
echo "debian-root.sh: debootstrap --variant=minbase bookworm (once; cached in $tarball)" >&2
# ca-certificates: the packages put the org root CA in the trust store. systemd:
# systemctl enables the timer offline (the rpm scriptlets use it; nothing runs).
as_root /usr/sbin/debootstrap --variant=minbase --include=ca-certificates,systemd bookworm "$work/root" \
  http://deb.debian.org/debian >&2
# The downloaded .debs are not needed to install more packages from files.
as_root rm -f "$work/root/var/cache/apt/archives/"*.deb
# Nothing in the tests' chroots may start a service.
printf '#!/bin/sh\nexit 101\n' | as_root tee "$work/root/usr/sbin/policy-rc.d" >/dev/null
as_root chmod 0755 "$work/root/usr/sbin/policy-rc.d"
as_root tar --numeric-owner -C "$work/root" -cf "$tarball.tmp" .
mv -f "$tarball.tmp" "$tarball"
echo "$tarball"
