"""The binary state record (``DidState.to_record`` / ``from_record``): layout, canonical form, strict decoding.

The layout is checked against an independent, field-by-field encoder written
from docs/storage.md ("State records"), so the code and the documentation
cannot drift apart unnoticed.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode.core import canonical
from didnode.core.keystate import (
    ACTIVE,
    CURRENT,
    DEACTIVATED,
    ED25519,
    REVOKED,
    ROTATED,
    X25519,
    DidState,
    KeyRecord,
)
from didnode.errors import StoreCorrupted
from tests.factory import MemLedger, new_create

HEAD = 79  # bytes before the DID
KEY_FIXED = 31  # bytes of a key before its strings

# --------------------------------------------------------------------------
# An independent encoder, straight from docs/storage.md
# --------------------------------------------------------------------------

_PURPOSE_BITS = {"assertionMethod": 1, "authentication": 2, "keyAgreement": 4}


def _s8(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


def reference_record(s: DidState) -> bytes:
    did = s.did.encode()
    nxt = bytes.fromhex(s.next)
    services = canonical.encode(list(s.services)) if s.services else b""
    resources = canonical.encode(list(s.resources)) if s.resources else b""
    out = bytes([1, len(did)])
    out += s.seq.to_bytes(4, "big") + bytes.fromhex(s.last)
    out += bytes([0 if s.status == ACTIVE else 1, len(nxt)])
    for n in (s.created_pos, s.created_time, s.updated_pos, s.updated_time):
        out += n.to_bytes(8, "big")
    out += bytes([len(s.controllers)]) + len(services).to_bytes(2, "big") + len(s.keys).to_bytes(2, "big") + len(resources).to_bytes(2, "big")
    out += did + nxt
    for c in s.controllers:
        out += _s8(c)
    out += services
    for k in s.keys:
        kid, mb, reason = k.id.encode(), k.multibase.encode(), k.reason.encode()
        out += bytes([len(kid), len(mb)]) + len(reason).to_bytes(2, "big")
        out += bytes([0 if k.kind == ED25519 else 1, sum(_PURPOSE_BITS[p] for p in k.purposes), (CURRENT, ROTATED, REVOKED).index(k.fate)])
        out += k.added_seq.to_bytes(4, "big") + k.added_pos.to_bytes(8, "big")
        out += k.ended_seq.to_bytes(4, "big", signed=True) + k.ended_pos.to_bytes(8, "big", signed=True)
        out += kid + mb + reason
    return out + resources


# --------------------------------------------------------------------------
# Generated states
# --------------------------------------------------------------------------

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
SAFE = st.integers(0, 2**53 - 1)
hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
dids = st.text(B58, min_size=44, max_size=44).map(lambda t: "did:dnode:Qm" + t)
key_ids = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
multibases = st.text(B58, min_size=40, max_size=63).map(lambda t: "z" + t)
ed_purposes = st.sampled_from([("assertionMethod",), ("authentication",), ("assertionMethod", "authentication")])


@st.composite
def key_records(draw: st.DrawFn) -> KeyRecord:
    kind = draw(st.sampled_from([ED25519, X25519]))
    purposes = draw(ed_purposes) if kind == ED25519 else ("keyAgreement",)
    fate = draw(st.sampled_from([CURRENT, ROTATED, REVOKED]))
    if fate == CURRENT:
        ended_seq, ended_pos = -1, -1
    else:
        ended_seq, ended_pos = draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**63 - 1))
    reason = draw(st.text(max_size=128)) if fate == REVOKED else ""
    return KeyRecord(draw(key_ids), kind, draw(multibases), purposes, fate, draw(U32), draw(U64), ended_seq, ended_pos, reason)


services = st.fixed_dictionaries({"id": key_ids, "type": st.text(min_size=1, max_size=64), "serviceEndpoint": st.text(min_size=1, max_size=512)})
resources = st.fixed_dictionaries({"id": key_ids, "mediaType": st.text(min_size=1, max_size=64), "hash": hex32, "pos": SAFE, "seq": SAFE})


@st.composite
def states(draw: st.DrawFn) -> DidState:
    status = draw(st.sampled_from([ACTIVE, DEACTIVATED]))
    return DidState(
        did=draw(dids),
        seq=draw(U32),
        last=draw(hex32),
        status=status,
        next=draw(hex32) if status == ACTIVE or draw(st.booleans()) else "",
        controllers=tuple(sorted(draw(st.sets(dids, max_size=8)))),
        services=tuple(draw(st.lists(services, max_size=4))),
        keys=tuple(draw(st.lists(key_records(), max_size=12))),
        created_pos=draw(U64),
        created_time=draw(U64),
        updated_pos=draw(U64),
        updated_time=draw(U64),
        resources=tuple(draw(st.lists(resources, max_size=4))),
    )


@given(states())
@settings(max_examples=300, deadline=None)
def test_round_trip_is_exact_and_matches_the_documented_layout(state: DidState) -> None:
    record = state.to_record()
    assert record == reference_record(state)
    back = DidState.from_record(record)
    assert back == state
    assert back.to_record() == record  # canonical: decode then encode gives the same bytes
    assert back.to_json() == state.to_json()


@given(states(), st.data())
@settings(max_examples=200, deadline=None)
def test_any_truncation_or_extension_is_refused(state: DidState, data: st.DataObject) -> None:
    record = state.to_record()
    cut = data.draw(st.integers(0, len(record) - 1))
    with pytest.raises(StoreCorrupted):
        DidState.from_record(record[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(StoreCorrupted):
        DidState.from_record(record + extra)


# --------------------------------------------------------------------------
# Real states: sizes and every byte of truncation
# --------------------------------------------------------------------------


def _real_states() -> tuple[DidState, DidState]:
    led = MemLedger()
    one = led.submit(new_create(with_ka=False)[1])
    two = led.submit(new_create()[1])
    return one, two


def test_a_one_key_did_fits_in_about_250_bytes() -> None:
    one, two = _real_states()
    record = one.to_record()
    assert len(record) == HEAD + len(one.did) + 32 + KEY_FIXED + len("key-1") + len(one.keys[0].multibase)
    assert len(record) <= 255 and len(two.to_record()) <= 340
    assert len(canonical.encode(one.to_json())) > 2 * len(record)  # the JSON view it replaces


def test_truncation_at_every_byte_and_a_trailing_byte_are_refused() -> None:
    for state in _real_states():
        record = state.to_record()
        assert DidState.from_record(record) == state
        assert DidState.from_record(bytearray(record)) == state and DidState.from_record(memoryview(record)) == state
        for cut in range(len(record)):
            with pytest.raises(StoreCorrupted):
                DidState.from_record(record[:cut])
        with pytest.raises(StoreCorrupted):
            DidState.from_record(record + b"\x00")


# --------------------------------------------------------------------------
# Every field out of range
# --------------------------------------------------------------------------


def _one_key() -> tuple[DidState, bytes, int]:
    """A one-key DID (no controller, service or resource), its record and the offset of its key."""
    one, _ = _real_states()
    return one, one.to_record(), HEAD + len(one.did) + 32


def _patched(record: bytes, offset: int, value: bytes) -> bytes:
    return record[:offset] + value + record[offset + len(value) :]


@pytest.mark.parametrize(
    ("what", "offset", "value"),
    [
        ("version 0", 0, b"\x00"),
        ("version 2", 0, b"\x02"),
        ("the old JSON format's '{'", 0, b"{"),
        ("status 2", 38, b"\x02"),
        ("next of 31 bytes", 39, b"\x1f"),
        ("next of 33 bytes", 39, b"\x21"),
        ("a DID longer than the record", 1, b"\xff"),
        ("an invalid UTF-8 DID", HEAD, b"\xff"),
        ("one controller too many", 72, b"\x01"),
        ("services that are not there", 73, b"\x00\x05"),
        ("one key too many", 75, b"\x00\x02"),
        ("resources that are not there", 77, b"\x00\x02"),
    ],
)
def test_a_bad_header_field_is_refused(what: str, offset: int, value: bytes) -> None:
    _, record, _ = _one_key()
    with pytest.raises(StoreCorrupted):
        DidState.from_record(_patched(record, offset, value))


@pytest.mark.parametrize(
    ("what", "offset", "value"),
    [
        ("key type 2", 4, b"\x02"),
        ("no purpose", 5, b"\x00"),
        ("an unknown purpose bit", 5, b"\x0a"),
        ("keyAgreement on an Ed25519 key", 5, b"\x04"),
        ("authentication on an X25519 key", 4, b"\x01\x02"),
        ("fate 3", 6, b"\x03"),
        ("endedSeq -2", 19, b"\xff\xff\xff\xfe"),
        ("endedPos -2", 23, b"\xff" * 7 + b"\xfe"),
        ("an id longer than the record", 0, b"\xff"),
        ("a reason that is not there", 2, b"\x00\x01"),
    ],
)
def test_a_bad_key_field_is_refused(what: str, offset: int, value: bytes) -> None:
    _, record, at = _one_key()
    with pytest.raises(StoreCorrupted):
        DidState.from_record(_patched(record, at + offset, value))


def test_the_key_offsets_used_above_are_the_documented_ones() -> None:
    state, record, at = _one_key()
    k = state.keys[0]
    fields = struct.unpack_from(">BBHBBBIQiq", record, at)
    assert fields == (len(k.id), len(k.multibase), 0, 0, 3, 0, 0, k.added_pos, -1, -1)
    assert record[at + KEY_FIXED :] == (k.id + k.multibase).encode()


def _with_json(state: DidState, services: bytes = b"", resources: bytes = b"") -> bytes:
    """``state``'s record with the services and resources parts replaced by raw bytes."""
    base = replace(state, services=(), resources=()).to_record()
    head = _patched(base, 73, len(services).to_bytes(2, "big"))
    head = _patched(head, 77, len(resources).to_bytes(2, "big"))
    at = HEAD + len(state.did) + 32  # no controllers
    return head[:at] + services + head[at:] + resources


