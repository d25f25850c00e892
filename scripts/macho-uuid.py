#!/usr/bin/env python3
"""Sets a Mach-O's LC_UUID from its content, so that the same code gets the same UUID.

    scripts/macho-uuid.py FILE

Why: zig's linker gives the arm64 agent a different LC_UUID on every link, although
every other byte is the same (measured: two clean builds of one commit differ in
those 16 bytes and in the code-signature page hash that covers them; the x86_64
agent does not). dyld wants an LC_UUID, so it stays, derived from what it names:
SHA-256 of the file up to its code signature, with the UUID's own bytes zeroed,
shaped as an RFC 4122 name-based UUID. The file is rewritten in place; its code
signature, if any, is then stale: build-agents.sh passes the file through
rust-objcopy, which signs a linker-signed (ad hoc) binary again.
"""

import hashlib
import struct
import sys

MH_MAGIC_64 = 0xFEEDFACF
LC_UUID = 0x1B
LC_CODE_SIGNATURE = 0x1D


def main():
    path = sys.argv[1]
    with open(path, "rb") as f:
        data = bytearray(f.read())
    magic, _, _, _, ncmds, _, _, _ = struct.unpack_from("<8I", data, 0)
    if magic != MH_MAGIC_64:
        sys.exit(f"macho-uuid.py: {path}: not a 64-bit little-endian Mach-O")
    uuid_at, code_end = None, len(data)
    at = 32  # sizeof(mach_header_64)
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<2I", data, at)
        if cmd == LC_UUID:
            uuid_at = at + 8
        elif cmd == LC_CODE_SIGNATURE:
            code_end = struct.unpack_from("<I", data, at + 8)[0]
        at += size
    if uuid_at is None:
        sys.exit(f"macho-uuid.py: {path}: no LC_UUID")
    data[uuid_at : uuid_at + 16] = bytes(16)
    uuid = bytearray(hashlib.sha256(data[:code_end]).digest()[:16])
    uuid[6] = (uuid[6] & 0x0F) | 0x50  # version 5: name-based, SHA
    uuid[8] = (uuid[8] & 0x3F) | 0x80  # RFC 4122 variant
    data[uuid_at : uuid_at + 16] = uuid
    with open(path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
