"""The binary encoding of a log entry: what the log stores and what the Merkle log hashes.

Layout (all integers big-endian)::

    u8   version (1)
    u64  position            0-based, dense: the Merkle leaf index
    u64  time                ordering time, ms since the Unix epoch, assigned by the orderer
    u32  payload length, then the canonical JSON payload
    u8   number of proofs, then per proof:
         u16 kid length, kid (UTF-8 DID URL), 64-byte Ed25519 signature

The encoding is injective (every length is explicit), so two different
entries never share bytes and a leaf hash commits to exactly one entry.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from didnode.core.operations import Proof
from didnode.errors import StoreCorrupted

VERSION = 1
_HEAD = struct.Struct(">BQQI")
_KID = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One accepted operation at its ledger position."""

    position: int
    time: int
    payload: bytes
    proofs: tuple[Proof, ...]

    def encode(self) -> bytes:
        return encode(self.position, self.time, self.payload, self.proofs)


def encode(position: int, time: int, payload: bytes, proofs: tuple[Proof, ...]) -> bytes:
    """Entry bytes (see module docstring). Precondition: every signature is 64 bytes, < 256 proofs."""
    parts = [_HEAD.pack(VERSION, position, time, len(payload)), payload, bytes((len(proofs),))]
    for p in proofs:
        kid = p.kid.encode()
        parts.append(_KID.pack(len(kid)))
        parts.append(kid)
        parts.append(p.signature)
    return b"".join(parts)


def decode(data: bytes) -> LogEntry:
    """Parse entry bytes; raises :class:`StoreCorrupted` if they are not exactly one entry."""
    try:
        version, position, time, n = _HEAD.unpack_from(data, 0)
        if version != VERSION:
            raise StoreCorrupted(f"log entry has unknown version {version}")
        off = _HEAD.size
        payload = bytes(data[off : off + n])
        if len(payload) != n:
            raise StoreCorrupted("log entry payload is truncated")
        off += n
        count = data[off]
        off += 1
        proofs = []
        for _ in range(count):
            (klen,) = _KID.unpack_from(data, off)
            off += 2
            kid = bytes(data[off : off + klen]).decode()
            off += klen
            sig = bytes(data[off : off + 64])
            if len(sig) != 64:
                raise StoreCorrupted("log entry signature is truncated")
            off += 64
            proofs.append(Proof(kid, sig))
        if off != len(data):
            raise StoreCorrupted(f"log entry has {len(data) - off} trailing bytes")
        return LogEntry(position, time, payload, tuple(proofs))
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise StoreCorrupted(f"log entry does not decode: {exc}") from None
