"""Signed checkpoints: {network, tree size, log root, state root, time}, signed by a node.

A checkpoint commits a node to the whole ledger at one log size: the RFC 6962
root of the log tree over the first ``tree_size`` entries and the root of the
sparse state tree after applying exactly those entries. It is signed with the
node's own DID key, so a client that trusts that key can check any inclusion,
consistency or state proof against it, offline.

Byte encoding (docs/transparency.md, section "Checkpoints")
-----------------------------------------------------------
All integers big-endian::

    body = u8  len(network) || network (ASCII, 1..32 bytes, [a-z0-9][a-z0-9-]*)
        || u64 tree_size
        || 32  log_root          RFC 6962 MTH of entries [0, tree_size)
        || 32  state_root        sparse state tree root after those entries
        || u64 time_ms           when the node signed, ms since the Unix epoch

    signing bytes = "didnode/checkpoint/v1" || 0x00 || body
    signature     = Ed25519(node key, signing bytes)     (64 bytes)

    signed checkpoint = body || u16 len(kid) || kid (UTF-8 DID URL) || signature

The context string differs from the operation context
(``didnode/operation/v1\\x00``) and from every other signing context of
didnode, so a checkpoint signature can never be taken for an operation
signature or the reverse. The ``kid`` is not signed: it only tells the
verifier which key to use, and trust comes from the key the verifier pins.

Everything here is pure: time is passed in; signing takes the key object.
Verification lives in :mod:`didnode.core.transparency_verify`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from nacl.signing import SigningKey

from didnode.core.merkle.hasher import HASH_SIZE
from didnode.core.operations import NETWORK_RE
from didnode.errors import InvalidArgument, MalformedProof

CHECKPOINT_CONTEXT: Final = b"didnode/checkpoint/v1\x00"
SIGNATURE_SIZE: Final = 64
MAX_KID_BYTES: Final = 512
MAX_NOTE_CHARS: Final = 1 << 16

_SIZE_ROOTS_TIME = struct.Struct(">Q32s32sQ")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_MAX_NOTE_BYTES: Final = 4 * MAX_NOTE_CHARS  # UTF-8 of a note of MAX_NOTE_CHARS characters


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The signed statement of a checkpoint (what the signature covers)."""

    network: str
    tree_size: int
    log_root: bytes
    state_root: bytes
    time_ms: int

    def body(self) -> bytes:
        """The body bytes (module docstring). Raises :class:`InvalidArgument` on impossible fields."""
        _check_fields(self)
        net = self.network.encode("ascii")
        return bytes((len(net),)) + net + _SIZE_ROOTS_TIME.pack(self.tree_size, self.log_root, self.state_root, self.time_ms)

    def signing_bytes(self) -> bytes:
        """``CHECKPOINT_CONTEXT || body``: exactly what the node signs."""
        return CHECKPOINT_CONTEXT + self.body()

    def same_state(self, other: "Checkpoint") -> bool:
        """Whether two checkpoints (e.g. from two nodes) commit to the same ledger state."""
        return (self.network, self.tree_size, self.log_root, self.state_root) == (
            other.network,
            other.tree_size,
            other.log_root,
            other.state_root,
        )


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with the signer's key id (a DID URL) and its Ed25519 signature.

    Nothing here is verified; use :func:`didnode.core.transparency_verify.verify_checkpoint`.
    """

    checkpoint: Checkpoint
    kid: str
    signature: bytes
    note: bytes = b""
    """The same checkpoint as a C2SP signed note (:mod:`didnode.core.tlog_checkpoint`) with every
    signature it gathered (the node's, witnesses' cosignatures), or empty in the old format only.
    Not checked against the fields here: :class:`~didnode.core.trust.verifier.TrustedLog` does."""

    @property
    def tree_size(self) -> int:
        return self.checkpoint.tree_size

    @property
    def signer_did(self) -> str:
        """The DID part of ``kid``."""
        return self.kid.partition("#")[0]

    def encode(self) -> bytes:
        """Binary form: ``body || u16 len(kid) || kid || signature [|| u32 len(note) || note]`` (what the
        node stores). The note part is there only when there is a note, so checkpoints stored before
        notes existed (ending at the signature) keep decoding, and old-format ones keep their bytes."""
        kid = self.kid.encode("utf-8")
        if not 0 < len(kid) <= MAX_KID_BYTES:
            raise InvalidArgument(f"checkpoint kid is {len(kid)} bytes; 1..{MAX_KID_BYTES} encode")
        if len(self.signature) != SIGNATURE_SIZE:
            raise InvalidArgument(f"checkpoint signature is {len(self.signature)} bytes, want {SIGNATURE_SIZE}")
        out = self.checkpoint.body() + _U16.pack(len(kid)) + kid + self.signature
        if self.note:
            if len(self.note) > _MAX_NOTE_BYTES:
                raise InvalidArgument(f"checkpoint note is {len(self.note)} bytes; at most {_MAX_NOTE_BYTES} encode")
            out += _U32.pack(len(self.note)) + self.note
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/transparency.md): hashes and signature in lowercase hex; ``note`` (the signed
        note's UTF-8 text) only when there is one, so old-format checkpoints keep their old JSON."""
        c = self.checkpoint
        out: dict[str, Any] = {
            "network": c.network,
            "treeSize": c.tree_size,
            "logRoot": c.log_root.hex(),
            "stateRoot": c.state_root.hex(),
            "timeMs": c.time_ms,
            "kid": self.kid,
            "signature": self.signature.hex(),
        }
        if self.note:
            out["note"] = self.note.decode("utf-8")
        return out