@pytest.mark.parametrize(
    "services",
    [
        b"[]",  # an empty list is written as length 0, never as "[]"
        b'[{"id":"s","serviceEndpoint":"https://x","type":"T"} ]',  # not canonical
        b'[{"type":"T","id":"s","serviceEndpoint":"https://x"}]',  # members out of order
        b'[{"id":"s","serviceEndpoint":"https://x"}]',  # a member missing
        b'[{"id":"s","serviceEndpoint":"https://x","type":1}]',  # a member of the wrong type
        b'[{"id":"s","serviceEndpoint":"https://x","type":"T","x":"y"}]',  # an extra member
        b'{"id":"s"}',  # not a list
        b"[1]",
        b"\xff",
    ],
)
def test_ill_formed_services_are_refused(services: bytes) -> None:
    state, _, _ = _one_key()
    good = _with_json(state, services=b'[{"id":"s","serviceEndpoint":"https://x","type":"T"}]')
    assert DidState.from_record(good).services == ({"id": "s", "type": "T", "serviceEndpoint": "https://x"},)
    with pytest.raises(StoreCorrupted):
        DidState.from_record(_with_json(state, services=services))


@pytest.mark.parametrize(
    "resources",
    [
        b"[]",
        b'[{"hash":"ab","id":"r","mediaType":"a/b","pos":1,"seq":true}]',
        b'[{"hash":"ab","id":"r","mediaType":"a/b","pos":"1","seq":1}]',
        b'[{"hash":"ab","id":"r","mediaType":"a/b","pos":1.0,"seq":1}]',
        b'[{"hash":"ab","id":"r","mediaType":"a/b","pos":1}]',
    ],
)
def test_ill_formed_resources_are_refused(resources: bytes) -> None:
    state, _, _ = _one_key()
    good = _with_json(state, resources=b'[{"hash":"ab","id":"r","mediaType":"a/b","pos":1,"seq":2}]')
    assert DidState.from_record(good).resources == ({"id": "r", "mediaType": "a/b", "hash": "ab", "pos": 1, "seq": 2},)
    with pytest.raises(StoreCorrupted):
        DidState.from_record(_with_json(state, resources=resources))


