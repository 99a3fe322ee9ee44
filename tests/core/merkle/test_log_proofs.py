"""Inclusion and consistency proofs: known answers, reference cross-checks, corruptions."""

from __future__ import annotations

import random
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode.core.merkle import hasher, log_tree, proof_build, proof_verify, reference
from didnode.errors import InvalidArgument, InvalidProof, MalformedProof, RootMismatch
from tests.core.merkle.rfc6962_data import CONSISTENCY_PROOFS, INCLUSION_PROOFS, LEAF_INPUTS, ROOT_HASHES

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")

BIG = 3100
BIG_ENTRIES = [b"entry %d" % i for i in range(BIG)]
BIG_STORE = log_tree.MemoryNodeStore()
log_tree.append_many(BIG_STORE, 0, [hasher.leaf_hash(e) for e in BIG_ENTRIES])


@pytest.fixture(scope="module")
def rfc_store() -> log_tree.MemoryNodeStore:
    store = log_tree.MemoryNodeStore()
    log_tree.append_many(store, 0, [hasher.leaf_hash(d) for d in LEAF_INPUTS])
    return store


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION_PROOFS)
def test_known_inclusion_proofs(rfc_store: log_tree.MemoryNodeStore, index: int, size: int, expected: list[bytes]) -> None:
    assert proof_build.inclusion_proof(rfc_store, index, size) == expected
    leaf = hasher.leaf_hash(LEAF_INPUTS[index])
    proof_verify.verify_inclusion(leaf, index, size, expected, ROOT_HASHES[size])
    assert proof_verify.root_from_inclusion_proof(leaf, index, size, expected) == ROOT_HASHES[size]


@pytest.mark.parametrize(("size1", "size2", "expected"), CONSISTENCY_PROOFS)
def test_known_consistency_proofs(
    rfc_store: log_tree.MemoryNodeStore, size1: int, size2: int, expected: list[bytes]
) -> None:
    assert proof_build.consistency_proof(rfc_store, size1, size2) == expected
    proof_verify.verify_consistency(size1, size2, ROOT_HASHES[size1], ROOT_HASHES[size2], expected)


def test_all_proofs_of_small_trees_match_reference() -> None:
    for n in range(1, 65):
        entries = BIG_ENTRIES[:n]
        root = log_tree.root(BIG_STORE, n)
        for m in range(n):
            p = proof_build.inclusion_proof(BIG_STORE, m, n)
            assert p == reference.path(m, entries), (m, n)
            proof_verify.verify_inclusion(hasher.leaf_hash(entries[m]), m, n, p, root)
        for m in range(1, n + 1):
            p = proof_build.consistency_proof(BIG_STORE, m, n)
            assert p == reference.proof(m, entries), (m, n)
            proof_verify.verify_consistency(m, n, log_tree.root(BIG_STORE, m), root, p)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 1023, 1024, 1025])
def test_sampled_proofs_match_reference(size: int) -> None:
    rnd = random.Random(size)
    entries = BIG_ENTRIES[:size]
    root = log_tree.root(BIG_STORE, size)
    indices = {0, size - 1, size // 2, *(rnd.randrange(size) for _ in range(4))}
    for m in indices:
        p = proof_build.inclusion_proof(BIG_STORE, m, size)
        assert p == reference.path(m, entries)
        proof_verify.verify_inclusion(hasher.leaf_hash(entries[m]), m, size, p, root)
    for m in {1, size, max(1, size - 1), *(rnd.randint(1, size) for _ in range(4))}:
        p = proof_build.consistency_proof(BIG_STORE, m, size)
        assert p == reference.proof(m, entries)
        proof_verify.verify_consistency(m, size, log_tree.root(BIG_STORE, m), root, p)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_random_trees_match_reference(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=3000), label="size")
    entries = BIG_ENTRIES[:size]
    root = log_tree.root(BIG_STORE, size)
    assert root == reference.mth(entries)
    m = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    p = proof_build.inclusion_proof(BIG_STORE, m, size)
    assert p == reference.path(m, entries)
    proof_verify.verify_inclusion(hasher.leaf_hash(entries[m]), m, size, p, root)
    m = data.draw(st.integers(min_value=1, max_value=size), label="size1")
    p = proof_build.consistency_proof(BIG_STORE, m, size)
    assert p == reference.proof(m, entries)
    proof_verify.verify_consistency(m, size, log_tree.root(BIG_STORE, m), root, p)


