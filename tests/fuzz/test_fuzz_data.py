"""Fuzz targets: device data reading records, signed segment heads, and anchor operation payloads.

Records come back inside receipts; signed heads arrive from devices through untrusted
gateways and inside anchor operations from anyone. Records and heads are binary and
canonical: a decoded value must encode to the very bytes it came from. Each must parse
to a valid value or fail typed.
"""

from __future__ import annotations

import functools

from didnode.core import builder
from didnode.core.data.heads import ZERO_HASH, Head, decode_signed_head, sign_head
from didnode.core.data.records import commitment, decode_record, derive_salt, encode_record
from didnode.core.operations import Proof, parse
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, NET, signing_key

DATA_TOKENS = (*DID_TOKENS, b"\x01", b"\x00\x00\x00\x00\x00\x00\x00\x00", b"\x00\x01\x00\x00", b"key-1", b"temp", bytes(32))


@functools.cache
def _device() -> tuple[str, list[bytes], list[bytes]]:
    """(DID, record samples, signed head samples), deterministic."""
    key = signing_key("device 0")
    u = builder.create(NET, [builder.NewKey("key-1", bytes(key.verify_key))], bytes(signing_key("next 0").verify_key))
    did = u.did
    recs = [encode_record(did, s, i, 1_700_000_000_000 + i, commitment(derive_salt(b"k" * 32, i), b"21.5")) for i, s in enumerate(("temp", "a.b-c_9", "x" * 64))]
    first = sign_head(Head(did, "key-1", "temp", 0, 60, bytes(range(32)), ZERO_HASH, 1), NET, key)
    second = sign_head(Head(did, "key-1", "temp", 60, 65536, bytes(32), first.hash, 2), NET, key)
    return did, recs, [first.raw, second.raw]


@functools.cache
def _anchors() -> list[bytes]:
    did, _, heads = _device()
    return [builder.anchor(NET, did, 1, "ab" * 32, heads).payload, builder.anchor(NET, did, 7, "cd" * 32, heads[:1]).payload]


@target("data_record", seeds=lambda: _device()[1], tokens=DATA_TOKENS, max_len=512)
def fuzz_data_record(data: bytes) -> None:
    rec = decode_record(data)
    assert rec.encode() == data, "a decoded reading record must re-encode to the same bytes"
    rec.leaf_hash()


@target("signed_head", seeds=lambda: _device()[2], tokens=DATA_TOKENS, max_len=1024)
def fuzz_signed_head(data: bytes) -> None:
    signed = decode_signed_head(data)
    assert signed.head.encode() + signed.signature == data, "a decoded signed head must re-encode to the same bytes"
    assert 1 <= signed.head.count <= 65536 and signed.head.end - 1 <= 2**53 - 1


PROOFS = (Proof("did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG#key-1", bytes(64)),)


@target("anchor_payload", seeds=_anchors, tokens=(*JSON_TOKENS, *DID_TOKENS, '"anchor"', '"heads":', '"prev":', '"seq":'), max_len=16384)
def fuzz_anchor_payload(data: bytes) -> None:
    op = parse(data, PROOFS, NET)
    if op.type == "anchor":
        assert 1 <= len(op.heads) <= 256
        for h in op.heads:
            assert decode_signed_head(h.raw) == h


test_fuzz = harness.fuzz_tests(__name__)
