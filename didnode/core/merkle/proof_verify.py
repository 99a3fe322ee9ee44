"""Verify RFC 9162 inclusion and consistency proofs; needs nothing but hashes.

The loops are RFC 9162 section 2.1.3.2 (inclusion) and 2.1.4.2 (consistency)
step by step, so that the code can be checked against the RFC line by line.
Before hashing, each verifier also checks the proof's exact expected length
(derived from the index and sizes alone, as transparency-dev/merkle does), so
that a truncated or padded proof is reported as :class:`MalformedProof` rather
than as a root mismatch.

Every function raises on failure and returns ``None`` (or the computed root)
on success; there is no boolean result to forget to check:

* :class:`~didnode.errors.MalformedProof` -- wrong hash sizes, wrong element
  count, an index or sizes that cannot describe a proof;
* :class:`~didnode.errors.RootMismatch` -- a well-formed proof that leads to
  another root than the trusted one.

Both are :class:`~didnode.errors.InvalidProof`. Nothing in this module reads a
store: a light client ships it with ``hasher.py`` alone.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from didnode.core.merkle.hasher import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX
from didnode.errors import MalformedProof, RootMismatch

_sha256 = hashlib.sha256


def _check_hash(what: str, h: bytes) -> None:
    if len(h) != HASH_SIZE:
        raise MalformedProof(f"{what} is {len(h)} bytes, want {HASH_SIZE}", field=what, length=len(h))


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise MalformedProof(f"proof[{i}] is {len(h)} bytes, want {HASH_SIZE}", element=i, length=len(h))


def _inclusion_length(index: int, size: int) -> int:
    """Exact length of PATH(index, D[size]) for ``0 <= index < size``.

    Inner part: levels below where the paths of ``index`` and ``size - 1``
    join; border part: the right children among the levels above.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Return the root that ``proof`` gives leaf ``index`` of a ``size``-leaf tree.

    Preconditions (checked, :class:`MalformedProof`): ``0 <= index < size``;
    ``leaf_hash`` and every proof element are 32 bytes; ``len(proof)`` is the
    exact audit path length for ``(index, size)``.
    The result proves nothing until compared with a trusted root; prefer
    :func:`verify_inclusion`.
    """
    if not 0 <= index < size:
        raise MalformedProof(f"leaf index {index} is not below tree size {size}", index=index, size=size)
    _check_hash("leaf hash", leaf_hash)
    _check_proof_hashes(proof)
    want = _inclusion_length(index, size)
    if len(proof) != want:
        raise MalformedProof(
            f"inclusion proof for leaf {index} of {size} has {len(proof)} hashes, want {want}",
            index=index, size=size, length=len(proof),
        )
    # RFC 9162 2.1.3.2, steps 2-5.
    fn = index
    sn = size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise MalformedProof("inclusion proof is too long", index=index, size=size)
        if fn & 1 or fn == sn:
            r = _sha256(NODE_PREFIX + p + r).digest()
            # A left child on the right border has no sibling at the levels
            # where it is promoted; skip them.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MalformedProof("inclusion proof is too short", index=index, size=size)
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the ``size``-leaf tree with ``root``.

    ``leaf_hash`` is the RFC 6962 leaf hash (``hasher.leaf_hash(entry)``), not
    the entry. Returns ``None`` on success; raises :class:`MalformedProof` or
    :class:`RootMismatch` (both :class:`InvalidProof`) otherwise.
    """
    _check_hash("root", root)
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise RootMismatch(
            f"inclusion proof for leaf {index} of {size} leads to root {computed.hex()}, not {root.hex()}",
            index=index, size=size,
        )


def _consistency_length(size1: int, size2: int) -> int:
    """Exact length of PROOF(size1, D[size2]) for ``0 < size1 < size2``."""
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    length = _inclusion_length((size1 - 1) >> shift, ((size2 - 1) >> shift) + 1)
    # The old tree's last perfect subtree is sent unless it is the old root.
    return length if size1 == 1 << shift else length + 1


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check that the ``size1`` tree with ``root1`` is a prefix of the ``size2`` tree with ``root2``.

    Preconditions (checked, :class:`MalformedProof`): ``0 <= size1 <= size2``;
    roots and proof elements are 32 bytes; exact proof length.
    Trivial cases, which RFC 9162 leaves undefined, need an empty proof:
    ``size1 == size2`` requires ``root1 == root2``; ``size1 == 0`` requires
    ``root1 == EMPTY_ROOT`` (the empty tree is a prefix of every tree).
    Returns ``None`` on success; raises :class:`InvalidProof` subclasses.
    """
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    _check_proof_hashes(proof)
    if not 0 <= size1 <= size2:
        raise MalformedProof(
            f"consistency needs 0 <= size1 <= size2, got size1={size1} size2={size2}", size1=size1, size2=size2
        )
    if size1 == size2 or size1 == 0:
        if proof:
            raise MalformedProof(
                f"consistency proof {size1} -> {size2} must be empty, has {len(proof)} hashes",
                size1=size1, size2=size2, length=len(proof),
            )
        expected = root2 if size1 == size2 else EMPTY_ROOT
        if root1 != expected:
            raise RootMismatch(f"root1 {root1.hex()} is not the root of a {size1}-leaf tree here", size1=size1)
        return
    want = _consistency_length(size1, size2)
    if len(proof) != want:
        raise MalformedProof(
            f"consistency proof {size1} -> {size2} has {len(proof)} hashes, want {want}",
            size1=size1, size2=size2, length=len(proof),
        )
    # RFC 9162 2.1.4.2, steps 2-7.
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn = size1 - 1
    sn = size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MalformedProof("consistency proof is too long", size1=size1, size2=size2)
        if fn & 1 or fn == sn:
            fr = _sha256(NODE_PREFIX + c + fr).digest()
            sr = _sha256(NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MalformedProof("consistency proof is too short", size1=size1, size2=size2)
    if fr != root1:
        raise RootMismatch(
            f"consistency proof {size1} -> {size2} does not lead to root1 {root1.hex()}", size1=size1, size2=size2
        )
    if sr != root2:
        raise RootMismatch(
            f"consistency proof {size1} -> {size2} does not lead to root2 {root2.hex()}", size1=size1, size2=size2
        )
