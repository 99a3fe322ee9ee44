"""Reading records, segment heads and the segment tree: round trips, every way the bytes can be wrong,
Merkle proofs of readings, and the segment root against independent RFC 6962 implementations."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from didnode import errors
from didnode.core.data import heads as H
from didnode.core.data import records as R
from didnode.core.merkle import reference
from didnode.core.merkle.proof_verify import verify_inclusion
from tests.factory import new_create

DID = new_create()[0].did
KEY = SigningKey(b"\x01" * 32)
NET = "local"

streams = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
u64 = st.integers(0, 2**64 - 1)
seqs = st.integers(0, R.MAX_SEQ)
hashes = st.binary(min_size=32, max_size=32)


def head(**kw: object) -> H.Head:
    fields = dict(did=DID, key_id="key-1", stream="temp", first=0, count=10, root=b"\x01" * 32, prev=H.ZERO_HASH, close_time=5)
    fields.update(kw)
    return H.Head(**fields)  # type: ignore[arg-type]


def signed(**kw: object) -> bytes:
    return H.sign_head(head(**kw), NET, KEY).raw


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


@given(streams, seqs, u64, hashes)
def test_a_record_round_trips(stream: str, seq: int, time: int, commit: bytes) -> None:
    rec = R.Record(DID, stream, seq, time, commit)
    data = rec.encode()
    assert R.encode_record(DID, stream, seq, time, commit) == data
    assert R.decode_record(data) == rec
    assert rec.leaf_hash() == hashlib.sha256(b"\x00" + data).digest()


def test_record_bytes_are_as_documented() -> None:
    commit = bytes(range(32))
    data = R.encode_record(DID, "t", 7, 9, commit)
    d = DID.encode()
    assert data == b"\x01" + struct.pack(">H", len(d)) + d + b"\x01t" + struct.pack(">QQ", 7, 9) + commit


RECORD = R.encode_record(DID, "temp", 3, 4, b"\x02" * 32)


@pytest.mark.parametrize("bad, what", [
    (b"\x02" + RECORD[1:], "version"),
    (RECORD[:1] + struct.pack(">H", len(DID) + 1) + RECORD[3:], "DID length"),
    (RECORD[:1] + struct.pack(">H", 5) + b"did:x" + RECORD[3 + len(DID):], "not a DID"),
    (RECORD[: 3 + len(DID)] + b"\x00" + RECORD[3 + len(DID) + 5:], "empty stream"),
    (RECORD[: 3 + len(DID)] + b"\x04te/p" + RECORD[3 + len(DID) + 5:], "stream character"),
    (RECORD[: 3 + len(DID)] + b"\x04te\xffp" + RECORD[3 + len(DID) + 5:], "stream UTF-8"),
    (RECORD + b"\x00", "trailing byte"),
    (RECORD[:-1], "truncated"),
    (b"", "empty"),
    (RECORD[:2], "truncated length"),
    (R.encode_record(DID, "temp", 2**53, 4, b"\x02" * 32), "seq over 2^53-1"),
])
def test_every_wrong_record_is_malformed(bad: bytes, what: str) -> None:
    with pytest.raises(errors.MalformedHead):
        R.decode_record(bad)


def test_commitments_are_salted_and_salts_derived_per_reading() -> None:
    secret = b"s" * 32
    s0, s1 = R.derive_salt(secret, 0), R.derive_salt(secret, 1)
    assert len(s0) == R.SALT_BYTES and s0 != s1 and R.derive_salt(secret, 0) == s0
    stream = hashlib.shake_256(b"didnode/data/salt/v1\x00" + secret).digest(16 * 3)  # the documented derivation
    assert (s0, s1, R.derive_salt(secret, 2)) == (stream[:16], stream[16:32], stream[32:])
    assert R.salt_stream(secret, 3) == stream
    assert R.commitment(s0, b"21.5") != R.commitment(s1, b"21.5")
    assert R.commitment(s0, b"21.5") == hashlib.sha256(b"didnode/data/commit/v1\x00" + bytes([16]) + s0 + b"21.5").digest()
    # The salt's length is in the commitment: moving a byte between salt and payload changes it.
    assert R.commitment(s0 + b"x", b"y") != R.commitment(s0, b"xy")


def test_stream_names() -> None:
    assert R.check_stream("a.b-c_D9") == "a.b-c_D9"
    for bad in ("", "x" * 65, "a b", "é", None, 5):
        with pytest.raises(errors.MalformedHead):
            R.check_stream(bad)


# --------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------


@given(streams, st.integers(1, H.MAX_COUNT), seqs, hashes, hashes, u64, st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
@settings(max_examples=60)
def test_a_signed_head_round_trips_and_verifies(stream: str, count: int, first: int, root: bytes, prev: bytes, close: int, key_id: str) -> None:
    first = min(first, R.MAX_SEQ + 1 - count)
    if first == 0:
        prev = H.ZERO_HASH
    h = H.Head(DID, key_id, stream, first, count, root, prev, close)
    s = H.sign_head(h, NET, KEY)
    back = H.decode_signed_head(s.raw)
    assert back == s and back.head == h and back.head_bytes == h.encode()
    assert back.hash == hashlib.sha256(s.raw).digest() and back.head.end == first + count
    H.verify_head(back, NET, bytes(KEY.verify_key))
    with pytest.raises(errors.InvalidSignature):
        H.verify_head(back, "prod", bytes(KEY.verify_key))
    with pytest.raises(errors.InvalidSignature):
        H.verify_head(back, NET, bytes(SigningKey(b"\x02" * 32).verify_key))


def test_head_bytes_and_signing_bytes_are_as_documented() -> None:
    h = head(first=5, count=3, prev=b"\x03" * 32)
    d = DID.encode()
    expected = b"\x01" + struct.pack(">H", len(d)) + d + b"\x05key-1" + b"\x04temp" + struct.pack(">QI", 5, 3) + b"\x01" * 32 + b"\x03" * 32 + struct.pack(">Q", 5)
    assert h.encode() == expected
    assert H.signing_bytes(NET, expected) == b"didnode/data/head/v1\x00local\x00" + expected
    s = H.sign_head(h, NET, KEY)
    assert s.raw == expected + KEY.sign(b"didnode/data/head/v1\x00local\x00" + expected).signature and len(s.signature) == 64


GOOD = signed(first=5, count=3, prev=b"\x03" * 32)
BODY, SIG = GOOD[:-64], GOOD[-64:]
O_KID = 3 + len(DID)  # offset of the key id length
O_STREAM = O_KID + 6
O_TAIL = O_STREAM + 5


def _tail(first: int, count: int, prev: bytes = b"\x03" * 32) -> bytes:
    return struct.pack(">QI", first, count) + b"\x01" * 32 + prev + struct.pack(">Q", 5)


@pytest.mark.parametrize("bad, what", [
    (b"\x02" + GOOD[1:], "version"),
    (b"\x00" + GOOD[1:], "version 0"),
    (GOOD[:1] + struct.pack(">H", len(DID) + 3) + GOOD[3:], "DID length"),
    (GOOD[:1] + struct.pack(">H", 2000) + GOOD[3:], "DID length past the end"),
    (GOOD[:O_KID] + b"\x00" + GOOD[O_KID + 6:], "empty key id"),
    (GOOD[:O_KID] + b"\x05KEY 1" + GOOD[O_KID + 6:], "key id characters"),
    (GOOD[:O_KID] + b"\x05key-\xff" + GOOD[O_KID + 6:], "key id UTF-8"),
    (GOOD[:O_STREAM] + b"\x00" + GOOD[O_STREAM + 5:], "empty stream"),
    (GOOD[:O_STREAM] + b"\x04te p" + GOOD[O_STREAM + 5:], "stream characters"),
    (BODY[:O_TAIL] + _tail(5, 0) + SIG, "count 0"),
    (BODY[:O_TAIL] + _tail(5, H.MAX_COUNT + 1) + SIG, "count over 65,536"),
    (BODY[:O_TAIL] + _tail(0, 3) + SIG, "first seq 0 with a non-zero prev"),
    (BODY[:O_TAIL] + _tail(2**53 - 2, 3) + SIG, "sequence end over 2^53"),
    (BODY[:O_TAIL] + _tail(2**64 - 1, 1) + SIG, "first seq at 2^64-1"),
    (BODY + b"\x00" + SIG, "trailing byte in the head"),
    (GOOD[:-1], "truncated signature (the head then ends a byte early)"),
    (GOOD[:64], "a signature alone"),
    (GOOD[:10], "short"),
    (b"", "empty"),
])
def test_every_wrong_signed_head_is_malformed(bad: bytes, what: str) -> None:
    with pytest.raises(errors.MalformedHead):
        H.decode_signed_head(bad)


def test_the_limits_themselves_decode() -> None:
    assert H.decode_signed_head(BODY[:O_TAIL] + _tail(5, H.MAX_COUNT) + SIG).head.count == H.MAX_COUNT
    assert H.decode_signed_head(BODY[:O_TAIL] + _tail(2**53 - 3, 3) + SIG).head.end == 2**53
    assert H.decode_signed_head(BODY[:O_TAIL] + _tail(0, 1, H.ZERO_HASH) + SIG).head.first == 0


# --------------------------------------------------------------------------
# The segment tree
# --------------------------------------------------------------------------


def _records(n: int, secret: bytes = b"k" * 32) -> list[bytes]:
    return [R.encode_record(DID, "temp", i, 1000 + i, R.commitment(R.derive_salt(secret, i), f"{i}".encode())) for i in range(n)]


def rfc6962_root(entries: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written here from the RFC with hashlib alone."""
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(entries[:k]) + rfc6962_root(entries[k:])).digest()