# --- corruption probes, after transparency-dev/merkle's verify_test.go -------


def _flip(h: bytes, bit: int) -> bytes:
    return bytes((h[0] ^ (1 << bit),)) + h[1:]


Probe = tuple[str, int, int, bytes, bytes, list[bytes]]


def _inclusion_probes(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes) -> list[Probe]:
    probes: list[Probe] = [
        ("index - 1", index - 1, size, root, leaf, proof),
        ("index + 1", index + 1, size, root, leaf, proof),
        ("index ^ 2", index ^ 2, size, root, leaf, proof),
        ("size * 2", index, size * 2, root, leaf, proof),
        ("size // 2", index, size // 2, root, leaf, proof),
        ("wrong leaf", index, size, root, hasher.leaf_hash(b"WrongLeaf"), proof),
        ("empty root", index, size, hasher.EMPTY_ROOT, leaf, proof),
        ("random root", index, size, SOME_HASH, leaf, proof),
        ("trailing root", index, size, root, leaf, proof + [root]),
        ("preceding root", index, size, root, leaf, [root] + proof),
        ("trailing garbage", index, size, root, leaf, proof + [b""]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], 3)
        probes.append((f"proof[{i}] bit 3", index, size, root, leaf, bad))
    if proof:
        probes.append(("removed component", index, size, root, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append(("inserted component", index, size, root, leaf, [proof[0], SOME_HASH, *proof[1:]]))
    return probes


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 64, 100])
def test_corrupted_inclusion_proofs_fail(size: int) -> None:
    root = log_tree.root(BIG_STORE, size)
    for index in range(0, size, max(1, size // 9)):
        leaf = hasher.leaf_hash(BIG_ENTRIES[index])
        proof = proof_build.inclusion_proof(BIG_STORE, index, size)
        for desc, i, n, r, lf, p in _inclusion_probes(index, size, proof, root, leaf):
            with pytest.raises(InvalidProof):
                proof_verify.verify_inclusion(lf, i, n, p, r)
                pytest.fail(f"{desc} verified for leaf {index} of {size}")


@pytest.mark.parametrize(("size1", "size2"), [(1, 2), (1, 8), (2, 5), (3, 7), (4, 7), (6, 8), (6, 7), (7, 100), (64, 100), (99, 100)])
def test_corrupted_consistency_proofs_fail(size1: int, size2: int) -> None:
    r1, r2 = log_tree.root(BIG_STORE, size1), log_tree.root(BIG_STORE, size2)
    proof = proof_build.consistency_proof(BIG_STORE, size1, size2)
    probes = [
        ("size1 - 1", size1 - 1, size2, r1, r2, proof),
        ("size1 + 1", size1 + 1, size2, r1, r2, proof),
        ("size1 ^ 2", size1 ^ 2, size2, r1, r2, proof),
        ("size2 * 2", size1, size2 * 2, r1, r2, proof),
        ("size2 // 2", size1, size2 // 2, r1, r2, proof),
        ("wrong root1", size1, size2, SOME_HASH, r2, proof),
        ("wrong root2", size1, size2, r1, SOME_HASH, proof),
        ("swapped roots", size1, size2, r2, r1, proof),
        ("empty proof", size1, size2, r1, r2, []),
        ("trailing root1", size1, size2, r1, r2, proof + [r1]),
        ("trailing root2", size1, size2, r1, r2, proof + [r2]),
        ("preceding root1", size1, size2, r1, r2, [r1] + proof),
        ("preceding root2", size1, size2, r1, r2, [r2] + proof),
        ("preceding proof[0]", size1, size2, r1, r2, [proof[0]] + proof),
        ("truncated", size1, size2, r1, r2, proof[:-1]),
        ("trailing garbage", size1, size2, r1, r2, proof + [b""]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], 4)
        probes.append((f"proof[{i}] bit 4", size1, size2, r1, r2, bad))
    for desc, s1, s2, a, b, p in probes:
        with pytest.raises(InvalidProof):
            proof_verify.verify_consistency(s1, s2, a, b, p)
            pytest.fail(f"{desc} verified for {size1} -> {size2}")


def test_trivial_consistency_cases() -> None:
    r5 = log_tree.root(BIG_STORE, 5)
    proof_verify.verify_consistency(0, 0, hasher.EMPTY_ROOT, hasher.EMPTY_ROOT, [])
    proof_verify.verify_consistency(0, 5, hasher.EMPTY_ROOT, r5, [])
    proof_verify.verify_consistency(5, 5, r5, r5, [])
    cases: list[tuple[type[InvalidProof], Callable[[], None]]] = [
        (RootMismatch, lambda: proof_verify.verify_consistency(5, 5, r5, SOME_HASH, [])),
        (RootMismatch, lambda: proof_verify.verify_consistency(0, 5, SOME_HASH, r5, [])),
        (MalformedProof, lambda: proof_verify.verify_consistency(5, 5, r5, r5, [r5])),
        (MalformedProof, lambda: proof_verify.verify_consistency(0, 5, hasher.EMPTY_ROOT, r5, [r5])),
        (MalformedProof, lambda: proof_verify.verify_consistency(6, 5, r5, r5, [])),
        (MalformedProof, lambda: proof_verify.verify_consistency(-1, 5, r5, r5, [])),
        (MalformedProof, lambda: proof_verify.verify_consistency(5, 5, r5[:31], r5[:31], [])),
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()


def test_single_entry_and_bad_sizes() -> None:
    leaf = hasher.leaf_hash(b"data")
    proof_verify.verify_inclusion(leaf, 0, 1, [], leaf)  # one leaf: root == leaf hash
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)]:
        with pytest.raises(MalformedProof):
            proof_verify.verify_inclusion(leaf, index, size, [], leaf)
    with pytest.raises(MalformedProof):
        proof_verify.verify_inclusion(b"", 0, 1, [], leaf)
    with pytest.raises(MalformedProof):
        proof_verify.verify_inclusion(leaf, 0, 1, [], b"")


def test_size_is_bound_only_together_with_the_root() -> None:
    # Documented limitation (inherent in RFC 9162 verification): when two
    # sizes give the audit path the same shape, a proof checks against either
    # size with the same root. A root never belongs to two sizes (that would
    # need a hash collision), so the signed checkpoint must carry size and
    # root together and verifiers must take both from it.
    proof = proof_build.inclusion_proof(BIG_STORE, 4, 7)
    root7 = log_tree.root(BIG_STORE, 7)
    proof_verify.verify_inclusion(hasher.leaf_hash(BIG_ENTRIES[4]), 4, 8, proof, root7)
    consistency = proof_build.consistency_proof(BIG_STORE, 3, 7)
    proof_verify.verify_consistency(3, 8, log_tree.root(BIG_STORE, 3), root7, consistency)


def test_builder_preconditions() -> None:
    with pytest.raises(InvalidArgument):
        proof_build.inclusion_proof(BIG_STORE, 5, 5)
    with pytest.raises(InvalidArgument):
        proof_build.inclusion_proof(BIG_STORE, -1, 5)
    with pytest.raises(InvalidArgument):
        proof_build.consistency_proof(BIG_STORE, 6, 5)
    assert proof_build.consistency_proof(BIG_STORE, 0, 5) == []
    assert proof_build.consistency_proof(BIG_STORE, 5, 5) == []
