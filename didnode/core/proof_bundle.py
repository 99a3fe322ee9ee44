"""Proof bundles: a checkpoint plus the proof of one claim, and their JSON form.

The node builds them, the transport carries them, the client library and
``didctl log prove`` write them to files, and
:mod:`didnode.core.transparency_verify` checks them. Three kinds:

* :class:`InclusionProof` -- log entry bytes, their leaf index, an RFC 9162
  audit path at ``tree_size`` and (when the node signed one at that size)
  the checkpoint;
* :class:`ConsistencyProof` -- an RFC 9162 consistency proof between two
  sizes and the checkpoints at both sizes (when signed);
* :class:`StateProof` -- a DID's state record (or its absence) and the sparse
  state-tree proof under a checkpoint.

JSON layout (docs/transparency.md, "Proof bundles"): a ``type`` member names
the kind; byte strings are lowercase hex; log proofs use the byte layout of
:func:`didnode.core.merkle.encoding.serialize_log_proof` and state proofs that
of :func:`~didnode.core.merkle.encoding.serialize_sparse_proof`; the (binary)
state record is embedded as unpadded base64url.
Parsing is strict: unknown or missing members raise :class:`MalformedProof`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from didnode.core import canonical
from didnode.core import checkpoint as cp_codec
from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.merkle.encoding import (
    SparseProof,
    parse_log_proof,
    parse_sparse_proof,
    serialize_log_proof,
    serialize_sparse_proof,
)
from didnode.core.encoding import b64url, b64url_decode
from didnode.core.did import validate_did
from didnode.errors import InvalidDid, MalformedProof

INCLUSION_TYPE: Final = "didnode/inclusion-proof/v1"
CONSISTENCY_TYPE: Final = "didnode/consistency-proof/v1"
STATE_TYPE: Final = "didnode/state-proof/v1"
MAX_ENTRY_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Entry ``index`` (its bytes are the leaf data) is in the tree of ``tree_size`` leaves."""

    entry: bytes
    index: int
    tree_size: int
    hashes: tuple[bytes, ...]
    checkpoint: SignedCheckpoint | None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": INCLUSION_TYPE,
            "checkpoint": None if self.checkpoint is None else self.checkpoint.to_json(),
            "entry": self.entry.hex(),
            "leafIndex": self.index,
            "treeSize": self.tree_size,
            "proof": serialize_log_proof(self.hashes).hex(),
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The tree of ``size1`` leaves is a prefix of the tree of ``size2`` leaves."""

    size1: int
    size2: int
    hashes: tuple[bytes, ...]
    checkpoint1: SignedCheckpoint | None
    checkpoint2: SignedCheckpoint | None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": CONSISTENCY_TYPE,
            "checkpoint1": None if self.checkpoint1 is None else self.checkpoint1.to_json(),
            "checkpoint2": None if self.checkpoint2 is None else self.checkpoint2.to_json(),
            "size1": self.size1,
            "size2": self.size2,
            "proof": serialize_log_proof(self.hashes).hex(),
        }


@dataclass(frozen=True, slots=True)
class StateProof:
    """``did`` maps to ``sha256(state_record)`` under the checkpoint's state root
    (``present``), or to nothing (``state_record`` is then empty)."""

    did: str
    present: bool
    state_record: bytes
    proof: SparseProof
    checkpoint: SignedCheckpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "type": STATE_TYPE,
            "checkpoint": self.checkpoint.to_json(),
            "did": self.did,
            "present": self.present,
            "stateRecord": b64url(self.state_record) if self.present else None,
            "proof": serialize_sparse_proof(self.proof).hex(),
        }


Bundle = InclusionProof | ConsistencyProof | StateProof


def _members(d: dict[str, Any], expected: set[str]) -> None:
    if set(d) != expected:
        raise MalformedProof(f"{d.get('type')} bundle members must be exactly {sorted(expected)}, got {sorted(d)}")


def _uint(d: dict[str, Any], name: str) -> int:
    value = d[name]
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise MalformedProof(f"bundle member {name} must be an unsigned 64-bit integer")
    return value


def _hex(d: dict[str, Any], name: str, limit: int = MAX_ENTRY_BYTES) -> bytes:
    value = d[name]
    if not isinstance(value, str) or len(value) > 2 * limit:
        raise MalformedProof(f"bundle member {name} must be a hex string of at most {limit} bytes")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise MalformedProof(f"bundle member {name} is not hex") from None
    if raw.hex() != value:
        raise MalformedProof(f"bundle member {name} must be lowercase hex without spaces")
    return raw


def _state_record(text: str) -> bytes:
    """The record bytes of a present ``stateRecord`` (unpadded base64url, canonical form)."""
    if len(text) > MAX_ENTRY_BYTES * 4 // 3 + 3:
        raise MalformedProof(f"bundle member stateRecord is longer than a {MAX_ENTRY_BYTES}-byte record")
    return b64url_decode(text, "bundle member stateRecord", MalformedProof)


def _checkpoint(value: Any) -> SignedCheckpoint | None:
    return None if value is None else cp_codec.from_json(value)


def from_text(data: str | bytes) -> Bundle:
    """Parse a bundle from its JSON text (a file, a stapled proof); raises :class:`MalformedProof` for any bytes."""
    return from_json(canonical.loads(data, MalformedProof, "proof bundle"))


def from_json(d: Any) -> Bundle:
    """Parse any bundle from its JSON form (a decoded object); raises :class:`MalformedProof`."""
    if not isinstance(d, dict):
        raise MalformedProof("a proof bundle must be a JSON object")
    kind = d.get("type")
    if kind == INCLUSION_TYPE:
        _members(d, {"type", "checkpoint", "entry", "leafIndex", "treeSize", "proof"})
        return InclusionProof(
            _hex(d, "entry"), _uint(d, "leafIndex"), _uint(d, "treeSize"), tuple(parse_log_proof(_hex(d, "proof"))), _checkpoint(d["checkpoint"])
        )
    if kind == CONSISTENCY_TYPE:
        _members(d, {"type", "checkpoint1", "checkpoint2", "size1", "size2", "proof"})
        return ConsistencyProof(
            _uint(d, "size1"),
            _uint(d, "size2"),
            tuple(parse_log_proof(_hex(d, "proof"))),
            _checkpoint(d["checkpoint1"]),
            _checkpoint(d["checkpoint2"]),
        )
    if kind == STATE_TYPE:
        _members(d, {"type", "checkpoint", "did", "present", "stateRecord", "proof"})
        did, present, record = d["did"], d["present"], d["stateRecord"]
        if not isinstance(did, str) or not isinstance(present, bool):
            raise MalformedProof("state bundle needs a string did and a boolean present")
        try:
            validate_did(did)  # also: no lone surrogate, which has no UTF-8 form to hash
        except InvalidDid as exc:
            raise MalformedProof(f"state bundle: {exc}") from None
        if present != isinstance(record, str) or (not present and record is not None):
            raise MalformedProof("state bundle: stateRecord is a string when present and null when absent")
        checkpoint = _checkpoint(d["checkpoint"])
        if checkpoint is None:
            raise MalformedProof("state bundle has no checkpoint")
        return StateProof(did, present, _state_record(record) if present else b"", parse_sparse_proof(_hex(d, "proof")), checkpoint)
    raise MalformedProof(f"unknown proof bundle type {str(kind)[:60]!r}")
