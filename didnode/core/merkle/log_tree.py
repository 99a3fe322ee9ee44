"""The append-only RFC 6962 log tree over an injected node store.

Node addressing
---------------
Only *perfect* (complete) subtrees are ever stored. The node ``(level, index)``
is the root of the perfect subtree over leaves ``[index * 2**level,
(index + 1) * 2**level)``; level 0 holds the leaf hashes themselves. A perfect
node never changes once written, which is what makes the log append-only:
appending leaf ``n`` writes ``(0, n)`` plus one node per trailing 1-bit of
``n`` (the subtrees that leaf completes) and rewrites nothing.

The hash of any other range (the right edge of a tree whose size is not a
power of two) is never stored; it is composed from the O(log n) perfect nodes
that tile it, as RFC 6962's MTH does: for a range of ``m`` leaves starting at
an aligned position, the tiles are the set bits of ``m`` from the highest
down, folded right-to-left with ``node_hash``.

Store contract
--------------
:class:`NodeStore` is a two-method protocol so the LMDB layer can back it with
one named database (key e.g. ``u8 level || u64be index``). ``get`` raises
``KeyError`` for an absent node. A node missing where the caller's ``size``
says it must exist means the store and the size disagree; that is reported as
:class:`~didnode.errors.StoreCorrupted`, never as a bare ``KeyError``.

Nothing here does I/O, reads a clock or keeps state between calls: the tree
size is always passed in by the caller (it lives in the caller's transaction).
"""

from __future__ import annotations

import hashlib
from typing import Protocol, Sequence

from didnode.core.merkle.hasher import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX
from didnode.errors import InvalidArgument, StoreCorrupted

_sha256 = hashlib.sha256


class NodeStore(Protocol):
    """Where perfect-subtree hashes of one log tree live."""

    def get(self, level: int, index: int) -> bytes:
        """Return the hash of node ``(level, index)``; raise ``KeyError`` if absent."""
        ...

    def put(self, level: int, index: int, hash_: bytes) -> None:
        """Store the hash of node ``(level, index)`` (written once, never changed)."""
        ...


class MemoryNodeStore:
    """A dict-backed :class:`NodeStore` for tests, tools and benchmarks."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}

    def get(self, level: int, index: int) -> bytes:
        """Return node ``(level, index)``; ``KeyError`` if absent."""
        return self.nodes[(level, index)]

    def put(self, level: int, index: int, hash_: bytes) -> None:
        """Store node ``(level, index)``."""
        self.nodes[(level, index)] = hash_

    def __len__(self) -> int:
        return len(self.nodes)


def get_node(store: NodeStore, level: int, index: int) -> bytes:
    """Read a node that the caller's tree size says must exist.

    Raises :class:`StoreCorrupted` (not ``KeyError``) when it is absent,
    because then the stored nodes and the recorded size disagree.
    """
    try:
        return store.get(level, index)
    except KeyError:
        raise StoreCorrupted(
            f"log tree node (level={level}, index={index}) is missing", level=level, index=index
        ) from None


def _check_size(size: int) -> None:
    if size < 0:
        raise InvalidArgument(f"tree size {size} is negative", size=size)


def _check_leaf(leaf: bytes) -> None:
    if len(leaf) != HASH_SIZE:
        raise InvalidArgument(f"leaf hash is {len(leaf)} bytes, want {HASH_SIZE}", length=len(leaf))


def append(store: NodeStore, size: int, leaf_hash: bytes) -> None:
    """Append one leaf hash to a tree of ``size`` leaves.

    Preconditions: ``store`` holds exactly the perfect nodes of a tree of
    ``size`` leaves (``size >= 0``); ``leaf_hash`` is 32 bytes (already
    ``leaf_hash(entry)`` -- this function never re-hashes it). The caller
    records the new size ``size + 1``.

    Writes ``(0, size)`` and every perfect node this leaf completes; reads one
    left sibling per completed node. For many leaves use :func:`append_many`,
    which reads nothing after its first O(log n) reads.
    """
    _check_size(size)
    _check_leaf(leaf_hash)
    put = store.put
    put(0, size, leaf_hash)
    h = leaf_hash
    index = size
    level = 0
    # Each trailing 1-bit of the index means this node is a right child whose
    # left sibling is already stored: together they complete the parent.
    while index & 1:
        h = _sha256(NODE_PREFIX + get_node(store, level, index - 1) + h).digest()
        index >>= 1
        level += 1
        put(level, index, h)


def _frontier(store: NodeStore, size: int) -> list[bytes]:
    """Hashes of the perfect subtrees that tile ``[0, size)``, largest first.

    There is one per set bit of ``size`` (the "compact range" of the tree).
    """
    out: list[bytes] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if (size >> level) & 1:
            out.append(get_node(store, level, start >> level))
            start += 1 << level
    return out


def _fold(hashes: list[bytes]) -> bytes:
    """Fold perfect-subtree hashes (largest, leftmost first) into one MTH.

    RFC 6962 splits at the largest power of two below n, so the leftmost
    tile is the left child of the root and the rest hash together first:
    the fold therefore runs right to left.
    """
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = _sha256(NODE_PREFIX + left + h).digest()
    return h


def append_many(store: NodeStore, size: int, leaf_hashes: Sequence[bytes]) -> bytes:
    """Append ``leaf_hashes`` in order to a tree of ``size`` leaves; return the new root.

    Preconditions as for :func:`append` (each leaf hash 32 bytes). The new
    size is ``size + len(leaf_hashes)``; the returned root is the MTH of that
    tree (``EMPTY_ROOT`` if it is empty).

    The frontier (one hash per set bit of ``size``) is read once and then kept
    in a local stack, so each append costs on average one node hash and two
    ``put`` calls and no ``get``. If a leaf hash has the wrong size the leaves
    before it have already been written; the caller's transaction must abort.
    """
    _check_size(size)
    stack = _frontier(store, size)
    put = store.put
    sha = _sha256
    prefix = NODE_PREFIX
    push = stack.append
    pop = stack.pop
    for leaf in leaf_hashes:
        if len(leaf) != HASH_SIZE:
            _check_leaf(leaf)
        put(0, size, leaf)
        h = leaf
        index = size
        level = 0
        # The stack top holds the perfect subtree for the lowest set bit of
        # ``size``; each trailing 1-bit of the index pops one and merges.
        while index & 1:
            h = sha(prefix + pop() + h).digest()
            index >>= 1
            level += 1
            put(level, index, h)
        push(h)
        size += 1
    return _fold(stack)


def range_hash(store: NodeStore, begin: int, end: int) -> bytes:
    """MTH of leaves ``[begin, end)``, composed from stored perfect nodes.

    Precondition: ``0 <= begin < end``, and ``begin`` is a multiple of the
    smallest power of two ``>= end - begin`` (true of every subtree of an
    RFC 6962 tree: such a range is one node of the tree, possibly cut short
    by the tree's right edge). All covered leaves are stored.
    """
    n = end - begin
    tiles: list[bytes] = []
    pos = begin
    for level in range(n.bit_length() - 1, -1, -1):
        if (n >> level) & 1:
            tiles.append(get_node(store, level, pos >> level))
            pos += 1 << level
    return _fold(tiles)


def root(store: NodeStore, size: int) -> bytes:
    """Return the RFC 6962 MTH of the first ``size`` leaves.

    Precondition: ``size >= 0`` and the store holds at least ``size`` leaves.
    Costs ``popcount(size)`` reads and ``popcount(size) - 1`` hashes, so any
    past root (any ``size`` up to the current one) is as cheap as the latest.
    """
    _check_size(size)
    return _fold(_frontier(store, size))
