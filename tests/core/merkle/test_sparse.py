"""The sparse state tree: against the reference, order independence, proofs."""

from __future__ import annotations

import hashlib
import random
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode.core.merkle import reference, sparse, sparse_verify
from didnode.core.merkle.encoding import SparseProof, parse_sparse_proof, serialize_sparse_proof
from didnode.errors import InvalidArgument, InvalidProof, MalformedProof, StoreCorrupted, UnknownDid


def _flip_bit(key: bytes, i: int) -> bytes:
    b = bytearray(key)
    b[i // 8] ^= 0x80 >> (i % 8)
    return bytes(b)


def _pool(seed: int) -> list[bytes]:
    """Random keys plus near neighbours, so paths share long prefixes
    (down to leaves at depth 256 for keys differing only in the last bit)."""
    rnd = random.Random(seed)
    base = [rnd.randbytes(32) for _ in range(6)]
    return base + [_flip_bit(base[0], 255), _flip_bit(base[0], 254), _flip_bit(base[1], 100), _flip_bit(base[2], 0),
                   _flip_bit(_flip_bit(base[0], 255), 130)]


def _value(n: int) -> bytes:
    return hashlib.sha256(b"state %d" % n).digest()


def _check_all_proofs(store: sparse.MemorySparseStore, state: dict[bytes, bytes], probes: list[bytes]) -> None:
    root = sparse.root(store)
    assert root == reference.sparse_root(state)
    for key in {*state, *probes}:
        proof = sparse.prove(store, key)
        bitmap, siblings, other = reference.sparse_proof(state, key)
        assert (proof.bitmap, list(proof.siblings), proof.other) == (bitmap, siblings, other)
        assert parse_sparse_proof(serialize_sparse_proof(proof)) == proof
        if key in state:
            sparse_verify.verify_present(root, key, state[key], proof)
            with pytest.raises(InvalidProof):
                sparse_verify.verify_absent(root, key, proof)
            with pytest.raises(InvalidProof):
                sparse_verify.verify_present(root, key, _flip_bit(state[key], 7), proof)
        else:
            sparse_verify.verify_absent(root, key, proof)
            with pytest.raises(InvalidProof):
                sparse_verify.verify_present(root, key, _value(0), proof)


ops = st.lists(
    st.tuples(st.sampled_from(["set", "set", "set", "remove", "batch"]), st.integers(0, 10), st.integers(0, 5)),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), ops)
def test_random_operations_match_reference(seed: int, operations: list[tuple[str, int, int]]) -> None:
    pool = _pool(seed)
    store = sparse.MemorySparseStore()
    state: dict[bytes, bytes] = {}
    for op, ki, vi in operations:
        key = pool[ki]
        if op == "set":
            sparse.update(store, key, _value(vi))
            state[key] = _value(vi)
        elif op == "batch":
            items = [(pool[(ki + j) % len(pool)], _value(vi + j)) for j in range(vi + 1)]
            sparse.update_many(store, items)
            state.update(items)
        elif key in state:
            sparse.remove(store, key)
            del state[key]
        else:
            with pytest.raises(UnknownDid):
                sparse.remove(store, key)
        assert sparse.root(store) == reference.sparse_root(state)
    _check_all_proofs(store, state, pool)
    # The stored records are a function of the entry set alone: a fresh batch
    # build of the final state writes exactly the same records.
    fresh = sparse.MemorySparseStore()
    sparse.update_many(fresh, state.items())
    assert fresh.records == store.records


@pytest.mark.parametrize("seed", range(3))
def test_root_independent_of_insertion_order(seed: int) -> None:
    rnd = random.Random(seed)
    entries = {sparse.key_for_did(f"did:dnode:order{seed}-{i}"): _value(i) for i in range(300)}
    entries.update({k: _value(7) for k in _pool(seed)})
    items = list(entries.items())
    stores = []
    for _ in range(3):
        rnd.shuffle(items)
        store = sparse.MemorySparseStore()
        for key, value in items:
            sparse.update(store, key, value)
        stores.append(store)
    batched = sparse.MemorySparseStore()
    for start in range(0, len(items), 37):
        sparse.update_many(batched, items[start : start + 37])
    stores.append(batched)
    assert all(s.records == stores[0].records for s in stores)
    assert sparse.root(stores[0]) == reference.sparse_root(entries)


