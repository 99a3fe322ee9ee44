"""Generate the proof test vectors in ``vectors/``: one JSON file per mutation.

Run ``python -m tests.core.merkle.make_vectors`` from the repository root to
rewrite the directory; ``test_vectors.py`` checks that the committed files are
exactly what this script produces, and that each one verifies (``"expect":
"ok"``) or fails with the named :class:`~didnode.errors.InvalidProof` subclass.

File schema (all byte strings lowercase hex; proofs in their wire layout from
``didnode.core.merkle.encoding``, so the parsers are exercised too)::

    {"name": <file stem>, "description": ..., "expect": "ok" | "MalformedProof" | "RootMismatch",
     "check": "inclusion",   "input": {"leaf_hash", "index", "size", "proof", "root"}}
     "check": "consistency", "input": {"size1", "size2", "root1", "root2", "proof"}}
     "check": "sparse_present", "input": {"root", "key", "value", "proof"}}
     "check": "sparse_absent",  "input": {"root", "key", "proof"}}

The log vectors use the RFC 6962 test leaves of certificate-transparency /
transparency-dev (``""``, ``00``, ``10``, ... ``606162...6f``), so their
valid cases can be checked against those projects' published roots.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from didnode.core.merkle import log_tree, proof_build, sparse
from didnode.core.merkle.encoding import (
    SparseProof,
    serialize_log_proof,
    serialize_sparse_proof,
)
from didnode.core.merkle.hasher import EMPTY_ROOT, leaf_hash

VECTOR_DIR = Path(__file__).with_name("vectors")

RFC6962_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]


def _flip(h: bytes, bit: int = 3) -> bytes:
    # Flip one bit of the first byte, as the transparency-dev probes do.
    return bytes((h[0] ^ (1 << bit),)) + h[1:]


def _log_vectors() -> dict[str, dict[str, Any]]:
    store = log_tree.MemoryNodeStore()
    log_tree.append_many(store, 0, [leaf_hash(d) for d in RFC6962_LEAVES])
    out: dict[str, dict[str, Any]] = {}

    def incl(name: str, desc: str, expect: str, *, leaf: bytes, index: int, size: int, proof: bytes, root: bytes) -> None:
        out[name] = {
            "check": "inclusion",
            "description": desc,
            "expect": expect,
            "input": {"leaf_hash": leaf.hex(), "index": index, "size": size, "proof": proof.hex(), "root": root.hex()},
        }

    index, size = 4, 7
    leaf = leaf_hash(RFC6962_LEAVES[index])
    p = proof_build.inclusion_proof(store, index, size)
    root = log_tree.root(store, size)
    wire = serialize_log_proof(p)
    ok: dict[str, Any] = dict(leaf=leaf, index=index, size=size, proof=wire, root=root)
    incl("inclusion_valid", "leaf 4 of the 7-leaf RFC 6962 test tree", "ok", **ok)
    incl("inclusion_wrong_leaf", "leaf hash of entry 5 with entry 4's proof", "RootMismatch",
         **{**ok, "leaf": leaf_hash(RFC6962_LEAVES[5])})
    incl("inclusion_leaf_is_raw_entry_hash", "SHA-256(entry) without the 0x00 leaf prefix", "RootMismatch",
         **{**ok, "leaf": hashlib.sha256(RFC6962_LEAVES[index]).digest()})
    incl("inclusion_wrong_index", "index 5 (same proof length) with leaf 4's proof", "RootMismatch",
         **{**ok, "index": 5})
    incl("inclusion_index_minus_one", "index 3 (same proof length) with leaf 4's proof", "RootMismatch",
         **{**ok, "index": 3})
    incl("inclusion_index_beyond_size", "index equal to the tree size", "MalformedProof", **{**ok, "index": size})
    # Note: size 8 would *verify* (its audit path for leaf 4 has the same shape);
    # a proof binds the size only together with the root, which is why both
    # come from one signed checkpoint. test_log_proofs.py pins that down.
    incl("inclusion_wrong_size", "tree size 6 with the size-7 proof", "MalformedProof", **{**ok, "size": 6})
    incl("inclusion_size_doubled", "tree size 14 with the size-7 proof", "MalformedProof", **{**ok, "size": 14})
    incl("inclusion_truncated", "last proof hash removed", "MalformedProof",
         **{**ok, "proof": serialize_log_proof(p[:-1])})
    incl("inclusion_extra_element", "root appended to the proof", "MalformedProof",
         **{**ok, "proof": serialize_log_proof(p + [root])})
    incl("inclusion_preceding_element", "root prepended to the proof", "MalformedProof",
         **{**ok, "proof": serialize_log_proof([root] + p)})
    incl("inclusion_empty_proof", "no proof hashes at all", "MalformedProof", **{**ok, "proof": serialize_log_proof([])})
    for i in range(len(p)):
        q = list(p)
        q[i] = _flip(q[i])
        incl(f"inclusion_flipped_bit_element_{i}", f"bit 3 of proof[{i}] flipped", "RootMismatch",
             **{**ok, "proof": serialize_log_proof(q)})
    incl("inclusion_swapped_elements", "proof[0] and proof[1] swapped", "RootMismatch",
         **{**ok, "proof": serialize_log_proof([p[1], p[0], *p[2:]])})
    incl("inclusion_wrong_root", "root of the 8-leaf tree", "RootMismatch", **{**ok, "root": log_tree.root(store, 8)})
    incl("inclusion_empty_root", "root of the empty tree", "RootMismatch", **{**ok, "root": EMPTY_ROOT})
    incl("inclusion_short_leaf_hash", "31-byte leaf hash", "MalformedProof", **{**ok, "leaf": leaf[:31]})
    incl("inclusion_short_root", "31-byte root", "MalformedProof", **{**ok, "root": root[:31]})
    incl("inclusion_bytes_truncated", "wire proof missing its last byte", "MalformedProof", **{**ok, "proof": wire[:-1]})
    incl("inclusion_bytes_extra", "wire proof with one trailing byte", "MalformedProof", **{**ok, "proof": wire + b"\x00"})
    incl("inclusion_bytes_count_too_high", "count byte one more than the hashes sent", "MalformedProof",
         **{**ok, "proof": bytes((wire[0] + 1,)) + wire[1:]})
    incl("inclusion_bytes_empty", "zero-length wire proof (no count byte)", "MalformedProof", **{**ok, "proof": b""})

    def cons(name: str, desc: str, expect: str, *, size1: int, size2: int, root1: bytes, root2: bytes, proof: bytes) -> None:
        out[name] = {
            "check": "consistency",
            "description": desc,
            "expect": expect,
            "input": {"size1": size1, "size2": size2, "root1": root1.hex(), "root2": root2.hex(), "proof": proof.hex()},
        }

    size1, size2 = 3, 7
    r1, r2 = log_tree.root(store, size1), log_tree.root(store, size2)
    p = proof_build.consistency_proof(store, size1, size2)
    wire = serialize_log_proof(p)
    ok = dict(size1=size1, size2=size2, root1=r1, root2=r2, proof=wire)
    cons("consistency_valid", "3 -> 7 leaves of the RFC 6962 test tree", "ok", **ok)
    r4 = log_tree.root(store, 4)
    cons("consistency_pow2_valid", "4 -> 7: old size a power of two, old root not sent", "ok",
         size1=4, size2=7, root1=r4, root2=r2, proof=serialize_log_proof(proof_build.consistency_proof(store, 4, 7)))
    cons("consistency_from_empty_valid", "0 -> 7 with the empty root and an empty proof", "ok",
         **{**ok, "size1": 0, "root1": EMPTY_ROOT, "proof": serialize_log_proof([])})
    cons("consistency_same_size_valid", "7 -> 7 with equal roots and an empty proof", "ok",
         **{**ok, "size1": 7, "root1": r2, "proof": serialize_log_proof([])})
    cons("consistency_from_empty_wrong_root1", "0 -> 7 whose old root is not the empty root", "RootMismatch",
         **{**ok, "size1": 0, "proof": serialize_log_proof([])})
    cons("consistency_from_empty_nonempty_proof", "0 -> 7 with the 3 -> 7 proof", "MalformedProof",
         **{**ok, "size1": 0, "root1": EMPTY_ROOT})
    cons("consistency_same_size_different_roots", "7 -> 7 with two different roots", "RootMismatch",
         **{**ok, "size1": 7, "proof": serialize_log_proof([])})
    cons("consistency_same_size_nonempty_proof", "7 -> 7 with a non-empty proof", "MalformedProof",
         **{**ok, "size1": 7, "root1": r2})
    cons("consistency_size1_greater", "size1 8 > size2 7", "MalformedProof", **{**ok, "size1": 8})
    cons("consistency_wrong_size1", "size1 2 with the 3 -> 7 proof", "MalformedProof", **{**ok, "size1": 2})
    cons("consistency_wrong_size1_same_length", "size1 5 (same proof length) with the 3 -> 7 proof", "RootMismatch",
         **{**ok, "size1": 5})
    # As for inclusion, any size2 in 5..8 would verify (same path shape); see above.
    cons("consistency_wrong_size2", "size2 9 with the 3 -> 7 proof", "MalformedProof", **{**ok, "size2": 9})
    cons("consistency_size2_doubled", "size2 14 with the 3 -> 7 proof", "MalformedProof", **{**ok, "size2": 14})
    cons("consistency_empty_proof", "3 -> 7 with no proof hashes", "MalformedProof", **{**ok, "proof": serialize_log_proof([])})
    cons("consistency_truncated", "last proof hash removed", "MalformedProof", **{**ok, "proof": serialize_log_proof(p[:-1])})
    cons("consistency_extra_element", "root2 appended to the proof", "MalformedProof",
         **{**ok, "proof": serialize_log_proof(p + [r2])})
    cons("consistency_preceding_element", "root1 prepended to the proof", "MalformedProof",
         **{**ok, "proof": serialize_log_proof([r1] + p)})
    for i in range(len(p)):
        q = list(p)
        q[i] = _flip(q[i], 4)
        cons(f"consistency_flipped_bit_element_{i}", f"bit 4 of proof[{i}] flipped", "RootMismatch",
             **{**ok, "proof": serialize_log_proof(q)})
    cons("consistency_wrong_root1", "root1 of the 4-leaf tree", "RootMismatch", **{**ok, "root1": r4})
    cons("consistency_wrong_root2", "root2 of the 8-leaf tree", "RootMismatch", **{**ok, "root2": log_tree.root(store, 8)})
    cons("consistency_swapped_roots", "root1 and root2 swapped", "RootMismatch", **{**ok, "root1": r2, "root2": r1})
    cons("consistency_bytes_truncated", "wire proof missing its last byte", "MalformedProof", **{**ok, "proof": wire[:-1]})
    cons("consistency_bytes_extra", "wire proof with one trailing byte", "MalformedProof", **{**ok, "proof": wire + b"\x00"})
    return out


def _sparse_vectors() -> dict[str, dict[str, Any]]:
    store = sparse.MemorySparseStore()
    entries = {
        sparse.key_for_did(f"did:dnode:vector{i}"): hashlib.sha256(b"state %d" % i).digest()
        for i in range(16)
    }
    sparse.update_many(store, entries.items())
    root = sparse.root(store)
    out: dict[str, dict[str, Any]] = {}

    def present(name: str, desc: str, expect: str, *, key: bytes, value: bytes, proof: bytes, root: bytes) -> None:
        out[name] = {
            "check": "sparse_present",
            "description": desc,
            "expect": expect,
            "input": {"root": root.hex(), "key": key.hex(), "value": value.hex(), "proof": proof.hex()},
        }

    def absent(name: str, desc: str, expect: str, *, key: bytes, proof: bytes, root: bytes) -> None:
        out[name] = {
            "check": "sparse_absent",
            "description": desc,
            "expect": expect,
            "input": {"root": root.hex(), "key": key.hex(), "proof": proof.hex()},
        }

    def with_bitmap_bit(pr: SparseProof, bit: int, sibling: bytes) -> bytes:
        # Set bitmap bit ``bit`` and insert ``sibling`` at its ordered place.
        bits = int.from_bytes(pr.bitmap, "big")
        before = (bits >> (256 - bit)).bit_count()  # set bits with index < bit
        sibs = list(pr.siblings)
        sibs.insert(before, sibling)
        bm = (bits | (1 << (255 - bit))).to_bytes(32, "big")
        return serialize_sparse_proof(SparseProof(bm, tuple(sibs), pr.other))

    keys = sorted(entries)
    key = keys[5]
    value = entries[key]
    pr = sparse.prove(store, key)
    wire = serialize_sparse_proof(pr)
    depth = 256 - ((int.from_bytes(pr.bitmap, "big") & -int.from_bytes(pr.bitmap, "big")).bit_length() - 1)
    ok: dict[str, Any] = dict(key=key, value=value, proof=wire, root=root)
    present("sparse_present_valid", "a key of a 16-DID state tree", "ok", **ok)
    present("sparse_present_wrong_value", "another 32-byte value", "RootMismatch", **{**ok, "value": _flip(value)})
    present("sparse_present_wrong_key", "another present key with this key's proof", "RootMismatch",
            **{**ok, "key": keys[6], "value": entries[keys[6]]})
    present("sparse_present_wrong_root", "root of the tree without this key", "RootMismatch",
            **{**ok, "root": hashlib.sha256(b"other root").digest()})
    present("sparse_present_empty_root", "empty-map root", "RootMismatch", **{**ok, "root": bytes(32)})
    for i in range(len(pr.siblings)):
        sibs = list(pr.siblings)
        sibs[i] = _flip(sibs[i])
        present(f"sparse_present_flipped_bit_sibling_{i}", f"bit 3 of sibling {i} flipped", "RootMismatch",
                **{**ok, "proof": serialize_sparse_proof(SparseProof(pr.bitmap, tuple(sibs), None))})
    bits = int.from_bytes(pr.bitmap, "big")
    low = bits & -bits
    present("sparse_present_bitmap_deepest_bit_cleared", "deepest bitmap bit and its sibling removed", "RootMismatch",
            **{**ok, "proof": serialize_sparse_proof(SparseProof((bits ^ low).to_bytes(32, "big"), pr.siblings[:-1], None))})
    present("sparse_present_bitmap_bit_without_sibling", "an extra bitmap bit but no sibling for it", "MalformedProof",
            **{**ok, "proof": (bits | (1 << (255 - depth))).to_bytes(32, "big") + wire[32:]})
    present("sparse_present_bitmap_extra_level", "a deeper level with a made-up sibling", "RootMismatch",
            **{**ok, "proof": with_bitmap_bit(pr, depth, _flip(bytes(32)))})
    empty_levels = [i for i in range(depth) if not (bits >> (255 - i)) & 1]
    if empty_levels:
        present("sparse_present_explicit_empty_sibling", "an empty sibling listed instead of left out of the bitmap",
                "MalformedProof", **{**ok, "proof": with_bitmap_bit(pr, empty_levels[0], bytes(32))})
    present("sparse_present_truncated", "last sibling removed, bitmap unchanged", "MalformedProof",
            **{**ok, "proof": wire[:-32]})
    present("sparse_present_extra_sibling", "one 32-byte sibling appended", "MalformedProof",
            **{**ok, "proof": wire + root})
    present("sparse_present_with_other_leaf", "an other-leaf (key, value) appended", "MalformedProof",
            **{**ok, "proof": wire + keys[6] + entries[keys[6]]})
    present("sparse_present_bytes_truncated", "wire proof missing its last byte", "MalformedProof",
            **{**ok, "proof": wire[:-1]})
    present("sparse_present_bytes_extra", "wire proof with one trailing byte", "MalformedProof",
            **{**ok, "proof": wire + b"\x00"})
    present("sparse_present_bytes_shorter_than_bitmap", "31 bytes", "MalformedProof", **{**ok, "proof": wire[:31]})
    present("sparse_present_short_key", "31-byte key", "MalformedProof", **{**ok, "key": key[:31]})

    # Absent keys: one whose path ends in an empty subtree, one ending at a leaf.
    empty_key = leaf_key = None
    i = 0
    while empty_key is None or leaf_key is None:
        k = sparse.key_for_did(f"did:dnode:absent{i}")
        i += 1
        q = sparse.prove(store, k)
        if q.other is None and empty_key is None and any(q.bitmap):
            empty_key = k
        elif q.other is not None and leaf_key is None and any(q.bitmap):
            leaf_key = k
    pe = sparse.prove(store, empty_key)
    pl = sparse.prove(store, leaf_key)
    we, wl = serialize_sparse_proof(pe), serialize_sparse_proof(pl)
    okE: dict[str, Any] = dict(key=empty_key, proof=we, root=root)
    okL: dict[str, Any] = dict(key=leaf_key, proof=wl, root=root)
    absent("sparse_absent_empty_valid", "path ends in an empty subtree", "ok", **okE)
    absent("sparse_absent_leaf_valid", "path ends at another key's leaf", "ok", **okL)
    absent("sparse_absent_for_present_key", "a present key with its presence proof", "RootMismatch",
           key=key, proof=wire, root=root)
    present("sparse_present_for_absent_key", "an absent key with its absence proof and a made-up value",
            "RootMismatch", key=empty_key, value=value, proof=we, root=root)
    absent("sparse_absent_wrong_root", "another root", "RootMismatch", **{**okE, "root": _flip(root)})
    absent("sparse_absent_wrong_key_first_bit_flipped", "a key on the other side of the root", "RootMismatch",
           **{**okE, "key": _flip(empty_key, 7)})
    for j in range(len(pe.siblings)):
        sibs = list(pe.siblings)
        sibs[j] = _flip(sibs[j])
        absent(f"sparse_absent_flipped_bit_sibling_{j}", f"bit 3 of sibling {j} flipped", "RootMismatch",
               **{**okE, "proof": serialize_sparse_proof(SparseProof(pe.bitmap, tuple(sibs), None))})
    assert pl.other is not None
    ok_key, ok_value = pl.other
    absent("sparse_absent_other_is_key", "the other leaf's key replaced by the key itself", "MalformedProof",
           **{**okL, "proof": serialize_sparse_proof(SparseProof(pl.bitmap, pl.siblings, (leaf_key, ok_value)))})
    off_path = _flip(ok_key, 7)
    absent("sparse_absent_other_off_path", "the other leaf's key does not share the path prefix", "MalformedProof",
           **{**okL, "proof": serialize_sparse_proof(SparseProof(pl.bitmap, pl.siblings, (off_path, ok_value)))})
    absent("sparse_absent_other_wrong_value", "the other leaf's value changed", "RootMismatch",
           **{**okL, "proof": serialize_sparse_proof(SparseProof(pl.bitmap, pl.siblings, (ok_key, _flip(ok_value))))})
    absent("sparse_absent_other_dropped", "the other leaf left out (claims an empty subtree)", "RootMismatch",
           **{**okL, "proof": wl[:-64]})
    absent("sparse_absent_other_truncated", "the other leaf's value cut to 31 bytes", "MalformedProof",
           **{**okL, "proof": wl[:-1]})
    absent("sparse_absent_truncated", "last sibling removed, bitmap unchanged", "MalformedProof",
           **{**okE, "proof": we[:-32]})
    absent("sparse_absent_bytes_extra", "wire proof with one trailing byte", "MalformedProof",
           **{**okE, "proof": we + b"\x00"})
    return out


def build() -> dict[str, dict[str, Any]]:
    """All vectors by name (the file stem), each with its ``name`` field set."""
    vectors = {**_log_vectors(), **_sparse_vectors()}
    for name, v in vectors.items():
        v["name"] = name
    return vectors


def render(vector: dict[str, Any]) -> str:
    """The exact file text of one vector."""
    return json.dumps(vector, indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Rewrite ``vectors/``: one file per vector, stale files removed."""
    VECTOR_DIR.mkdir(exist_ok=True)
    vectors = build()
    for stale in VECTOR_DIR.glob("*.json"):
        if stale.stem not in vectors:
            stale.unlink()
    for name, v in vectors.items():
        (VECTOR_DIR / f"{name}.json").write_text(render(v))
    print(f"wrote {len(vectors)} vectors to {VECTOR_DIR}")


if __name__ == "__main__":
    main()
