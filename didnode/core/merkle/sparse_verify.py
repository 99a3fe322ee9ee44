"""Verify sparse state-tree proofs (presence and absence); needs nothing but hashes.

The tree and the proof layout are defined in ``sparse.py`` and
``encoding.py``. Verifying recomputes the root from the bottom of the key's
path:

* The path ends at depth ``d`` = 1 + the largest set bitmap index (0 for an
  all-zero bitmap). In a well-formed tree the deepest sibling on any path is
  non-empty -- otherwise the parent would hold a single entry and be a
  shortcut leaf itself -- so the bitmap alone fixes where the path ends.
* The start hash at depth ``d`` is ``leaf_hash(key || value)`` (presence),
  ``EMPTY`` (absence, path ends in an empty subtree), or ``leaf_hash(k' ||
  v')`` of the other leaf (absence, path ends at a leaf of another key
  ``k'``; ``k'`` must differ from the key and share its first ``d`` bits).
* Going up from depth ``d`` to 0, the sibling at level ``i`` is the next
  listed sibling if bitmap bit ``i`` is set, else ``EMPTY``; key bit ``i``
  says which side the path is on.

A proof is canonical: a listed sibling equal to ``EMPTY`` is rejected (it must
be left out of the bitmap), so each claim has exactly one valid proof.
Failures raise :class:`~didnode.errors.MalformedProof` (shape) or
:class:`~didnode.errors.RootMismatch` (wrong root); success returns ``None``.
"""

from __future__ import annotations

import hashlib
from typing import Final

from didnode.core.merkle.encoding import BITMAP_SIZE, SparseProof
from didnode.core.merkle.hasher import HASH_SIZE, LEAF_PREFIX, NODE_PREFIX
from didnode.errors import MalformedProof, RootMismatch

_sha256 = hashlib.sha256

EMPTY: Final = bytes(HASH_SIZE)
"""Empty-subtree hash; the same constant as ``sparse.EMPTY`` (kept here so
that a verifier does not import the store-side module)."""


def _check(what: str, h: bytes) -> None:
    if len(h) != HASH_SIZE:
        raise MalformedProof(f"{what} is {len(h)} bytes, want {HASH_SIZE}", field=what, length=len(h))


def _shape(root: bytes, key: bytes, proof: SparseProof) -> tuple[int, int]:
    """Check sizes and canonical form; return (bitmap as int, path depth)."""
    _check("root", root)
    _check("key", key)
    if len(proof.bitmap) != BITMAP_SIZE:
        raise MalformedProof(f"bitmap is {len(proof.bitmap)} bytes, want {BITMAP_SIZE}", length=len(proof.bitmap))
    bits = int.from_bytes(proof.bitmap, "big")
    n = bits.bit_count()
    if len(proof.siblings) != n:
        raise MalformedProof(
            f"bitmap names {n} siblings, proof has {len(proof.siblings)}", want=n, length=len(proof.siblings)
        )
    for i, s in enumerate(proof.siblings):
        _check(f"sibling {i}", s)
        if s == EMPTY:
            raise MalformedProof(f"sibling {i} is the empty hash; it must be left out of the bitmap", element=i)
    # Bitmap index i is integer bit 255 - i; the deepest set index is the
    # lowest set integer bit.
    depth = 0 if bits == 0 else 256 - ((bits & -bits).bit_length() - 1)
    return bits, depth


def _climb(h: bytes, k: int, bits: int, depth: int, siblings: tuple[bytes, ...]) -> bytes:
    si = len(siblings)
    for i in range(depth - 1, -1, -1):
        if (bits >> (255 - i)) & 1:
            si -= 1
            s = siblings[si]
        else:
            s = EMPTY
        if (k >> (255 - i)) & 1:
            h = _sha256(NODE_PREFIX + s + h).digest()
        else:
            h = _sha256(NODE_PREFIX + h + s).digest()
    return h


def root_from_sparse_proof(key: bytes, value: bytes | None, proof: SparseProof) -> bytes:
    """Recompute the root that ``proof`` gives to ``key``.

    ``value`` is the claimed value (presence) or ``None`` (absence). Checks
    the proof's shape (:class:`MalformedProof`) but compares with no root;
    prefer :func:`verify_present` / :func:`verify_absent`.
    """
    bits, depth = _shape(EMPTY, key, proof)
    k = int.from_bytes(key, "big")
    if value is not None:
        _check("value", value)
        if proof.other is not None:
            raise MalformedProof("a presence proof cannot end at another key's leaf")
        start = _sha256(LEAF_PREFIX + key + value).digest()
    elif proof.other is None:
        start = EMPTY
    else:
        other_key, other_value = proof.other
        _check("other key", other_key)
        _check("other value", other_value)
        if other_key == key:
            raise MalformedProof("an absence proof ends at the key's own leaf")
        k2 = int.from_bytes(other_key, "big")
        if depth and (k ^ k2) >> (256 - depth):
            raise MalformedProof(f"other key {other_key.hex()} is not on the key's path at depth {depth}")
        start = _sha256(LEAF_PREFIX + other_key + other_value).digest()
    return _climb(start, k, bits, depth, proof.siblings)


def verify_present(root: bytes, key: bytes, value: bytes, proof: SparseProof) -> None:
    """Check that the map with ``root`` maps ``key`` to ``value``.

    All of ``root``, ``key``, ``value`` are 32 bytes. Returns ``None``;
    raises :class:`MalformedProof` or :class:`RootMismatch` (both
    :class:`InvalidProof`).
    """
    _check("root", root)
    _check("value", value)
    computed = root_from_sparse_proof(key, value, proof)
    if computed != root:
        raise RootMismatch(f"presence proof for key {key.hex()} does not lead to root {root.hex()}", key=key.hex())


def verify_absent(root: bytes, key: bytes, proof: SparseProof) -> None:
    """Check that the map with ``root`` holds no value for ``key``.

    Returns ``None``; raises :class:`MalformedProof` or :class:`RootMismatch`.
    """
    _check("root", root)
    computed = root_from_sparse_proof(key, None, proof)
    if computed != root:
        raise RootMismatch(f"absence proof for key {key.hex()} does not lead to root {root.hex()}", key=key.hex())