def _check_fields(c: Checkpoint) -> None:
    if not isinstance(c.network, str) or not NETWORK_RE.fullmatch(c.network):
        raise InvalidArgument(f"checkpoint network {c.network!r} is not a network id")
    if not 0 <= c.tree_size < 1 << 64:
        raise InvalidArgument(f"checkpoint tree size {c.tree_size} is out of range")
    if not 0 <= c.time_ms < 1 << 64:
        raise InvalidArgument(f"checkpoint time {c.time_ms} is out of range")
    if len(c.log_root) != HASH_SIZE or len(c.state_root) != HASH_SIZE:
        raise InvalidArgument("checkpoint roots must be 32 bytes each")


def sign(checkpoint: Checkpoint, key: SigningKey, kid: str) -> SignedCheckpoint:
    """Sign ``checkpoint`` with ``key``; ``kid`` is the DID URL of that key.

    Precondition: the fields are well formed (else :class:`InvalidArgument`);
    the caller computed both roots in one read snapshot at ``tree_size``.
    """
    signature = key.sign(checkpoint.signing_bytes()).signature
    return SignedCheckpoint(checkpoint, kid, bytes(signature))


def decode_body(data: bytes) -> tuple[Checkpoint, int]:
    """Parse the body at the start of ``data``; return it and the offset after it.

    Raises :class:`MalformedProof` on truncation or an invalid network id.
    """
    if not data:
        raise MalformedProof("checkpoint is empty")
    n = data[0]
    start = 1
    end = start + n + _SIZE_ROOTS_TIME.size
    if len(data) < end:
        raise MalformedProof(f"checkpoint body is truncated ({len(data)} bytes)")
    try:
        network = bytes(data[start : start + n]).decode("ascii")
    except UnicodeDecodeError:
        raise MalformedProof("checkpoint network is not ASCII") from None
    if not NETWORK_RE.fullmatch(network):
        raise MalformedProof(f"checkpoint network {network!r} is not a network id")
    size, log_root, state_root, time_ms = _SIZE_ROOTS_TIME.unpack_from(data, start + n)
    return Checkpoint(network, size, bytes(log_root), bytes(state_root), time_ms), end


