"""Timestamped Ed25519 checkpoint cosignatures (c2sp.org/tlog-cosignature, ``cosignature/v1``).

A cosignature is a note signature (:class:`~didnode.core.note.NoteSignature`)
whose key ID is ``SHA-256(name || "\\n" || 0x04 || public key)[:4]`` and whose
signature bytes are ``u64 timestamp (big-endian) || Ed25519 signature`` over::

    cosignature/v1\\n
    time <timestamp, ASCII decimal>\\n
    <the whole checkpoint body, extension lines included>

Statement (the specification's): as of ``timestamp`` (POSIX seconds), the
largest consistent tree head the cosigner observed for the origin has this
root hash. No statement about the extension lines unless the cosigner's
operator says so (docs/transparency.md "Who states what").

Pure: the caller passes the time; the skew bound is :func:`check_time`.
"""

from __future__ import annotations

import struct
from typing import Final

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from didnode.core.note import COSIGNATURE_V1, ED25519_PUBLIC_KEY_SIZE, NoteSignature, key_hash
from didnode.errors import BadCosignature, CosignatureTimeSkew, InvalidArgument

COSIGNATURE_HEADER: Final = b"cosignature/v1\n"
MAX_TIMESTAMP: Final = (1 << 63) - 1
SIGNATURE_SIZE: Final = 8 + 64
_U64 = struct.Struct(">Q")


def message(body: bytes, timestamp_s: int) -> bytes:
    """The signed message: header line, time line, checkpoint body."""
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp_s + body


def cosign(body: bytes, name: str, key: SigningKey, timestamp_s: int) -> NoteSignature:
    """Cosign the checkpoint ``body`` at ``timestamp_s`` as cosigner ``name`` with ``key``."""
    if type(timestamp_s) is not int or not 0 <= timestamp_s <= MAX_TIMESTAMP:
        raise InvalidArgument(f"cosignature timestamp {timestamp_s!r} is out of range")
    if not body.endswith(b"\n"):
        raise InvalidArgument("a checkpoint body ends in a newline")
    sig = key.sign(message(body, timestamp_s)).signature
    return NoteSignature(name, key_hash(name, COSIGNATURE_V1, bytes(key.verify_key)), _U64.pack(timestamp_s) + bytes(sig))


def is_from(sig: NoteSignature, name: str, public_key: bytes) -> bool:
    """Whether ``sig`` claims to be a cosignature/v1 by (``name``, ``public_key``): name and key ID match."""
    return sig.name == name and sig.key_hash == key_hash(name, COSIGNATURE_V1, public_key)


def verify_cosignature(body: bytes, sig: NoteSignature, public_key: bytes, name: str) -> int:
    """Verify a cosignature/v1 of ``body`` by (``name``, ``public_key``); return its timestamp.

    Raises :class:`BadCosignature` if the name or key ID is not this key's, the
    signature is not 72 bytes, the timestamp exceeds 2^63-1, or Ed25519 fails.
    """
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise BadCosignature(f"cosigner {name[:60]!r} key is not 32 bytes", cosigner=name)
    if not is_from(sig, name, public_key):
        raise BadCosignature(f"signature by {sig.name[:60]!r} is not a cosignature of {name[:60]!r}", cosigner=name)
    if len(sig.signature) != SIGNATURE_SIZE:
        raise BadCosignature(f"cosignature of {name[:60]!r} is {len(sig.signature)} bytes, want {SIGNATURE_SIZE}", cosigner=name)
    (timestamp,) = _U64.unpack_from(sig.signature)
    if timestamp > MAX_TIMESTAMP:
        raise BadCosignature(f"cosignature of {name[:60]!r} has a timestamp above 2^63-1", cosigner=name)
    try:
        VerifyKey(bytes(public_key)).verify(message(body, timestamp), sig.signature[8:])
    except (BadSignatureError, ValueError):
        raise BadCosignature(f"cosignature of {name[:60]!r} does not verify", cosigner=name) from None
    return timestamp


def check_time(timestamp_s: int, now_s: int, max_skew_s: int, name: str = "") -> None:
    """:class:`CosignatureTimeSkew` if ``timestamp_s`` is more than ``max_skew_s`` after ``now_s``."""
    if timestamp_s > now_s + max_skew_s:
        raise CosignatureTimeSkew(
            f"cosignature of {name[:60]!r} is dated {timestamp_s - now_s} s in the future (bound {max_skew_s} s)",
            cosigner=name,
            timestamp=timestamp_s,
        )