def test_batch_on_existing_tree_equals_single_updates() -> None:
    rnd = random.Random(5)
    keys = [rnd.randbytes(32) for _ in range(400)] + _pool(5)
    single = sparse.MemorySparseStore()
    batch = sparse.MemorySparseStore()
    for round_ in range(4):
        items = [(rnd.choice(keys), _value(round_ * 1000 + j)) for j in range(150)]
        for key, value in items:
            sparse.update(single, key, value)
        sparse.update_many(batch, items)
        assert batch.records == single.records


def test_update_many_keeps_last_value_and_validates_first() -> None:
    store = sparse.MemorySparseStore()
    k = bytes(32)
    sparse.update_many(store, [(k, _value(1)), (k, _value(2))])
    assert sparse.root(store) == reference.sparse_root({k: _value(2)})
    before = dict(store.records)
    with pytest.raises(InvalidArgument):
        sparse.update_many(store, [(_value(9), _value(3)), (k, b"short")])
    assert store.records == before  # nothing written


def test_empty_single_and_deepest_trees() -> None:
    store = sparse.MemorySparseStore()
    key = _value(100)
    assert sparse.root(store) == sparse.EMPTY == sparse_verify.EMPTY == bytes(32)
    proof = sparse.prove(store, key)
    assert proof == SparseProof(bytes(32), (), None)
    sparse_verify.verify_absent(sparse.root(store), key, proof)

    sparse.update(store, key, _value(1))
    assert sparse.root(store) == hashlib.sha256(b"\x00" + key + _value(1)).digest()
    sparse_verify.verify_present(sparse.root(store), key, _value(1), sparse.prove(store, key))
    other = _flip_bit(key, 0)
    proof = sparse.prove(store, other)
    assert proof.other == (key, _value(1)) and not any(proof.bitmap)
    sparse_verify.verify_absent(sparse.root(store), other, proof)

    # Two keys that differ only in bit 255 sit at depth 256.
    twin = _flip_bit(key, 255)
    sparse.update(store, twin, _value(2))
    proof = sparse.prove(store, twin)
    assert int.from_bytes(proof.bitmap, "big") == 1 and len(proof.siblings) == 1
    sparse_verify.verify_present(sparse.root(store), twin, _value(2), proof)
    _check_all_proofs(store, {key: _value(1), twin: _value(2)}, [other, _flip_bit(key, 254)])
    sparse.remove(store, twin)
    assert store.records == {bytes(2): b"\x00" + key + _value(1)}  # the root id
    sparse.remove(store, key)
    assert store.records == {}


def test_rewriting_the_same_value_writes_nothing() -> None:
    class CountingStore(sparse.MemorySparseStore):
        puts = 0

        def put(self, node_id: bytes, record: bytes) -> None:
            CountingStore.puts += 1
            super().put(node_id, record)

    store = CountingStore()
    items = [(_value(i), _value(i + 1)) for i in range(20)]
    sparse.update_many(store, items)
    CountingStore.puts = 0
    sparse.update(store, *items[3])
    sparse.update_many(store, items[5:9])
    assert CountingStore.puts == 0


def _mutations(proof: SparseProof) -> list[tuple[str, SparseProof]]:
    bits = int.from_bytes(proof.bitmap, "big")
    out = []
    for i in range(len(proof.siblings)):
        sibs = list(proof.siblings)
        sibs[i] = _flip_bit(sibs[i], 3)
        out.append((f"sibling {i} flipped", SparseProof(proof.bitmap, tuple(sibs), proof.other)))
    if proof.siblings:
        out.append(("last sibling dropped", SparseProof(proof.bitmap, proof.siblings[:-1], proof.other)))
        low = bits & -bits
        out.append(("deepest level dropped",
                    SparseProof((bits ^ low).to_bytes(32, "big"), proof.siblings[:-1], proof.other)))
        out.append(("siblings reversed", SparseProof(proof.bitmap, proof.siblings[::-1], proof.other)))
    depth = 0 if bits == 0 else 256 - ((bits & -bits).bit_length() - 1)
    if depth < 256:
        deeper = bits | (1 << (255 - depth))
        out.append(("extra deeper level", SparseProof(deeper.to_bytes(32, "big"), (*proof.siblings, _value(42)), proof.other)))
    out.append(("extra sibling", SparseProof(proof.bitmap, (*proof.siblings, _value(43)), proof.other)))
    empty_levels = [i for i in range(depth) if not (bits >> (255 - i)) & 1]
    if empty_levels:
        i = empty_levels[0]
        pos = (bits >> (256 - i)).bit_count()
        sibs = list(proof.siblings)
        sibs.insert(pos, bytes(32))
        out.append(("explicit empty sibling",
                    SparseProof((bits | (1 << (255 - i))).to_bytes(32, "big"), tuple(sibs), proof.other)))
    if proof.other is None:
        out.append(("other leaf added", SparseProof(proof.bitmap, proof.siblings, (_value(44), _value(45)))))
    else:
        k, v = proof.other
        out.append(("other leaf dropped", SparseProof(proof.bitmap, proof.siblings, None)))
        out.append(("other value flipped", SparseProof(proof.bitmap, proof.siblings, (k, _flip_bit(v, 0)))))
        out.append(("other key flipped", SparseProof(proof.bitmap, proof.siblings, (_flip_bit(k, 255), v))))
    return out


