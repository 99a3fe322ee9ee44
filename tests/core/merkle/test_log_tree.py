"""The log tree: hashing, stored nodes, roots, append vs append_many."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode.core.merkle import hasher, log_tree, reference
from didnode.errors import InvalidArgument, StoreCorrupted
from tests.core.merkle.rfc6962_data import LEAF_INPUTS, NODE_HASHES, ROOT_HASHES


def _entries(n: int, salt: bytes = b"") -> list[bytes]:
    # Varying lengths so entries are not all one size.
    return [salt + i.to_bytes(4, "big")[: 1 + i % 4] + bytes(i % 7) for i in range(n)]


def _tree(entries: list[bytes]) -> log_tree.MemoryNodeStore:
    store = log_tree.MemoryNodeStore()
    log_tree.append_many(store, 0, [hasher.leaf_hash(e) for e in entries])
    return store


def test_hasher_known_answers() -> None:
    assert hasher.EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOT_HASHES[0]
    assert [hasher.leaf_hash(d) for d in LEAF_INPUTS] == NODE_HASHES[0]
    assert hasher.node_hash(NODE_HASHES[0][0], NODE_HASHES[0][1]) == NODE_HASHES[1][0]
    # Domain separation: a leaf over (l || r) is not the node over (l, r).
    l, r = NODE_HASHES[0][0], NODE_HASHES[0][1]
    assert hasher.leaf_hash(l + r) != hasher.node_hash(l, r)


def test_rfc6962_roots_and_stored_nodes() -> None:
    store = log_tree.MemoryNodeStore()
    for i, d in enumerate(LEAF_INPUTS):
        log_tree.append(store, i, hasher.leaf_hash(d))
    assert [log_tree.root(store, n) for n in range(9)] == ROOT_HASHES
    # Exactly the perfect subtrees are stored, with the published hashes.
    expected = {(level, i): h for level, row in enumerate(NODE_HASHES) for i, h in enumerate(row)}
    assert store.nodes == expected


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 1023, 1024, 1025])
def test_root_matches_reference(size: int) -> None:
    entries = _entries(size)
    store = _tree(entries)
    assert log_tree.root(store, size) == reference.mth(entries)
    # Only perfect subtrees: one per (level, index) with (index+1) << level <= size.
    assert len(store) == sum(size >> level for level in range(max(size.bit_length(), 1)))


def test_every_prefix_root_from_one_store() -> None:
    entries = _entries(70)
    store = _tree(entries)
    for n in range(71):
        assert log_tree.root(store, n) == reference.mth(entries[:n])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=12), st.binary(max_size=4))
def test_append_many_in_any_batches_equals_single_appends(batches: list[int], salt: bytes) -> None:
    total = sum(batches)
    entries = _entries(total, salt)
    leaves = [hasher.leaf_hash(e) for e in entries]
    one = log_tree.MemoryNodeStore()
    for i, leaf in enumerate(leaves):
        log_tree.append(one, i, leaf)
    many = log_tree.MemoryNodeStore()
    size = 0
    for b in batches:
        new_root = log_tree.append_many(many, size, leaves[size : size + b])
        size += b
        assert new_root == log_tree.root(one, size)
    assert many.nodes == one.nodes
    assert log_tree.root(many, total) == reference.mth(entries)


def test_append_many_empty_batch_returns_current_root() -> None:
    store = _tree(_entries(5))
    assert log_tree.append_many(store, 5, []) == log_tree.root(store, 5)
    assert log_tree.append_many(log_tree.MemoryNodeStore(), 0, []) == hasher.EMPTY_ROOT


def test_bad_inputs_raise_didnode_errors() -> None:
    store = log_tree.MemoryNodeStore()
    with pytest.raises(InvalidArgument):
        log_tree.append(store, 0, b"short")
    with pytest.raises(InvalidArgument):
        log_tree.append(store, -1, bytes(32))
    with pytest.raises(InvalidArgument):
        log_tree.append_many(store, 0, [bytes(32), bytes(31)])
    with pytest.raises(InvalidArgument):
        log_tree.root(store, -1)


def test_missing_node_is_store_corruption() -> None:
    store = _tree(_entries(6))
    with pytest.raises(StoreCorrupted):
        log_tree.root(store, 7)  # the caller claims more leaves than stored
    with pytest.raises(StoreCorrupted):
        log_tree.append(store, 7, bytes(32))  # index 7 needs leaf 6 as a sibling
    del store.nodes[(1, 2)]
    with pytest.raises(StoreCorrupted):
        log_tree.root(store, 6)
