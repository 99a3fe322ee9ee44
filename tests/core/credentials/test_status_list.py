"""Bitstring Status List v1.0 encoding: bit order, GZIP + multibase base64url, bounds."""

from __future__ import annotations

import gzip
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode import errors
from didnode.core.credentials.status_list import MIN_ENTRIES, Bitstring, list_number, resource_id
from didnode.core.encoding import b64url


def test_empty_list_minimum_size_and_determinism() -> None:
    b = Bitstring()
    assert len(b) == MIN_ENTRIES == 131_072
    enc = b.encode()
    assert enc.startswith("u") and "=" not in enc and enc == Bitstring().encode()
    assert Bitstring.decode(enc).to_bytes() == bytes(16384)
    with pytest.raises(errors.StatusListInvalid):
        Bitstring(size=MIN_ENTRIES - 8)


def test_index_zero_is_the_leftmost_bit() -> None:
    b = Bitstring()
    b.set(0, True)
    b.set(9, True)
    raw = b.to_bytes()
    assert raw[0] == 0x80 and raw[1] == 0x40
    assert b.get(0) and b.get(9) and not b.get(1)
    b.set(0, False)
    assert b.to_bytes()[0] == 0


def test_decodes_what_other_implementations_write() -> None:
    # The spec's construction from first principles: gzip the bytes, base64url without padding, prefix 'u'.
    raw = bytearray(16384)
    idx = 94567
    raw[idx // 8] |= 0x80 >> (idx % 8)
    text = "u" + b64url(gzip.compress(bytes(raw)))
    b = Bitstring.decode(text)
    assert b.get(94567) and sum(b.get(i) for i in range(94560, 94575)) == 1


@settings(max_examples=30, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=MIN_ENTRIES - 1), max_size=50))
def test_roundtrip(indices: set[int]) -> None:
    b = Bitstring()
    for i in indices:
        b.set(i, True)
    d = Bitstring.decode(b.encode())
    assert {i for i in indices if d.get(i)} == indices and d.to_bytes() == b.to_bytes()


@pytest.mark.parametrize(
    "text",
    [
        "z" + b64url(gzip.compress(bytes(16384))),  # base58 prefix
        "u" + b64url(gzip.compress(bytes(16384))) + "=",
        "u" + b64url(b"not gzip"),
        "u" + b64url(gzip.compress(bytes(1024))),  # under the minimum size
        "u" + b64url(gzip.compress(bytes(16384))[:-4]),  # truncated
        "u" + b64url(gzip.compress(bytes(16384)) + b"junk"),  # trailing bytes
        "u" + b64url(gzip.compress(bytes(64 << 20))),  # a gzip bomb: 64 MiB from a few KiB
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(errors.StatusListInvalid):
        Bitstring.decode(text)


def test_out_of_range_index() -> None:
    with pytest.raises(errors.StatusListInvalid):
        Bitstring().get(MIN_ENTRIES)


def test_random_list_fits_a_ledger_resource() -> None:
    # Worst case (incompressible bits) must still fit the 60,000-character resource limit once signed.
    from nacl.signing import SigningKey

    from didnode.core.credentials import Issuer
    from didnode.core.credentials.verify import MAX_STATUS_LIST_TOKEN

    iss = Issuer("did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE", "key-1", SigningKey.generate())
    token = iss.status_list("revocation", 1, Bitstring(os.urandom(16384)), 1_750_000_000_000, allocated=MIN_ENTRIES)
    assert len(token) < MAX_STATUS_LIST_TOKEN


def test_resource_ids() -> None:
    assert resource_id("revocation", 3) == "revocation-3" and list_number("revocation-3", "revocation") == 3
    assert list_number("suspension-1", "revocation") == 0 and list_number("revocation-01", "revocation") == 0
