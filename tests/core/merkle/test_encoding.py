"""Byte layouts of log and sparse proofs: round trips and strict parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from didnode.core.merkle.encoding import (
    SparseProof,
    parse_log_proof,
    parse_sparse_proof,
    serialize_log_proof,
    serialize_sparse_proof,
)
from didnode.errors import InvalidArgument, MalformedProof

hashes = st.binary(min_size=32, max_size=32)


@given(st.lists(hashes, max_size=70))
def test_log_proof_round_trip(proof: list[bytes]) -> None:
    data = serialize_log_proof(proof)
    assert data[0] == len(proof) and len(data) == 1 + 32 * len(proof)
    assert parse_log_proof(data) == proof


@given(st.lists(hashes, max_size=8), st.data())
def test_log_proof_rejects_every_other_length(proof: list[bytes], data: st.DataObject) -> None:
    wire = serialize_log_proof(proof)
    cut = data.draw(st.integers(min_value=0, max_value=len(wire) - 1))
    with pytest.raises(MalformedProof):
        parse_log_proof(wire[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=40))
    with pytest.raises(MalformedProof):
        parse_log_proof(wire + extra)


def test_log_proof_serialize_preconditions() -> None:
    with pytest.raises(InvalidArgument):
        serialize_log_proof([bytes(32)] * 256)
    with pytest.raises(InvalidArgument):
        serialize_log_proof([bytes(31)])


@st.composite
def sparse_proofs(draw: st.DrawFn) -> SparseProof:
    depth_bits = draw(st.lists(st.integers(min_value=0, max_value=255), unique=True, max_size=20))
    bitmap = 0
    for i in depth_bits:
        bitmap |= 1 << (255 - i)
    siblings = tuple(draw(st.lists(hashes, min_size=len(depth_bits), max_size=len(depth_bits))))
    other = draw(st.none() | st.tuples(hashes, hashes))
    return SparseProof(bitmap.to_bytes(32, "big"), siblings, other)


@given(sparse_proofs())
def test_sparse_proof_round_trip(proof: SparseProof) -> None:
    data = serialize_sparse_proof(proof)
    assert len(data) == 32 + 32 * len(proof.siblings) + (64 if proof.other else 0)
    assert data[:32] == proof.bitmap
    assert parse_sparse_proof(data) == proof


@given(sparse_proofs(), st.data())
def test_sparse_proof_rejects_bad_lengths(proof: SparseProof, data: st.DataObject) -> None:
    wire = serialize_sparse_proof(proof)
    # Any length that is not 32 + 32n or 32 + 32n + 64 for this bitmap.
    for bad in (wire[:-1], wire + b"\x00", wire + bytes(32), wire[:31], b""):
        with pytest.raises(MalformedProof):
            parse_sparse_proof(bad)
    if proof.other is None and proof.siblings:
        with pytest.raises(MalformedProof):
            parse_sparse_proof(wire[:-32])


def test_sparse_proof_serialize_preconditions() -> None:
    one_bit = (1 << 255).to_bytes(32, "big")
    with pytest.raises(InvalidArgument):
        serialize_sparse_proof(SparseProof(bytes(31), ()))
    with pytest.raises(InvalidArgument):
        serialize_sparse_proof(SparseProof(one_bit, ()))
    with pytest.raises(InvalidArgument):
        serialize_sparse_proof(SparseProof(one_bit, (bytes(32),), (bytes(32), bytes(31))))
