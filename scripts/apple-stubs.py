#!/usr/bin/env python3
"""Writes the Apple framework stubs the lean agent links against, in an SDK-shaped folder.

    scripts/apple-stubs.py --sdk DIR --target aarch64-apple-darwin

Why: zig links the macOS agent on Linux, but no package we can install here ships a
macOS SDK. A linker needs only a text stub (`.tbd`) per framework: its install name
(the load command the binary gets) and the symbols it exports. This script writes one
TAPI v4 stub per framework into

    DIR/System/Library/Frameworks/<X>.framework/<X>.tbd

for `SDKROOT=DIR` (scripts/build-agents.sh). zig brings libSystem itself.

Where the symbols come from: they are derived, never typed in or copied from an SDK.
`cargo metadata --filter-platform TRIPLE --no-default-features` resolves the lean
build's packages for the target; walking the normal dependencies from fleetkit gives
the crates compiled into the agent. Their sources are scanned for extern blocks:

  * a block with `#[link(name = "X", kind = "framework")]`, also written as
    `#[cfg_attr(…, link(name = "X", kind = "framework"))]`, declares symbols of X;
  * an *empty* such block declares the crate's framework (this is how the objc2-*
    crates link: `extern "C" {}` in src/generated/mod.rs, the functions in blocks
    without attributes all over the crate), and so do `rustc-link-lib=framework=X`
    lines of the build script: then every block of that crate without its own
    `link` attribute declares symbols of X.

Each `fn NAME` or `static NAME` of such a block (or its `#[link_name]`) becomes
`_NAME` (Mach-O C symbols carry a leading underscore).

The list is a superset: every declaration is taken, whatever `cfg` or crate feature
guards it, because evaluating cfg expressions is the compiler's job, not a script's.
That is safe. A stub only lets the link resolve a name; at run time dyld binds each
used symbol in the real framework on the Mac. The link is strict (zig fails on a
referenced symbol that no stub or libSystem exports), so a successful link proves the
list holds every symbol the agent uses; extra names cost nothing because the binary
records only the symbols it references (`llvm-nm -u` on the agent shows them).

Output is sorted and written only when it changes; stubs of frameworks no longer
linked are removed, so running it twice changes nothing.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# The macOS architectures every stub claims (a universal agent has both).
TBD_TARGETS = ["arm64-macos", "x86_64-macos"]

LINK_ATTR = re.compile(
    r'link\s*\(\s*name\s*=\s*"(?P<name>[^"]+)"\s*,\s*kind\s*=\s*"framework"'
)
BUILD_SCRIPT_LINK = re.compile(r"rustc-link-lib=framework=(?P<name>[A-Za-z0-9_]+)")
# `extern "C" {` or `extern "C-unwind" {` opens a block; `extern "C" fn(` is a type.
EXTERN_BLOCK = re.compile(r'\bextern\s*"[^"]*"\s*\{')
ITEM = re.compile(r"\b(?:fn|static(?:\s+mut)?)\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
LINK_NAME = re.compile(r'#\s*\[\s*link_name\s*=\s*"(?P<name>[^"]+)"\s*\]')
LINK_ANY = re.compile(r"\blink\s*\(")
STRING = re.compile(r'b?r(#*)".*?"\1|b?"(?:\\.|[^"\\])*"', re.S)
CHAR = re.compile(r"b?'(?:\\.|[^\\'])'")


def clean(src):
    """The source without comments, and with the braces inside string and character
    literals blanked, so that counting braces finds where a block ends. Everything
    else (attribute strings such as the framework name) stays as written."""
    out = []
    i, n = 0, len(src)
    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        literal = STRING.match(src, i) or CHAR.match(src, i)
        # `b"…"` or `r"…"` only when the `b`/`r` starts a token (not `extern"`).
        prefixed = src[i] in "br"
        if literal and not (prefixed and i and (src[i - 1].isalnum() or src[i - 1] == "_")):
            out.append(re.sub(r"[{}]", " ", literal.group(0)))
            i = literal.end()
            continue
        out.append(src[i])
        i += 1
    return "".join(out)


def matching_brace(src, open_at):
    depth = 0
    for i in range(open_at, len(src)):
        if src[i] == "{":
            depth += 1
        elif src[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(src)


def attributes_before(src, at):
    """The outer attributes (`#[…]`) written just before position `at`."""
    attrs = []
    while True:
        j = len(src[:at].rstrip())
        if j == 0 or src[j - 1] != "]":
            return attrs
        # Walk back to the `#[` that opens this attribute, counting brackets.
        depth, k = 0, j - 1
        while k >= 0:
            if src[k] == "]":
                depth += 1
            elif src[k] == "[":
                depth -= 1
                if depth == 0:
                    break
            k -= 1
        if k <= 0 or src[k - 1] != "#":
            return attrs
        attrs.append(src[k - 1 : j])
        at = k - 1


def extern_blocks(path):
    """(the attributes written on the block, the block's body) for every extern block
    of one source file."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if "extern" not in raw:
        return []
    src = clean(raw)
    blocks = []
    for m in EXTERN_BLOCK.finditer(src):
        start = m.start()
        # `unsafe extern "C" {` (edition 2024) puts `unsafe` between the attributes
        # and the block.
        before = src[:start].rstrip()
        if before.endswith("unsafe"):
            start = len(before) - len("unsafe")
        close = matching_brace(src, m.end() - 1)
        blocks.append((" ".join(attributes_before(src, start)), src[m.end() : close]))
    return blocks


def symbols_of(body):
    """`_NAME` for every function and static declared in an extern block body."""
    names = set()
    # Items end with `;`; a `#[link_name]` renames the item it precedes.
    for item in body.split(";"):
        m = ITEM.search(item)
        if not m:
            continue
        renamed = LINK_NAME.search(item)
        names.add("_" + (renamed.group("name") if renamed else m.group("name")))
    return names


def scan_crate(root):
    """{framework: symbols} declared by the crate whose package folder is `root`."""
    skip = {"tests", "examples", "benches", "target"}
    files = sorted(p for p in root.rglob("*.rs") if not skip & set(p.relative_to(root).parts))
    blocks = [b for path in files for b in extern_blocks(path)]
    # The crate's own framework: an empty block carrying `link`, or the build script.
    crate_wide = {fw for attrs, body in blocks if not ITEM.search(body) for fw in LINK_ATTR.findall(attrs)}
    build_rs = root / "build.rs"
    if build_rs.is_file():
        crate_wide |= set(BUILD_SCRIPT_LINK.findall(build_rs.read_text(encoding="utf-8", errors="replace")))
    found = {}
    for attrs, body in blocks:
        if LINK_ANY.search(attrs):
            # The block names its own library (a framework, or another kind: skipped).
            owners = set(LINK_ATTR.findall(attrs))
        else:
            owners = crate_wide
            if len(owners) > 1 and ITEM.search(body):
                sys.exit(f"apple-stubs.py: {root}: a crate linking {sorted(owners)} declares "
                         "symbols in a block without `link`: which framework exports them?")
        for fw in owners:
            found.setdefault(fw, set()).update(symbols_of(body))
    return found


def linked_crates(target, manifest_path):
    cargo = os.environ.get("CARGO", "cargo")
    meta = json.loads(
        subprocess.run(
            [cargo, "metadata", "--format-version", "1", "--locked", "--no-default-features",
             "--filter-platform", target, "--manifest-path", str(manifest_path)],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    seen, todo = set(), [meta["resolve"]["root"]]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            # Normal dependencies only: build and dev dependencies are not linked.
            if any(k["kind"] is None for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    crates = []
    for pid in sorted(seen):
        pkg = packages[pid]
        lib = next((t for t in pkg["targets"] if {"lib", "rlib", "proc-macro"} & set(t["kind"])), None)
        if lib is None or "proc-macro" in lib["kind"]:
            continue
        crates.append((pkg["name"], Path(pkg["manifest_path"]).parent))
    return crates


def tbd(framework, symbols):
    targets = "[ " + ", ".join(TBD_TARGETS) + " ]"
    lines = [
        "--- !tapi-tbd",
        "tbd-version:     4",
        f"targets:         {targets}",
        f"install-name:    '/System/Library/Frameworks/{framework}.framework/Versions/A/{framework}'",
    ]
    if symbols:
        lines += ["exports:", f"  - targets:         {targets}", "    symbols:"]
        lines += [f"      - {s}" for s in sorted(symbols)]
    lines.append("...")
    return "\n".join(lines) + "\n"


def write_if_changed(path, text):
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdk", required=True, type=Path, help="the SDK-shaped folder to write")
    ap.add_argument("--target", required=True, help="Rust target triple, e.g. aarch64-apple-darwin")
    ap.add_argument("--manifest-path", type=Path, default=Path(__file__).resolve().parent.parent / "Cargo.toml")
    args = ap.parse_args()

    frameworks = {}
    for _crate, root in linked_crates(args.target, args.manifest_path):
        for fw, symbols in scan_crate(root).items():
            frameworks.setdefault(fw, set()).update(symbols)

    fw_dir = args.sdk / "System" / "Library" / "Frameworks"
    changed = []
    for fw, symbols in sorted(frameworks.items()):
        if write_if_changed(fw_dir / f"{fw}.framework" / f"{fw}.tbd", tbd(fw, symbols)):
            changed.append(fw)
    # Frameworks no longer linked leave no stale stub behind.
    if fw_dir.is_dir():
        for stale in sorted(fw_dir.glob("*.framework")):
            if stale.name[: -len(".framework")] not in frameworks:
                for f in stale.iterdir():
                    f.unlink()
                stale.rmdir()
                changed.append(f"-{stale.name}")
    summary = ", ".join(f"{fw} ({len(s)} symbols)" for fw, s in sorted(frameworks.items()))
    print(f"apple-stubs.py: {args.sdk}: {summary or 'no framework'}"
          f"{'' if changed else ' (unchanged)'}", file=sys.stderr)


if __name__ == "__main__":
    main()
