"""Proof values and their exact byte layouts (what goes on the wire and into docs).

Log proofs (inclusion and consistency alike)
--------------------------------------------
::

    u8 count || count * 32-byte hash

in the order the proof lists them (leaf/old-root level first, RFC 9162
order). The count is at most 255; real proofs have at most about 2*64. The
sizes and index a proof is for are *not* part of these bytes: they travel in
the enclosing message, next to the signed checkpoint.

Sparse state-tree proofs (:class:`SparseProof`)
-----------------------------------------------
::

    32-byte bitmap || n * 32-byte sibling || [32-byte other key || 32-byte other value]

* Bit ``i`` of the bitmap is ``bitmap[i // 8] & (0x80 >> (i % 8))`` (MSB
  first, the same bit order as the key path). It is set iff the sibling of
  the path's child at depth ``i + 1`` is non-empty; ``n`` is the number of set
  bits, and the siblings follow in increasing ``i`` (root side first). Unset
  bits stand for the empty-subtree hash (32 zero bytes).
* The trailing 64 bytes are present iff the key's path ends at a leaf that
  holds a *different* key (a non-membership proof); their presence is read
  from the length alone (``len - 32 - 32 n`` is 0 or 64), which is
  unambiguous since ``n`` is fixed by the bitmap.

Parsers reject truncated input, trailing bytes and impossible counts with
:class:`~didnode.errors.MalformedProof`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from didnode.core.merkle.hasher import HASH_SIZE
from didnode.errors import InvalidArgument, MalformedProof

MAX_LOG_PROOF_HASHES = 255
BITMAP_SIZE = 32


@dataclass(frozen=True, slots=True)
class SparseProof:
    """A compact sparse-Merkle-tree path for one key (see module docstring).

    ``bitmap``: 32 bytes, which of the 256 possible siblings are non-empty.
    ``siblings``: the non-empty siblings, root side first.
    ``other``: ``(key, value)`` of the leaf where the key's path ends when that
    leaf holds another key (proves absence); ``None`` when the path ends at the
    key's own leaf (presence) or at an empty subtree (absence).
    The verifiers in ``sparse_verify`` check all shapes; this class does not.
    """

    bitmap: bytes
    siblings: tuple[bytes, ...]
    other: tuple[bytes, bytes] | None = None


def serialize_log_proof(proof: Sequence[bytes]) -> bytes:
    """Encode an inclusion or consistency proof as ``u8 count || hashes``.

    Precondition: at most 255 hashes of 32 bytes each (else
    :class:`InvalidArgument`; proofs built here always qualify).
    """
    if len(proof) > MAX_LOG_PROOF_HASHES:
        raise InvalidArgument(f"log proof has {len(proof)} hashes, at most {MAX_LOG_PROOF_HASHES} encode", length=len(proof))
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise InvalidArgument(f"log proof hash {i} is {len(h)} bytes, want {HASH_SIZE}", element=i)
    return bytes((len(proof),)) + b"".join(proof)


def parse_log_proof(data: bytes) -> list[bytes]:
    """Decode ``u8 count || count * 32 bytes``; exact length required.

    Raises :class:`MalformedProof` on empty input, truncation or extra bytes.
    """
    if not data:
        raise MalformedProof("log proof is empty (no count byte)")
    count = data[0]
    want = 1 + count * HASH_SIZE
    if len(data) != want:
        raise MalformedProof(
            f"log proof of {count} hashes must be {want} bytes, is {len(data)}", count=count, length=len(data)
        )
    return [bytes(data[i : i + HASH_SIZE]) for i in range(1, want, HASH_SIZE)]


def serialize_sparse_proof(proof: SparseProof) -> bytes:
    """Encode ``bitmap || siblings || [other key || other value]``.

    Precondition: the proof's shape is consistent (bitmap 32 bytes, one
    32-byte sibling per set bit, ``other`` two 32-byte strings); else
    :class:`InvalidArgument`.
    """
    if len(proof.bitmap) != BITMAP_SIZE:
        raise InvalidArgument(f"sparse proof bitmap is {len(proof.bitmap)} bytes, want {BITMAP_SIZE}")
    n = int.from_bytes(proof.bitmap, "big").bit_count()
    if len(proof.siblings) != n or any(len(s) != HASH_SIZE for s in proof.siblings):
        raise InvalidArgument(f"sparse proof needs {n} 32-byte siblings, has {len(proof.siblings)}")
    parts = [proof.bitmap, *proof.siblings]
    if proof.other is not None:
        key, value = proof.other
        if len(key) != HASH_SIZE or len(value) != HASH_SIZE:
            raise InvalidArgument("sparse proof other leaf needs a 32-byte key and a 32-byte value")
        parts += (key, value)
    return b"".join(parts)


def parse_sparse_proof(data: bytes) -> SparseProof:
    """Decode the sparse proof layout; exact length required.

    Raises :class:`MalformedProof` if the input is shorter than the bitmap,
    or its length is not ``32 + 32 n`` or ``32 + 32 n + 64``.
    """
    if len(data) < BITMAP_SIZE:
        raise MalformedProof(f"sparse proof is {len(data)} bytes, shorter than its bitmap", length=len(data))
    bitmap = bytes(data[:BITMAP_SIZE])
    n = int.from_bytes(bitmap, "big").bit_count()
    end = BITMAP_SIZE + n * HASH_SIZE
    rest = len(data) - end
    if rest not in (0, 2 * HASH_SIZE):
        raise MalformedProof(
            f"sparse proof with {n} siblings must be {end} or {end + 2 * HASH_SIZE} bytes, is {len(data)}",
            siblings=n, length=len(data),
        )
    siblings = tuple(bytes(data[i : i + HASH_SIZE]) for i in range(BITMAP_SIZE, end, HASH_SIZE))
    other = None
    if rest:
        other = (bytes(data[end : end + HASH_SIZE]), bytes(data[end + HASH_SIZE :]))
    return SparseProof(bitmap, siblings, other)
