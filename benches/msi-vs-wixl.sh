#!/usr/bin/env bash
# Builds the same MSI content — the agent (a 10 MB stand-in), agent.yaml,
# anchors.json and bundle.json, one MSZIP cabinet embedded — with fleetkit and with
# wixl (msitools' WiX-compatible compiler), side by side, several times each, and
# prints the mean wall time of each and the ratio (issue 6 goal: fleetkit ≥ 2× faster).
#
#   benches/msi-vs-wixl.sh [RUNS]        (needs: apt-get install wixl)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
command -v wixl >/dev/null || { echo "wixl is missing: apt-get install wixl" >&2; exit 2; }
cargo build --release --quiet
bin="$PWD/target/release/fleetkit"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" demo --out "$work/ws" >/dev/null
head -c $((10 * 1024 * 1024)) /dev/urandom > "$work/fleetkit.exe"
# The same files for wixl, taken from fleetkit's own output.
"$bin" --workspace "$work/ws" build --target msi --agent "windows-x86_64=$work/fleetkit.exe" --out "$work/probe" 2>/dev/null >/dev/null
mkdir -p "$work/src"
cp "$work/fleetkit.exe" "$work/src/fleetkit.exe"
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

now_ms() { date +%s%3N; }
time_runs() {
  local total=0 start end
  for _ in $(seq "$runs"); do
    start=$(now_ms)
    "$@" >/dev/null 2>&1
    end=$(now_ms)
    total=$((total + end - start))
  done
  echo $((total / runs))
}

cd "$work"
fk=$(time_runs "$bin" --workspace "$work/ws" build --target msi --agent "windows-x86_64=$work/fleetkit.exe" --out "$work/fk-out")
wx=$(time_runs wixl -a x64 -o "$work/wixl.msi" "$work/fleetkit.wxs")
echo "fleetkit build --target msi: ${fk} ms (mean of ${runs})"
echo "wixl -a x64:                 ${wx} ms (mean of ${runs})"
awk -v a="$wx" -v b="$fk" 'BEGIN { printf "fleetkit is %.1fx faster\n", a / (b > 0 ? b : 1) }'
msiinfo tables "$work/wixl.msi" >/dev/null
msiinfo tables "$work"/fk-out/windows/*.msi >/dev/null