def decode(data: bytes) -> SignedCheckpoint:
    """Inverse of :meth:`SignedCheckpoint.encode`; exact length required (:class:`MalformedProof`)."""
    cp, off = decode_body(data)
    if len(data) < off + 2:
        raise MalformedProof("signed checkpoint is truncated before its kid")
    (klen,) = _U16.unpack_from(data, off)
    off += 2
    if not 0 < klen <= MAX_KID_BYTES or len(data) < off + klen:
        raise MalformedProof(f"signed checkpoint kid length {klen} is impossible here")
    try:
        kid = bytes(data[off : off + klen]).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedProof("signed checkpoint kid is not UTF-8") from None
    off += klen
    signature = bytes(data[off : off + SIGNATURE_SIZE])
    off += SIGNATURE_SIZE
    if len(signature) != SIGNATURE_SIZE:
        raise MalformedProof(f"signed checkpoint signature is {len(signature)} bytes, want {SIGNATURE_SIZE}")
    if off == len(data):
        return SignedCheckpoint(cp, kid, signature)  # the old format: no note
    if len(data) < off + _U32.size:
        raise MalformedProof("signed checkpoint is truncated in its note length")
    (nlen,) = _U32.unpack_from(data, off)
    off += _U32.size
    if not 0 < nlen <= _MAX_NOTE_BYTES or len(data) != off + nlen:
        raise MalformedProof(f"signed checkpoint note length {nlen} does not match the {len(data) - off} bytes left")
    return SignedCheckpoint(cp, kid, signature, bytes(data[off:]))


def _hex(d: dict[str, Any], name: str, size: int) -> bytes:
    value = d.get(name)
    if not isinstance(value, str):
        raise MalformedProof(f"checkpoint JSON member {name} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise MalformedProof(f"checkpoint JSON member {name} is not hex") from None
    if len(raw) != size or value != raw.hex():
        raise MalformedProof(f"checkpoint JSON member {name} must be {size} bytes of lowercase hex")
    return raw


def _uint(d: dict[str, Any], name: str) -> int:
    value = d.get(name)
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise MalformedProof(f"checkpoint JSON member {name} must be an unsigned 64-bit integer")
    return value


def from_json(d: Any) -> SignedCheckpoint:
    """Parse the JSON form (:meth:`SignedCheckpoint.to_json`); raises :class:`MalformedProof`.

    Unknown members are rejected so that nothing unsigned can ride along
    looking as if it were part of the checkpoint.
    """
    if not isinstance(d, dict):
        raise MalformedProof("a checkpoint must be a JSON object")
    expected = {"network", "treeSize", "logRoot", "stateRoot", "timeMs", "kid", "signature"}
    if set(d) != expected and set(d) != expected | {"note"}:
        raise MalformedProof(f"checkpoint JSON members must be exactly {sorted(expected)}, got {sorted(d)}")
    network = d["network"]
    if not isinstance(network, str) or not NETWORK_RE.fullmatch(network):
        raise MalformedProof(f"checkpoint network {str(network)[:40]!r} is not a network id")
    kid = d["kid"]
    if not isinstance(kid, str) or not kid:
        raise MalformedProof("checkpoint kid must be a non-empty string")
    cp = Checkpoint(network, _uint(d, "treeSize"), _hex(d, "logRoot", HASH_SIZE), _hex(d, "stateRoot", HASH_SIZE), _uint(d, "timeMs"))
    note = d.get("note", "")
    if not isinstance(note, str) or (("note" in d) and not note) or len(note) > MAX_NOTE_CHARS:
        raise MalformedProof(f"checkpoint JSON member note must be a non-empty signed note of at most {MAX_NOTE_CHARS} characters")
    try:
        note_bytes = note.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedProof("checkpoint JSON member note is not UTF-8 text") from None
    return SignedCheckpoint(cp, kid, _hex(d, "signature", SIGNATURE_SIZE), note_bytes)
