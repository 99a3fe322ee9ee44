"""The state tree: a sparse Merkle tree (authenticated map) over 256-bit keys.

Definition (enough to reimplement the root and the proofs)
----------------------------------------------------------
* A **key** is 32 bytes; for the state tree it is ``SHA-256(utf8(DID))``
  (:func:`key_for_did`). A **value** is 32 bytes: the hash of the DID's
  current state (defined by the state code, not here).
* Key bit ``i`` (``0 <= i < 256``) is ``(key[i // 8] >> (7 - i % 8)) & 1``,
  most significant bit first; 0 goes left, 1 goes right. The node at depth
  ``d`` on a key's path covers every key sharing its first ``d`` bits.
* The hash of the subtree holding the set ``S`` of (key, value) entries is:

  - ``S`` empty: ``EMPTY`` = 32 zero bytes, at every height;
  - ``S`` holds exactly one entry ``(k, v)``: ``SHA-256(0x00 || k || v)``
    (``hasher.leaf_hash(k + v)``), at whatever depth that subtree is;
  - ``S`` holds two or more: ``SHA-256(0x01 || H(left) || H(right))``
    (``hasher.node_hash``), where left/right split ``S`` on the next key bit.

  The root is the hash of the whole map (``EMPTY`` for the empty map).

This is the "shortcut" (compressed) sparse Merkle tree of Diem/Libra's
``SparseMerkleTree``: a one-entry subtree is represented by its leaf at the
highest depth where it is alone, so an update costs about ``log2(n)`` hashes
(about 18 for 200k keys) instead of 256. The root depends only on the set of
entries, never on the order of updates. Binding the full key into the leaf
hash is what makes the shortcut sound: a leaf hash cannot stand for another
position, and the 0x00/0x01 prefixes keep leaves and interior nodes apart
(a zero hash has no known preimage, so ``EMPTY`` cannot be forged either).

Storage
-------
Only non-empty nodes are stored, through :class:`SparseStore` (get / put /
delete over opaque byte ids), one record per node:

* node id (2 to 34 bytes): ``the key's first `depth` bits, left-aligned in
  ceil(depth / 8) bytes (the rest of the last byte zero) || u16 depth``,
  big-endian; the root's id is two zero bytes. Ids of the nodes below a node
  start with that node's prefix bytes, so the nodes on one key's path below
  the levels a batch shares sit near each other in LMDB: an update dirties a
  few neighbouring pages instead of one random page per level. Keeping only
  the bytes the depth needs (about 5 instead of 34 at a million keys) makes
  the table about a quarter smaller;
* record (65 bytes): the node's hash preimage -- ``0x00 || key || value`` for a
  leaf, ``0x01 || left hash || right hash`` for an interior node -- so that a
  node's hash is ``SHA-256(record)`` and walking down needs one read per
  level (the sibling's hash is already in the parent's record).

Proofs are :class:`~didnode.core.merkle.encoding.SparseProof` (bitmap of the
non-empty siblings, the siblings, and for absence at another key's leaf that
leaf's key and value). They are verified by ``sparse_verify.py``, which
depends on nothing in this module.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from typing import Final, Iterable, Protocol

from didnode.core.merkle.encoding import SparseProof
from didnode.core.merkle.hasher import HASH_SIZE
from didnode.errors import InvalidArgument, StoreCorrupted, UnknownDid

_sha256 = hashlib.sha256

EMPTY: Final = bytes(HASH_SIZE)
"""Hash of an empty subtree at any height (and the root of the empty map)."""

KEY_BITS: Final = 256
_LEAF: Final = 0
_NODE: Final = 1
_ROOT_ID: Final = bytes(2)


class SparseStore(Protocol):
    """Where the records of one sparse tree live (see module docstring)."""

    def get(self, node_id: bytes) -> bytes:
        """Return the record for ``node_id``; raise ``KeyError`` if absent."""
        ...

    def put(self, node_id: bytes, record: bytes) -> None:
        """Create or replace the record for ``node_id``."""
        ...

    def delete(self, node_id: bytes) -> None:
        """Remove the record for ``node_id`` (it exists when this is called)."""
        ...


class MemorySparseStore:
    """A dict-backed :class:`SparseStore` for tests, tools and benchmarks."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}

    def get(self, node_id: bytes) -> bytes:
        """Return the record; ``KeyError`` if absent."""
        return self.records[node_id]

    def put(self, node_id: bytes, record: bytes) -> None:
        """Create or replace a record."""
        self.records[node_id] = record

    def delete(self, node_id: bytes) -> None:
        """Remove a record."""
        del self.records[node_id]

    def __len__(self) -> int:
        return len(self.records)


