"""Reading records: what a device commits to for each reading, and the salted commitment.

A reading's payload never leaves the operator's hands: the record holds a
*commitment* to it, ``SHA-256("didnode/data/commit/v1" 0x00 || u8 len(salt) ||
salt || payload)``, so a record (and a receipt without the payload) reveals
nothing about the payload, and the salt keeps equal payloads from having
equal commitments. Salts are derived from a per-segment secret
(:func:`salt_stream`, :func:`derive_salt`): the device stores one secret per
segment, not one salt per reading, and can always reproduce a reading's salt.

Record bytes (big-endian), the leaf of the segment's RFC 6962 Merkle tree::

    u8   version (1)
    u16  DID length, DID (UTF-8)
    u8   stream length, stream (1-64 of [A-Za-z0-9._-])
    u64  sequence number in the stream (0-based, dense)
    u64  device time, ms since the Unix epoch (the device's clock: a claim, not a proof)
    32   commitment

The key that vouches for a record is named by its segment head, not here:
a segment is signed by one key (the device closes a segment when it rotates).
Pure: no I/O, no clock; randomness (the segment secret) is passed in.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from didnode.core.did import validate_did
from didnode.errors import DidnodeError, MalformedHead

VERSION = 1
COMMIT_CONTEXT = b"didnode/data/commit/v1\x00"
SALT_CONTEXT = b"didnode/data/salt/v1\x00"
STREAM_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
SALT_BYTES = 16
MAX_SEQ = 2**53 - 1
_U16 = struct.Struct(">H")
_TAIL = struct.Struct(">QQ32s")


def check_stream(name: object) -> str:
    """Return ``name`` if it is a valid stream name, else raise :class:`MalformedHead`."""
    if not isinstance(name, str) or not STREAM_RE.fullmatch(name):
        raise MalformedHead(f"stream name {str(name)[:40]!r} must be 1-64 characters of [A-Za-z0-9._-]")
    return name


def commitment(salt: bytes, payload: bytes) -> bytes:
    """The salted commitment to a reading's payload. Precondition: 1 <= len(salt) <= 255."""
    return hashlib.sha256(COMMIT_CONTEXT + bytes((len(salt),)) + salt + payload).digest()


def salt_stream(segment_secret: bytes, count: int) -> bytes:
    """The salts of a segment's first ``count`` readings, concatenated: the SHAKE-256 output of
    ``"didnode/data/salt/v1" 0x00 || segment secret``, 16 bytes per reading in segment order.

    One call per segment instead of one keyed hash per reading: the recorder's hot path slices it.
    """
    return hashlib.shake_256(SALT_CONTEXT + segment_secret).digest(SALT_BYTES * count)


def derive_salt(segment_secret: bytes, index: int) -> bytes:
    """The salt of the reading at ``index`` (0-based) in its segment: bytes ``16 index .. 16 index + 16``
    of :func:`salt_stream`. Precondition: ``0 <= index < 65,536`` (a segment's size)."""
    return salt_stream(segment_secret, index + 1)[SALT_BYTES * index :]


@dataclass(frozen=True, slots=True)
class Record:
    """One reading as the device committed to it."""

    did: str
    stream: str
    seq: int
    device_time: int
    commitment: bytes

    def encode(self) -> bytes:
        """The record bytes (module docstring)."""
        did = self.did.encode()
        stream = self.stream.encode()
        return b"".join(
            (bytes((VERSION,)), _U16.pack(len(did)), did, bytes((len(stream),)), stream, _TAIL.pack(self.seq, self.device_time, self.commitment))
        )

    def leaf_hash(self) -> bytes:
        """RFC 6962 leaf hash of the record bytes."""
        return hashlib.sha256(b"\x00" + self.encode()).digest()


def encode_record(did: str, stream: str, seq: int, device_time: int, commit: bytes) -> bytes:
    """Record bytes without building a :class:`Record` (the recorder's hot path). Preconditions as :class:`Record`."""
    d = did.encode()
    s = stream.encode()
    return bytes((VERSION,)) + _U16.pack(len(d)) + d + bytes((len(s),)) + s + _TAIL.pack(seq, device_time, commit)


def decode_record(data: bytes) -> Record:
    """Parse record bytes; raises :class:`MalformedHead` unless they are exactly one valid record."""
    try:
        if data[0] != VERSION:
            raise MalformedHead(f"reading record has version {data[0]}; this node reads version {VERSION}")
        (dlen,) = _U16.unpack_from(data, 1)
        o = 3 + dlen
        did = validate_did(bytes(data[3:o]).decode())
        slen = data[o]
        stream = check_stream(bytes(data[o + 1 : o + 1 + slen]).decode())
        o += 1 + slen
        seq, device_time, commit = _TAIL.unpack_from(data, o)
        if o + _TAIL.size != len(data):
            raise MalformedHead(f"reading record has {len(data) - o - _TAIL.size} trailing bytes")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise MalformedHead(f"reading record does not decode: {exc}") from None
    except DidnodeError as exc:
        if isinstance(exc, MalformedHead):
            raise
        raise MalformedHead(f"reading record: {exc}") from None
    if seq > MAX_SEQ:
        raise MalformedHead(f"reading record sequence number {seq} is over 2^53-1")
    return Record(did, stream, seq, device_time, commit)
