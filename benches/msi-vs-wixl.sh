#!/usr/bin/env bash
# Builds the same MSI content — the agent, agent.yaml, anchors.json and
# bundle.json, in one embedded MSZIP cabinet — with fleetkit and with wixl
# (msitools' WiX-compatible compiler), alternating one run of each, RUNS times, and
# prints the mean and median wall time of each, the ratio and the MSI sizes
# (issue 6 goal: fleetkit ≥ 2× faster). Two agents are tried:
#   - the real Windows agent, cross-built by scripts/build-agents.sh (built here if
#     target/agents has none);
#   - the same agent followed by 10 MB from /dev/urandom (an overlay: still a valid
#     PE for the agent check): incompressible, the worst case for fleetkit, whose
#     compression is then all the work.
#
#   benches/msi-vs-wixl.sh [RUNS]        (needs: apt-get install wixl)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
command -v wixl >/dev/null || { echo "wixl is missing: apt-get install wixl" >&2; exit 2; }
cargo build --release --quiet
bin="$PWD/target/release/fleetkit"
agent="$PWD/target/agents/fleetkit-windows-x86_64.exe"
[ -f "$agent" ] || scripts/build-agents.sh windows-x86_64
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# No agents folder: the MSI ships exactly the agent given below.
"$bin" demo --out "$work/ws" --agents "$work/no-agents" >/dev/null 2>&1
mkdir -p "$work/src"
cp "$work/ws/anchors.json" "$work/src/anchors.json"
cp "$work/ws/bundles/policy-v3.json" "$work/src/bundle.json"
printf 'org: "acme-corp"\nserver_url: "https://fleet.acme-corp.example:8443"\n' > "$work/src/agent.yaml"
cat > "$work/fleetkit.wxs" <<'WXS'
<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="Acme Corp fleetkit" Language="1033" Version="1.0.3" Manufacturer="Acme Corp"
           UpgradeCode="6A1D2B3C-4D5E-5F60-8172-839405A6B7C8">
    <Package InstallerVersion="200" Compressed="yes" InstallScope="perMachine" Platform="x64"/>
    <Media Id="1" Cabinet="fleetkit.cab" EmbedCab="yes"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFiles64Folder">
        <Directory Id="INSTALLDIR" Name="fleetkit">
          <Component Id="C_FleetkitExe" Guid="11111111-2222-5333-8444-555555555555" Win64="yes">
            <File Id="FleetkitExe" Source="src/fleetkit.exe" KeyPath="yes"/>
          </Component>
        </Directory>
      </Directory>
      <Directory Id="CommonAppDataFolder">
        <Directory Id="DATADIR" Name="fleetkit">
          <Component Id="C_AgentYaml" Guid="11111111-2222-5333-8444-555555555556" Win64="yes">
            <File Id="AgentYaml" Source="src/agent.yaml" KeyPath="yes"/>
          </Component>
          <Component Id="C_AnchorsJson" Guid="11111111-2222-5333-8444-555555555557" Win64="yes">
            <File Id="AnchorsJson" Source="src/anchors.json" KeyPath="yes"/>
          </Component>
          <Component Id="C_BundleJson" Guid="11111111-2222-5333-8444-555555555558" Win64="yes">
            <File Id="BundleJson" Source="src/bundle.json" KeyPath="yes"/>
          </Component>
        </Directory>
      </Directory>
    </Directory>
    <Feature Id="Main" Level="1">
      <ComponentRef Id="C_FleetkitExe"/>
      <ComponentRef Id="C_AgentYaml"/>
      <ComponentRef Id="C_AnchorsJson"/>
      <ComponentRef Id="C_BundleJson"/>
    </Feature>
  </Product>
</Wix>
WXS

now_ns() { date +%s%N; }
# Prints "mean median" in ms of a list of ns durations.
stats() { sort -n | awk '{ v[NR] = $1 / 1e6; t += v[NR] } END { printf "%.0f %.0f\n", t / NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

compare() {
  local label="$1" agent="$2" fk_times wx_times start
  cp "$agent" "$work/src/fleetkit.exe"
  fk_times=$(mktemp) wx_times=$(mktemp)
  for _ in $(seq "$runs"); do
    start=$(now_ns)
    "$bin" --workspace "$work/ws" build --target msi --agent "windows-x86_64=$work/src/fleetkit.exe" --out "$work/fk-out" >/dev/null 2>&1
    echo $(($(now_ns) - start)) >> "$fk_times"
    start=$(now_ns)
    (cd "$work" && wixl -a x64 -o "$work/wixl.msi" "$work/fleetkit.wxs" >/dev/null)
    echo $(($(now_ns) - start)) >> "$wx_times"
  done
  read -r fk_mean fk_median < <(stats < "$fk_times")
  read -r wx_mean wx_median < <(stats < "$wx_times")
  msiinfo tables "$work/wixl.msi" >/dev/null
  msiinfo tables "$work"/fk-out/windows/*.msi >/dev/null
  echo "$label ($(stat -c %s "$agent") bytes), $runs runs each:"
  echo "  fleetkit build --target msi: mean ${fk_mean} ms, median ${fk_median} ms, MSI $(stat -c %s "$work"/fk-out/windows/*.msi) bytes"
  echo "  wixl -a x64:                 mean ${wx_mean} ms, median ${wx_median} ms, MSI $(stat -c %s "$work/wixl.msi") bytes"
  awk -v a="$wx_mean" -v b="$fk_mean" 'BEGIN { printf "  fleetkit is %.1fx faster (means)\n", a / (b > 0 ? b : 1) }'
}

{ cat "$agent"; head -c $((10 * 1024 * 1024)) /dev/urandom; } > "$work/random.exe"
compare "the real Windows agent" "$agent"
compare "the agent + 10 MB of /dev/urandom (incompressible)" "$work/random.exe"
