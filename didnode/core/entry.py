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
from typing import Sequence

from didnode.core.operations import Proof
from didnode.errors import DidnodeError, StoreCorrupted

VERSION = 1
_HEAD = struct.Struct(">BQQ")
_LEN = struct.Struct(">I")
_KID = struct.Struct(">H")
SIG_BYTES = 64


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One accepted operation at its ledger position."""

    position: int
    time: int
    payload: bytes
    proofs: tuple[Proof, ...]

    def encode(self) -> bytes:
        return encode(self.position, self.time, self.payload, self.proofs)


def encode_operation(payload: bytes, proofs: Sequence[Proof]) -> bytes:
    """``u32 len | payload | u8 n | n x (u16 len | kid | 64-byte signature)``.

    Shared by log entries and the cluster's stream messages. Precondition:
    every signature is 64 bytes, fewer than 256 proofs.
    """
    parts = [_LEN.pack(len(payload)), payload, bytes((len(proofs),))]
    for p in proofs:
        kid = p.kid.encode()
        parts.append(_KID.pack(len(kid)))
        parts.append(kid)
        parts.append(p.signature)
    return b"".join(parts)


def decode_operation(data: bytes, off: int, error: type[DidnodeError], what: str) -> tuple[bytes, tuple[Proof, ...]]:
    """Inverse of :func:`encode_operation` starting at ``off``; the operation must end ``data``.

    Raises ``error`` (naming ``what``) on truncation, trailing bytes or bad UTF-8.
    """
    try:
        (n,) = _LEN.unpack_from(data, off)
        off += 4
        payload = bytes(data[off : off + n])
        if len(payload) != n:
            raise error(f"{what} payload is truncated")
        off += n
        count = data[off]
        off += 1
        proofs = []
        for _ in range(count):
            (klen,) = _KID.unpack_from(data, off)
            off += 2
            kid = bytes(data[off : off + klen]).decode()
            off += klen
            sig = bytes(data[off : off + SIG_BYTES])
            if len(sig) != SIG_BYTES:
                raise error(f"{what} signature is truncated")
            off += SIG_BYTES
            proofs.append(Proof(kid, sig))
        if off != len(data):
            raise error(f"{what} has {len(data) - off} trailing bytes")
        return payload, tuple(proofs)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise error(f"{what} does not decode: {exc}") from None


# The largest log entry a new submission may make: a c2sp.org/tlog-tiles entry bundle prefixes each
# entry with a u16 length, so a longer entry could not be served as a tile (docs/http.md, tiles).
MAX_NEW_ENTRY_BYTES = 0xFFFF


def encoded_size(payload: bytes, proofs: Sequence[Proof]) -> int:
    """The length of the log entry of this operation, at any position and time (fixed-width fields)."""
    return _HEAD.size + _LEN.size + len(payload) + 1 + sum(_KID.size + len(p.kid.encode("utf-8")) + SIG_BYTES for p in proofs)


def encode(position: int, time: int, payload: bytes, proofs: Sequence[Proof]) -> bytes:
    """Entry bytes (see module docstring). Precondition: every signature is 64 bytes, < 256 proofs."""
    return _HEAD.pack(VERSION, position, time) + encode_operation(payload, proofs)


def decode(data: bytes) -> LogEntry:
    """Parse entry bytes; raises :class:`StoreCorrupted` if they are not exactly one entry."""
    try:
        version, position, time = _HEAD.unpack_from(data, 0)
    except struct.error as exc:
        raise StoreCorrupted(f"log entry does not decode: {exc}") from None
    if version != VERSION:
        raise StoreCorrupted(f"log entry has unknown version {version}")
    payload, proofs = decode_operation(data, _HEAD.size, StoreCorrupted, "log entry")
    return LogEntry(position, time, payload, proofs)