def key_for_did(did: str) -> bytes:
    """The state-tree key of a DID: ``SHA-256`` of its UTF-8 bytes.

    Precondition: ``did`` is the DID string exactly as the ledger stores it
    (no normalization happens here).
    """
    return _sha256(did.encode("utf-8")).digest()


def node_id(depth: int, key: bytes) -> bytes:
    """Store id of the node at ``depth`` (0..256) on ``key``'s path."""
    return _id(depth, int.from_bytes(key, "big"))


def prefix_id(depth: int, prefix: int) -> bytes:
    """Store id of the node at ``depth`` whose path is the ``depth``-bit integer ``prefix``."""
    n = (depth + 7) >> 3
    return ((prefix << ((n << 3) - depth + 16)) | depth).to_bytes(n + 2, "big")


def _check_entry(key: bytes, value: bytes | None = None) -> None:
    if len(key) != HASH_SIZE:
        raise InvalidArgument(f"sparse tree key is {len(key)} bytes, want {HASH_SIZE}", length=len(key))
    if value is not None and len(value) != HASH_SIZE:
        raise InvalidArgument(f"sparse tree value is {len(value)} bytes, want {HASH_SIZE}", length=len(value))


def _get_child(store: SparseStore, nid: bytes) -> bytes:
    # Called only where the parent's record says the child is non-empty.
    try:
        return store.get(nid)
    except KeyError:
        raise StoreCorrupted(f"sparse tree node {nid.hex()} is missing", node=nid.hex()) from None


def root(store: SparseStore) -> bytes:
    """Return the root hash of the map (``EMPTY`` if it holds nothing)."""
    try:
        return _sha256(store.get(_ROOT_ID)).digest()
    except KeyError:
        return EMPTY


def _walk(store: SparseStore, k: int) -> tuple[list[bytes], bytes | None]:
    """Interior records on ``k``'s path from the root, and the record where it ends.

    The path ends at depth ``len(interiors)`` at a leaf record (any key) or at
    an empty subtree (``None``).
    """
    get = store.get
    interiors: list[bytes] = []
    try:
        rec: bytes | None = get(_ROOT_ID)
    except KeyError:
        return interiors, None
    depth = 0
    while rec is not None and rec[0] == _NODE:
        interiors.append(rec)
        child = rec[33:] if (k >> (255 - depth)) & 1 else rec[1:33]
        depth += 1
        if child == EMPTY:
            rec = None
        else:
            rec = _get_child(store, _id(depth, k))
    return interiors, rec


def update(store: SparseStore, key: bytes, value: bytes) -> None:
    """Insert ``key -> value`` or replace the key's value.

    Preconditions: ``key`` and ``value`` are 32 bytes (else
    :class:`InvalidArgument`); the store holds a well-formed tree.
    Costs one read per level of the key's path, then one hash and one write
    per level back up (plus the levels a displaced leaf moves down). Writing
    the value a key already has writes nothing.
    """
    _check_entry(key, value)
    k = int.from_bytes(key, "big")
    interiors, rec = _walk(store, k)
    put = store.put
    sha = _sha256
    j = len(interiors)
    leaf = b"\x00" + key + value
    if rec is None or rec[1:33] == key:
        if rec == leaf:
            return
        put(_id(j, k), leaf)
        h = sha(leaf).digest()
    else:
        # The path ends at another key's leaf: both leaves move down to the
        # first depth where the keys differ; the nodes in between get one
        # empty child each (they hold two entries, so cannot be shortcut).
        k2 = int.from_bytes(rec[1:33], "big")
        c = KEY_BITS - (k ^ k2).bit_length()  # common prefix length, >= j
        d = c + 1
        put(_id(d, k), leaf)
        put(_id(d, k2), rec)
        mine = sha(leaf).digest()
        theirs = sha(rec).digest()
        node = b"\x01" + (theirs + mine if (k >> (255 - c)) & 1 else mine + theirs)
        put(_id(c, k), node)
        h = sha(node).digest()
        for depth in range(c - 1, j - 1, -1):
            node = b"\x01" + EMPTY + h if (k >> (255 - depth)) & 1 else b"\x01" + h + EMPTY
            put(_id(depth, k), node)
            h = sha(node).digest()
    _rehash_up(store, k, interiors, j, h)


def _rehash_up(store: SparseStore, k: int, interiors: list[bytes], j: int, h: bytes) -> None:
    """Write new interior records from depth ``j - 1`` up to the root.

    ``h`` is the new hash of the node at depth ``j`` on ``k``'s path;
    ``interiors[d]`` is the old record at depth ``d``.
    """
    put = store.put
    sha = _sha256
    for depth in range(j - 1, -1, -1):
        old = interiors[depth]
        node = old[:33] + h if (k >> (255 - depth)) & 1 else b"\x01" + h + old[33:]
        put(_id(depth, k), node)
        h = sha(node).digest()