@given(st.integers(1, 300))
@settings(max_examples=40)
def test_the_segment_root_is_rfc6962(n: int) -> None:
    recs = _records(n)
    root = H.segment_root([R.decode_record(r).leaf_hash() for r in recs])
    assert root == reference.mth(recs) == rfc6962_root(recs)


@given(st.integers(1, 200), st.data())
@settings(max_examples=40)
def test_every_readings_proof_verifies_and_no_wrong_one_does(n: int, data: st.DataObject) -> None:
    recs = _records(n)
    leaves = [hashlib.sha256(b"\x00" + r).digest() for r in recs]
    tree = H.segment_tree(leaves)
    root = H.segment_root(leaves)
    indexes = range(n) if n <= 40 else data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=20))
    for i in indexes:
        proof = H.reading_proof(tree, i, n)
        assert proof == reference.path(i, recs)
        verify_inclusion(leaves[i], i, n, proof, root)
        if n > 1:
            j = (i + 1) % n
            with pytest.raises(errors.InvalidProof):
                verify_inclusion(leaves[i], j, n, proof, root)
            with pytest.raises(errors.InvalidProof):
                verify_inclusion(leaves[j], i, n, proof, root)
        forged = hashlib.sha256(b"\x00" + R.encode_record(DID, "temp", i, 1000 + i, b"\x00" * 32)).digest()
        with pytest.raises(errors.InvalidProof):
            verify_inclusion(forged, i, n, proof, root)