def test_the_old_json_record_is_refused() -> None:
    state, _, _ = _one_key()
    with pytest.raises(StoreCorrupted, match="unknown version 123"):
        DidState.from_record(canonical.encode(state.to_json()))


# --------------------------------------------------------------------------
# States that have no record
# --------------------------------------------------------------------------


def test_a_state_outside_the_encoding_is_refused_when_encoding() -> None:
    state, _, _ = _one_key()
    key = state.keys[0]
    for bad in (
        replace(state, last=state.last.upper()),
        replace(state, last=state.last[:-2]),
        replace(state, last=state.last[:32] + " " + state.last[32:]),
        replace(state, next="ab" * 16),
        replace(state, next="zz"),
        replace(state, status="suspended"),
        replace(state, seq=2**32),
        replace(state, created_pos=-1),
        replace(state, keys=(replace(key, purposes=("authentication", "assertionMethod")),)),
        replace(state, keys=(replace(key, purposes=("keyAgreement",)),)),
        replace(state, keys=(replace(key, kind=X25519),)),
        replace(state, keys=(replace(key, fate="lost"),)),
        replace(state, keys=(replace(key, ended_seq=-2),)),
        replace(state, keys=(replace(key, ended_pos=2**63),)),
        replace(state, keys=(replace(key, id="k" * 256),)),
        replace(state, keys=(replace(key, reason="\ud800"),)),
        replace(state, controllers=("d" * 256,)),
    ):
        with pytest.raises(ValueError):
            bad.to_record()