def remove(store: SparseStore, key: bytes) -> None:
    """Delete ``key`` from the map.

    Preconditions: ``key`` is 32 bytes and present (else
    :class:`InvalidArgument` / :class:`UnknownDid`). If the removal leaves a
    single entry in some subtree, that entry's leaf moves up to the highest
    depth where it is alone, so the tree stays the one :func:`update` would
    have built without the key (the root depends on the entry set only).
    """
    _check_entry(key)
    k = int.from_bytes(key, "big")
    interiors, rec = _walk(store, k)
    if rec is None or rec[1:33] != key:
        raise UnknownDid(f"state tree holds no key {key.hex()}", key=key.hex())
    d = len(interiors)
    delete = store.delete
    delete(_id(d, k))
    if d == 0:
        return
    j = d - 1
    parent = interiors[j]
    right = (k >> (255 - j)) & 1
    sib_hash = parent[1:33] if right else parent[33:]
    sib_id = prefix_id(d, (k >> (256 - d)) ^ 1)
    sib = _get_child(store, sib_id)
    if sib[0] == _LEAF:
        # The parent now holds one entry: it becomes that leaf, and so does
        # every ancestor whose other child is empty.
        delete(sib_id)
        while j > 0:
            up = interiors[j - 1]
            other = up[1:33] if (k >> (256 - j)) & 1 else up[33:]
            if other != EMPTY:
                break
            delete(_id(j, k))
            j -= 1
        store.put(_id(j, k), sib)
        h = _sha256(sib).digest()
    else:
        node = b"\x01" + (sib_hash + EMPTY if right else EMPTY + sib_hash)
        store.put(_id(j, k), node)
        h = _sha256(node).digest()
    _rehash_up(store, k, interiors, j, h)


def update_many(store: SparseStore, items: Iterable[tuple[bytes, bytes]]) -> None:
    """Insert or replace many ``(key, value)`` pairs at once.

    Same result as calling :func:`update` for each pair in order (a key given
    twice keeps its last value), but every node is read, hashed and written at
    most once for the whole batch, so upper levels shared by many keys are
    hashed once instead of once per key.
    Preconditions: every key and value is 32 bytes (checked before any write).
    """
    latest: dict[bytes, bytes] = {}
    for key, value in items:
        _check_entry(key, value)
        latest[key] = value
    if not latest:
        return
    entries = sorted(latest.items())
    ints = [int.from_bytes(key, "big") for key, _ in entries]
    try:
        rec: bytes | None = store.get(_ROOT_ID)
    except KeyError:
        rec = None
    _apply(store, 0, rec, entries, ints, 0, len(entries))


def _split(ints: list[int], depth: int, lo: int, hi: int) -> int:
    """First position in ``ints[lo:hi]`` whose bit ``depth`` is 1.

    Precondition: ``ints[lo:hi]`` is sorted and shares its first ``depth`` bits.
    """
    threshold = (((ints[lo] >> (256 - depth)) << 1) | 1) << (255 - depth)
    return bisect_left(ints, threshold, lo, hi)


def _apply(
    store: SparseStore,
    depth: int,
    rec: bytes | None,
    entries: list[tuple[bytes, bytes]],
    ints: list[int],
    lo: int,
    hi: int,
) -> bytes:
    """Apply ``entries[lo:hi]`` (non-empty, sorted) below the node at ``depth``
    whose current record is ``rec``; write the new records; return its hash."""
    if rec is None:
        return _build(store, depth, entries, ints, lo, hi)
    if hi - lo == 1:
        return _apply_one(store, depth, rec, entries[lo], ints[lo])
    if rec[0] == _LEAF:
        old_key = rec[1:33]
        old_int = int.from_bytes(old_key, "big")
        pos = bisect_left(ints, old_int, lo, hi)
        if pos < hi and ints[pos] == old_int:
            if hi - lo == 1 and entries[lo][1] == rec[33:]:
                return _sha256(rec).digest()  # unchanged
            return _build(store, depth, entries, ints, lo, hi)
        # The existing entry is not overwritten: rebuild this subtree with it.
        merged = entries[lo:pos] + [(old_key, rec[33:])] + entries[pos:hi]
        merged_ints = ints[lo:pos] + [old_int] + ints[pos:hi]
        return _build(store, depth, merged, merged_ints, 0, len(merged))
    mid = _split(ints, depth, lo, hi)
    left = rec[1:33]
    right = rec[33:]
    child_depth = depth + 1
    if lo < mid:
        child = None if left == EMPTY else _get_child(store, _id(child_depth, ints[lo]))
        left = _apply(store, child_depth, child, entries, ints, lo, mid)
    if mid < hi:
        child = None if right == EMPTY else _get_child(store, _id(child_depth, ints[mid]))
        right = _apply(store, child_depth, child, entries, ints, mid, hi)
    node = b"\x01" + left + right
    if node != rec:  # nothing changed below: leave the record alone
        store.put(_id(depth, ints[lo]), node)
    return _sha256(node).digest()


