#!/usr/bin/env bash
# Issue 14's benchmark: `fleetkit build --target deb --target rpm` (both packages,
# from the workspace) against `dpkg-deb --build` of the same tree (the .deb alone),
# alternating one run of each, RUNS times; prints the mean and median wall time of
# each, the ratio and the package sizes. Goal: fleetkit, doing the rpm too, no
# slower than dpkg-deb. dpkg-deb is given what fleetkit's .deb holds (unpacked from
# it with dpkg-deb -R) and the same compression (xz -6, one thread). nfpm, the peer
# the issue names, needs Go, which this machine cannot install.
#
#   benches/linux-packages-vs-dpkg-deb.sh [RUNS]
#   FLEETKIT_BIN=target/debug/fleetkit benches/linux-packages-vs-dpkg-deb.sh   (no release build)
#
# The agent is the real lean Linux one (scripts/build-agents.sh, built here if
# target/agents has none; FLEETKIT_AGENT names another).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
if [ -n "${FLEETKIT_BIN:-}" ]; then
  bin=$(realpath "$FLEETKIT_BIN")
else
  cargo build --release --quiet
  bin="$PWD/target/release/fleetkit"
fi
agent="${FLEETKIT_AGENT:-$PWD/target/agents/fleetkit-linux-x86_64}"
[ -f "$agent" ] || scripts/build-agents.sh linux-x86_64
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" demo --out "$work/ws" --agents "$work/no-agents" >/dev/null 2>&1
build() {
  SOURCE_DATE_EPOCH=$(date +%s) "$bin" --workspace "$work/ws" build --target deb --target rpm \
    --agent "linux-x86_64=$agent" --out "$work/fk-out" >/dev/null 2>&1
}
build
deb=$(ls "$work"/fk-out/linux/*.deb)
rpm=$(ls "$work"/fk-out/linux/*.rpm)
# The tree dpkg-deb packs: exactly what fleetkit's .deb holds, control files included.
dpkg-deb -R "$deb" "$work/tree"

now_ns() { date +%s%N; }
stats() { sort -n | awk '{ v[NR] = $1 / 1e6; t += v[NR] } END { printf "%.0f %.0f\n", t / NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
fk_times=$(mktemp) dd_times=$(mktemp)
for _ in $(seq "$runs"); do
  start=$(now_ns)
  build
  echo $(($(now_ns) - start)) >> "$fk_times"
  start=$(now_ns)
  dpkg-deb --root-owner-group -Zxz -z6 --threads-max=1 --build "$work/tree" "$work/dpkg.deb" >/dev/null
  echo $(($(now_ns) - start)) >> "$dd_times"
done
read -r fk_mean fk_median < <(stats < "$fk_times")
read -r dd_mean dd_median < <(stats < "$dd_times")
echo "the real Linux agent ($(stat -c %s "$agent") bytes), $runs runs each:"
echo "  fleetkit build --target deb --target rpm: mean ${fk_mean} ms, median ${fk_median} ms; .deb $(stat -c %s "$deb") bytes, .rpm $(stat -c %s "$rpm") bytes"
echo "  dpkg-deb --build (the .deb alone):        mean ${dd_mean} ms, median ${dd_median} ms; .deb $(stat -c %s "$work/dpkg.deb") bytes"
awk -v a="$dd_mean" -v b="$fk_mean" 'BEGIN { printf "  ratio dpkg-deb / fleetkit (means): %.2f (above 1: fleetkit is faster while writing both)\n", a / (b > 0 ? b : 1) }'
