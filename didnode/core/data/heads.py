"""Segment heads: a device's signed commitment to a run of readings, and the segment's Merkle tree.

Every N readings or T seconds a device closes a *segment* of its stream: the
RFC 6962 Merkle root over the segment's record leaves (in sequence order),
the sequence range, and the hash of the previous head, signed by a current
authentication key of the device's DID. Heads chain: a stream's first head
starts at sequence 0 with ``prev`` all zeros; each next head starts where the
last ended and names its hash. The device signs only heads, never readings.

Head bytes (big-endian)::

    u8   version (1)
    u16  DID length, DID (UTF-8)
    u8   key id length, key id (the DID's key that signs)
    u8   stream length, stream
    u64  first sequence number
    u32  count of readings (1 .. 65,536)
    32   Merkle root over the records' leaf hashes
    32   prev: hash of the stream's previous signed head (zeros for the first)
    u64  close time (device ms)

A *signed head* is the head bytes then the 64-byte Ed25519 signature over
``"didnode/data/head/v1" 0x00 || network || 0x00 || head bytes``: the context
makes it useless to every other didnode protocol, the network on any other
network. A head's hash is ``SHA-256(signed head)``. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Sequence

from nacl.signing import SigningKey

from didnode.core.data.records import MAX_SEQ, check_stream
from didnode.core.did import KEY_ID_RE, validate_did
from didnode.core.merkle import log_tree, proof_build
from didnode.core.merkle.log_tree import MemoryNodeStore
from didnode.core.ed25519 import verify_raw
from didnode.errors import DidnodeError, MalformedHead

VERSION = 1
SIGNING_CONTEXT = b"didnode/data/head/v1\x00"
MAX_COUNT = 65536
SIG_BYTES = 64
ZERO_HASH = bytes(32)
_U16 = struct.Struct(">H")
_TAIL = struct.Struct(">QI32s32sQ")


@dataclass(frozen=True, slots=True)
class Head:
    """A segment head (unsigned part) of readings ``first .. first + count - 1`` of ``stream``."""

    did: str
    key_id: str
    stream: str
    first: int
    count: int
    root: bytes
    prev: bytes
    close_time: int

    @property
    def end(self) -> int:
        """The next sequence number after this segment."""
        return self.first + self.count

    @property
    def kid(self) -> str:
        return f"{self.did}#{self.key_id}"

    def encode(self) -> bytes:
        did, kid, stream = self.did.encode(), self.key_id.encode(), self.stream.encode()
        return b"".join((
            bytes((VERSION,)), _U16.pack(len(did)), did, bytes((len(kid),)), kid, bytes((len(stream),)), stream,
            _TAIL.pack(self.first, self.count, self.root, self.prev, self.close_time),
        ))


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A head with its signature; ``raw`` is the signed head's bytes (head then signature)."""

    head: Head
    signature: bytes
    raw: bytes

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def head_bytes(self) -> bytes:
        return self.raw[:-SIG_BYTES]


def signing_bytes(network: str, head_bytes: bytes) -> bytes:
    """The exact bytes a device signs for a head."""
    return SIGNING_CONTEXT + network.encode() + b"\x00" + head_bytes


def sign_head(head: Head, network: str, key: SigningKey) -> SignedHead:
    """Sign ``head`` for ``network``. Precondition: ``key`` is the DID's key ``head.key_id``."""
    data = head.encode()
    sig = key.sign(signing_bytes(network, data)).signature
    return SignedHead(head, sig, data + sig)


def verify_head(signed: SignedHead, network: str, public_key: bytes) -> None:
    """Check the head's signature with ``public_key``; raises :class:`InvalidSignature`."""
    verify_raw(public_key, signed.signature, signing_bytes(network, signed.head_bytes), signed.head.kid)


def decode_signed_head(data: bytes) -> SignedHead:
    """Parse signed head bytes; raises :class:`MalformedHead` unless they are exactly one valid signed head."""
    data = bytes(data)
    if len(data) <= SIG_BYTES:
        raise MalformedHead(f"a signed head is longer than its {SIG_BYTES}-byte signature; this one has {len(data)} bytes")
    body = data[:-SIG_BYTES]
    try:
        if body[0] != VERSION:
            raise MalformedHead(f"segment head has version {body[0]}; this node reads version {VERSION}")
        (dlen,) = _U16.unpack_from(body, 1)
        o = 3 + dlen
        did = validate_did(body[3:o].decode())
        klen = body[o]
        key_id = body[o + 1 : o + 1 + klen].decode()
        o += 1 + klen
        if not KEY_ID_RE.fullmatch(key_id):
            raise MalformedHead(f"segment head key id {key_id[:40]!r} is not a key id")
        slen = body[o]
        stream = check_stream(body[o + 1 : o + 1 + slen].decode())
        o += 1 + slen
        first, count, root, prev, close_time = _TAIL.unpack_from(body, o)
        if o + _TAIL.size != len(body):
            raise MalformedHead(f"segment head has {len(body) - o - _TAIL.size} trailing bytes")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise MalformedHead(f"segment head does not decode: {exc}") from None
    except DidnodeError as exc:
        if isinstance(exc, MalformedHead):
            raise
        raise MalformedHead(f"segment head: {exc}") from None
    if not 1 <= count <= MAX_COUNT:
        raise MalformedHead(f"a segment holds 1 to {MAX_COUNT} readings, not {count}")
    if first + count - 1 > MAX_SEQ:
        raise MalformedHead("a segment's sequence numbers end above 2^53-1")
    if first == 0 and prev != ZERO_HASH:
        raise MalformedHead("a stream's first segment (from sequence 0) has an all-zero prev")
    head = Head(did, key_id, stream, first, count, root, prev, close_time)
    return SignedHead(head, data[-SIG_BYTES:], data)


# --------------------------------------------------------------------------
# The segment's Merkle tree (RFC 6962 over the records' leaf hashes)
# --------------------------------------------------------------------------


def segment_tree(leaf_hashes: Sequence[bytes]) -> MemoryNodeStore:
    """The segment's tree, for its root and its readings' proofs. Precondition: 1 <= len <= MAX_COUNT."""
    store = MemoryNodeStore()
    log_tree.append_many(store, 0, list(leaf_hashes))
    return store


def segment_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle root of a segment's record leaves."""
    return log_tree.root(segment_tree(leaf_hashes), len(leaf_hashes))


def reading_proof(tree: MemoryNodeStore, index: int, count: int) -> list[bytes]:
    """The inclusion proof of reading ``index`` (0-based within the segment) in a segment of ``count`` readings."""
    return proof_build.inclusion_proof(tree, index, count)