def _apply_one(store: SparseStore, depth: int, rec: bytes, entry: tuple[bytes, bytes], k: int) -> bytes:
    """:func:`_apply` for a single entry, iteratively (the common case below
    the levels a batch shares): walk down, replace or split the leaf found,
    rehash up. Same records and hash as the recursive path."""
    # Each step keeps the id it computed, so the rehash below does not compute it again.
    path: list[tuple[bytes, bytes, int]] = []
    get = store.get
    nid = _id(depth, k)
    while rec[0] != _LEAF:
        bit = (k >> (255 - depth)) & 1
        child = rec[33:] if bit else rec[1:33]
        path.append((nid, rec, bit))
        depth += 1
        nid = _id(depth, k)
        if child == EMPTY:
            break
        try:
            rec = get(nid)
        except KeyError:
            raise StoreCorrupted(f"sparse tree node {nid.hex()} is missing", node=nid.hex()) from None
    else:
        key, value = entry
        old_key = rec[1:33]
        if old_key == key:
            if rec[33:] == value:
                h = _sha256(rec).digest()
            else:
                leaf = b"\x00" + key + value
                store.put(nid, leaf)
                h = _sha256(leaf).digest()
        else:
            old_int = int.from_bytes(old_key, "big")
            pair = [entry, (old_key, rec[33:])] if k < old_int else [(old_key, rec[33:]), entry]
            h = _build(store, depth, pair, sorted((k, old_int)), 0, 2)
        return _rehash(store, path, h)
    key, value = entry
    leaf = b"\x00" + key + value
    store.put(nid, leaf)
    return _rehash(store, path, _sha256(leaf).digest())


def _rehash(store: SparseStore, path: list[tuple[bytes, bytes, int]], h: bytes) -> bytes:
    """Rewrite the interior records on ``path`` (id, old record, side taken) bottom-up with the new child hash ``h``."""
    put = store.put
    for nid, rec, bit in reversed(path):
        node = rec[:33] + h if bit else b"\x01" + h + rec[33:]
        if node != rec:
            put(nid, node)
        h = _sha256(node).digest()
    return h


def _build(
    store: SparseStore, depth: int, entries: list[tuple[bytes, bytes]], ints: list[int], lo: int, hi: int
) -> bytes:
    """Write a fresh subtree at ``depth`` for ``entries[lo:hi]`` (non-empty,
    sorted, distinct keys); return its hash. Only the node at ``depth`` may
    have an old record (a leaf being displaced); it is overwritten."""
    if hi - lo == 1:
        key, value = entries[lo]
        leaf = b"\x00" + key + value
        store.put(_id(depth, ints[lo]), leaf)
        return _sha256(leaf).digest()
    mid = _split(ints, depth, lo, hi)
    left = _build(store, depth + 1, entries, ints, lo, mid) if lo < mid else EMPTY
    right = _build(store, depth + 1, entries, ints, mid, hi) if mid < hi else EMPTY
    node = b"\x01" + left + right
    store.put(_id(depth, ints[lo]), node)
    return _sha256(node).digest()


def _id(depth: int, k: int) -> bytes:
    n = (depth + 7) >> 3
    return (((k >> (256 - depth)) << ((n << 3) - depth + 16)) | depth).to_bytes(n + 2, "big")


def prove(store: SparseStore, key: bytes) -> SparseProof:
    """Return the proof for ``key``'s path: presence if the key is in the map,
    absence otherwise (which one is for the caller to claim and the verifier
    to check: ``sparse_verify.verify_present`` / ``verify_absent``).

    Precondition: ``key`` is 32 bytes. Costs one read per level.
    """
    _check_entry(key)
    k = int.from_bytes(key, "big")
    interiors, rec = _walk(store, k)
    bitmap = 0
    siblings: list[bytes] = []
    for depth, node in enumerate(interiors):
        sib = node[1:33] if (k >> (255 - depth)) & 1 else node[33:]
        if sib != EMPTY:
            bitmap |= 1 << (255 - depth)
            siblings.append(sib)
    other = None
    if rec is not None and rec[1:33] != key:
        other = (rec[1:33], rec[33:])
    return SparseProof(bitmap.to_bytes(32, "big"), tuple(siblings), other)
