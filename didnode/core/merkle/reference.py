"""Naive reference implementations, for tests only (slow on purpose).

Each function transcribes a definition, recursively and without any
cleverness, so that the fast code can be cross-checked against it:

* :func:`mth`, :func:`path`, :func:`proof` -- RFC 9162 sections 2.1.1,
  2.1.3.1 and 2.1.4.1 (MTH, PATH, PROOF/SUBPROOF) over the entry list ``D``;
* :func:`sparse_root`, :func:`sparse_proof` -- the sparse state tree exactly
  as defined in the ``sparse`` module docstring, over a plain dict.

Do not call these from production code: MTH of a range is recomputed from the
leaves on every call.
"""

from __future__ import annotations

import hashlib

from didnode.core.merkle.hasher import EMPTY_ROOT, leaf_hash, node_hash


def _k(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1 over the raw entries (not leaf hashes)."""
    n = len(entries)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(entries[0])
    k = _k(n)
    return node_hash(mth(entries[:k]), mth(entries[k:]))


def path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1, for ``0 <= m < n``."""
    n = len(entries)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, entries[:k]) + [mth(entries[k:])]
    return path(m - k, entries[k:]) + [mth(entries[:k])]


def proof(m: int, entries: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 2.1.4.1, ``0 < m <= n``."""
    return _subproof(m, entries, True)


def _subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if b else [mth(entries)]
    k = _k(n)
    if m <= k:
        return _subproof(m, entries[:k], b) + [mth(entries[k:])]
    return _subproof(m - k, entries[k:], False) + [mth(entries[:k])]


SPARSE_EMPTY = bytes(32)


def _bit(key: bytes, i: int) -> int:
    return (key[i // 8] >> (7 - i % 8)) & 1


def sparse_root(entries: dict[bytes, bytes], depth: int = 0) -> bytes:
    """Root of the sparse tree holding ``entries`` (keys sharing ``depth`` bits)."""
    if not entries:
        return SPARSE_EMPTY
    if len(entries) == 1:
        ((key, value),) = entries.items()
        return hashlib.sha256(b"\x00" + key + value).digest()
    left = {k: v for k, v in entries.items() if _bit(k, depth) == 0}
    right = {k: v for k, v in entries.items() if _bit(k, depth) == 1}
    return node_hash(sparse_root(left, depth + 1), sparse_root(right, depth + 1))


def sparse_proof(
    entries: dict[bytes, bytes], key: bytes
) -> tuple[bytes, list[bytes], tuple[bytes, bytes] | None]:
    """(bitmap, siblings root side first, other leaf or None) for ``key``."""
    bitmap = bytearray(32)
    siblings: list[bytes] = []
    depth = 0
    current = entries
    while len(current) >= 2:
        mine = {k: v for k, v in current.items() if _bit(k, depth) == _bit(key, depth)}
        theirs = {k: v for k, v in current.items() if _bit(k, depth) != _bit(key, depth)}
        sib = sparse_root(theirs, depth + 1)
        if sib != SPARSE_EMPTY:
            bitmap[depth // 8] |= 0x80 >> (depth % 8)
            siblings.append(sib)
        current = mine
        depth += 1
    other = None
    if len(current) == 1:
        ((k, v),) = current.items()
        if k != key:
            other = (k, v)
    return bytes(bitmap), siblings, other
