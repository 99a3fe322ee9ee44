"""Checkpoint encoding, signing and verification, including every way a checkpoint can be wrong."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace

import pytest
from nacl.signing import SigningKey

from didnode.core import checkpoint as cp_codec
from didnode.core.checkpoint import CHECKPOINT_CONTEXT, Checkpoint, sign
from didnode.core.operations import SIGNING_CONTEXT
from didnode.core.transparency_verify import check_fresh, verify_checkpoint
from didnode.errors import BadCheckpointSignature, InvalidArgument, InvalidKey, MalformedProof, StaleCheckpoint

KEY = SigningKey(hashlib.sha256(b"test checkpoint key").digest())
PUB = bytes(KEY.verify_key)
KID = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG#key-1"
CP = Checkpoint("local", 42, hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest(), 1_700_000_000_123)


def test_signing_bytes_are_the_documented_layout() -> None:
    expected = (
        b"didnode/checkpoint/v1\x00"
        + bytes([5])
        + b"local"
        + struct.pack(">Q", 42)
        + CP.log_root
        + CP.state_root
        + struct.pack(">Q", 1_700_000_000_123)
    )
    assert CP.signing_bytes() == expected
    assert CHECKPOINT_CONTEXT != SIGNING_CONTEXT and not CHECKPOINT_CONTEXT.startswith(SIGNING_CONTEXT)


def test_sign_verify_and_both_encodings_round_trip() -> None:
    signed = sign(CP, KEY, KID)
    assert verify_checkpoint(signed, PUB) == CP
    assert verify_checkpoint(signed, PUB, signer_did=KID.split("#")[0]) == CP
    raw = signed.encode()
    assert raw == CP.body() + struct.pack(">H", len(KID)) + KID.encode() + signed.signature
    assert cp_codec.decode(raw) == signed
    assert cp_codec.from_json(signed.to_json()) == signed


@pytest.mark.parametrize(
    "field,value",
    [
        ("network", "other"),
        ("tree_size", 43),
        ("tree_size", 41),
        ("log_root", hashlib.sha256(b"x").digest()),
        ("state_root", hashlib.sha256(b"y").digest()),
        ("time_ms", 1_700_000_000_124),
    ],
)
def test_each_altered_field_breaks_the_signature(field: str, value: object) -> None:
    signed = sign(CP, KEY, KID)
    altered = replace(signed, checkpoint=replace(CP, **{field: value}))
    with pytest.raises(BadCheckpointSignature):
        verify_checkpoint(altered, PUB)


def test_wrong_signature_wrong_key_and_wrong_signer() -> None:
    signed = sign(CP, KEY, KID)
    for i in (0, 31, 63):
        sig = bytearray(signed.signature)
        sig[i] ^= 0x10
        with pytest.raises(BadCheckpointSignature):
            verify_checkpoint(replace(signed, signature=bytes(sig)), PUB)
    with pytest.raises(BadCheckpointSignature):
        verify_checkpoint(signed, bytes(SigningKey.generate().verify_key))
    with pytest.raises(BadCheckpointSignature):
        verify_checkpoint(signed, PUB, signer_did="did:dnode:QmNLei78zWmzUdbeRB3CiUfAizWUrbeeZh5K1rhAQKCh51")
    with pytest.raises(BadCheckpointSignature):
        verify_checkpoint(replace(signed, signature=signed.signature[:63]), PUB)
    with pytest.raises(InvalidKey):
        verify_checkpoint(signed, PUB[:31])


def test_a_signature_under_another_context_never_verifies() -> None:
    body = CP.body()
    for message in (body, SIGNING_CONTEXT + body, b"didnode/checkpoint/v2\x00" + body):
        forged = cp_codec.SignedCheckpoint(CP, KID, bytes(KEY.sign(message).signature))
        with pytest.raises(BadCheckpointSignature):
            verify_checkpoint(forged, PUB)


def test_binary_decoding_is_strict() -> None:
    raw = sign(CP, KEY, KID).encode()
    for bad in (b"", raw[:10], raw[:-1], raw + b"\x00", b"\x00" + raw[1:], bytes([200]) + raw[1:]):
        with pytest.raises(MalformedProof):
            cp_codec.decode(bad)
    upper = bytearray(raw)
    upper[1] = ord("L")  # "Local" is not a network id
    with pytest.raises(MalformedProof):
        cp_codec.decode(bytes(upper))


def test_json_decoding_is_strict() -> None:
    good = sign(CP, KEY, KID).to_json()
    cases = [
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "timeMs"},
        {**good, "treeSize": -1},
        {**good, "treeSize": 1.0},
        {**good, "treeSize": True},
        {**good, "logRoot": good["logRoot"][:-2]},
        {**good, "logRoot": good["logRoot"].upper()},
        {**good, "signature": "zz" * 64},
        {**good, "network": "Not A Network"},
        {**good, "kid": ""},
        [good],
    ]
    for case in cases:
        with pytest.raises(MalformedProof):
            cp_codec.from_json(case)


def test_impossible_fields_cannot_be_signed() -> None:
    for bad in (replace(CP, network="UPPER"), replace(CP, tree_size=-1), replace(CP, log_root=b"short"), replace(CP, time_ms=1 << 64)):
        with pytest.raises(InvalidArgument):
            sign(bad, KEY, KID)


def test_freshness_bound() -> None:
    check_fresh(CP, CP.time_ms + 5_000, max_age_ms=5_000)
    with pytest.raises(StaleCheckpoint):
        check_fresh(CP, CP.time_ms + 5_001, max_age_ms=5_000)
    with pytest.raises(StaleCheckpoint):
        check_fresh(CP, CP.time_ms - 120_000, max_age_ms=5_000)


def test_same_state_ignores_time_only() -> None:
    assert CP.same_state(replace(CP, time_ms=1))
    assert not CP.same_state(replace(CP, tree_size=41))