def test_every_proof_mutation_fails() -> None:
    state = {sparse.key_for_did(f"did:dnode:m{i}"): _value(i) for i in range(40)}
    store = sparse.MemorySparseStore()
    sparse.update_many(store, state.items())
    root = sparse.root(store)
    absent = [sparse.key_for_did(f"did:dnode:absent{i}") for i in range(40)]
    kinds = set()
    for key in [*list(state)[:15], *absent]:
        proof = sparse.prove(store, key)
        kinds.add("present" if key in state else ("absent-leaf" if proof.other else "absent-empty"))
        for desc, bad in _mutations(proof):
            with pytest.raises(InvalidProof):
                if key in state:
                    sparse_verify.verify_present(root, key, state[key], bad)
                else:
                    sparse_verify.verify_absent(root, key, bad)
                pytest.fail(f"{desc} verified for {key.hex()}")
        with pytest.raises(InvalidProof):
            if key in state:
                sparse_verify.verify_present(_flip_bit(root, 9), key, state[key], proof)
            else:
                sparse_verify.verify_absent(_flip_bit(root, 9), key, proof)
    assert kinds == {"present", "absent-leaf", "absent-empty"}


def test_verifier_shape_checks() -> None:
    store = sparse.MemorySparseStore()
    sparse.update_many(store, [(_value(i), _value(i)) for i in range(8)])
    root = sparse.root(store)
    key = _value(3)
    proof = sparse.prove(store, key)
    calls: list[Callable[[], None]] = [
        lambda: sparse_verify.verify_present(root[:31], key, key, proof),
        lambda: sparse_verify.verify_present(root, key[:31], key, proof),
        lambda: sparse_verify.verify_present(root, key, key[:31], proof),
        lambda: sparse_verify.verify_present(root, key, key, SparseProof(proof.bitmap[:31], proof.siblings)),
        lambda: sparse_verify.verify_present(root, key, key, SparseProof(proof.bitmap, proof.siblings, (key, key))),
    ]
    for call in calls:
        with pytest.raises(MalformedProof):
            call()


def test_store_errors() -> None:
    store = sparse.MemorySparseStore()
    with pytest.raises(InvalidArgument):
        sparse.update(store, b"short", bytes(32))
    with pytest.raises(InvalidArgument):
        sparse.update(store, bytes(32), b"short")
    with pytest.raises(UnknownDid):
        sparse.remove(store, bytes(32))
    sparse.update_many(store, [(_value(i), _value(i)) for i in range(4)])
    # Drop a non-root record: walking into it is reported as corruption.
    victim = next(nid for nid in store.records if nid != bytes(2))
    del store.records[victim]
    with pytest.raises(StoreCorrupted):
        for i in range(4):
            sparse.prove(store, _value(i))


def test_node_id_layout() -> None:
    key = bytes([0b1010_0000]) + bytes(31)
    assert sparse.node_id(0, key) == bytes(2)  # the root: no prefix bytes
    assert sparse.node_id(3, key) == bytes([0b1010_0000]) + (3).to_bytes(2, "big")
    assert sparse.node_id(8, key) == bytes([0b1010_0000]) + (8).to_bytes(2, "big")
    assert sparse.node_id(9, key) == bytes([0b1010_0000, 0]) + (9).to_bytes(2, "big")
    assert sparse.node_id(256, key) == key + (256).to_bytes(2, "big")
    assert sparse.prefix_id(3, 0b101) == sparse.node_id(3, key)
    # Ids are unique: the depth is in the id and fixes how many prefix bytes precede it.
    ids = {sparse.node_id(d, bytes([b]) + bytes(31)) for d in range(0, 17) for b in range(256)}
    assert len(ids) == sum(min(2**d, 256) for d in range(0, 17))
    assert sparse.key_for_did("did:dnode:x") == hashlib.sha256(b"did:dnode:x").digest()
