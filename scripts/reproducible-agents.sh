#!/usr/bin/env bash
# Checks that the agents are reproducible: builds each platform twice from the same
# commit, from two clones at different paths with separate build folders (so that a
# build path leaking into the binary would show), and compares the bytes.
#
#   scripts/reproducible-agents.sh [PLATFORM…]     (default: as scripts/build-agents.sh)
#
# Prints one line per platform: identical (with the SHA-256) or differing. Exit 1 if
# any differs. Slow: every build is from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for side in a bb/elsewhere; do
  git clone -q . "$work/$side/fleetkit"
done
for side in a bb/elsewhere; do
  FLEETKIT_AGENTS_OUT="$work/$side/out" FLEETKIT_AGENTS_BUILD_DIR="$work/$side/build" \
    "$work/$side/fleetkit/scripts/build-agents.sh" "$@"
done
status=0
for first in "$work"/a/out/*; do
  name=$(basename "$first")
  second="$work/bb/elsewhere/out/$name"
  if cmp -s "$first" "$second"; then
    echo "$name: identical, sha256 $(sha256sum < "$first" | cut -d' ' -f1)"
  else
    echo "$name: DIFFERS ($(cmp "$first" "$second" | head -1))"
    status=1
  fi
done
exit $status
