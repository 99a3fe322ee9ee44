"""Random status list indices: the permutation, the sealed allocation record, and :class:`StatusLists`
allocating through a ledger's compare-and-set (an in-memory ledger: no node, no network).

What a reader of the ledger sees is checked with the standard library (JSON, base64, gzip)
only, independently of our decoders: no count in the lists, an opaque allocation record.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from typing import Callable

import pytest
from didnode import errors
from didnode.client.status_lists import StatusLists
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.credentials import DEVICE_ATTESTATION, Issuer, device_attestation_claims
from didnode.core.credentials.allocation import AllocationRecord, new_record, open_record, seal_record
from didnode.core.credentials.status_list import MIN_ENTRIES, Bitstring
from didnode.core.keystate import DidState
from didnode.core.results import Receipt, Resource
from tests.core.credentials.helpers import T0, TimedLedger, device
from tests.factory import Identity

SEED = bytes(range(32))
DID = "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE"


def counter_bytes(label: str) -> Callable[[int], bytes]:
    """Deterministic "randomness" (the core takes it as a parameter)."""
    state = {"n": 0}

    def draw(n: int) -> bytes:
        state["n"] += 1
        return hashlib.shake_256(f"{label}/{state['n']}".encode()).digest(n)

    return draw


class MemAccess:
    """:class:`~didnode.client.status_lists.LedgerAccess` over a :class:`TimedLedger`; ``before_submit`` runs once, first."""

    def __init__(self, ledger: TimedLedger) -> None:
        self.ledger = ledger
        self.before_submit: Callable[[], None] | None = None

    def state(self, did: str) -> DidState:
        return self.ledger.resolve(did)

    def resource(self, did: str, resource_id: str) -> Resource:
        content = self.ledger.fetch(did, resource_id)
        return Resource(did, resource_id, "", content, 0, 0, 0, b"")

    def submit(self, op: SignedOperation) -> Receipt:
        hook, self.before_submit = self.before_submit, None
        if hook is not None:
            hook()
        st = self.ledger.submit(op)
        return Receipt(self.ledger.position - 1, st.updated_time, b"", st.did, "publish", st.seq)


def lists_for(ledger: TimedLedger, ident: Identity, iss: Issuer, label: str = "r", **kw: object) -> tuple[StatusLists, MemAccess]:
    access = MemAccess(ledger)
    return StatusLists(access, iss, ident.keys[iss.key_id], ledger.network, clock_ms=lambda: ledger.time, random_bytes=counter_bytes(label), **kw), access  # type: ignore[arg-type]


def subject_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["credentialSubject"]  # type: ignore[no-any-return]


# -- the permutation and the record ------------------------------------------------------------------


def test_the_permutation_is_a_bijection_fixed_by_its_key() -> None:
    rec = AllocationRecord(bytes(32), MIN_ENTRIES, 0)
    every = rec.indices(0, MIN_ENTRIES)
    assert sorted(every) == list(range(MIN_ENTRIES)) and list(every) != list(range(MIN_ENTRIES))
    assert every == AllocationRecord(bytes(32), MIN_ENTRIES, 7).indices(0, MIN_ENTRIES)
    assert AllocationRecord(b"\x01" + bytes(31), MIN_ENTRIES, 0).indices(0, 16) != every[:16]
    some = AllocationRecord(bytes(32), MIN_ENTRIES, 100)
    assert all(some.is_allocated(i) for i in every[:100]) and not any(some.is_allocated(i) for i in every[100:200])
    assert not some.is_allocated(-1) and not some.is_allocated(MIN_ENTRIES)


def test_indices_are_uniform_over_the_list() -> None:
    # 8 equal bins of the list; chi-square with 7 degrees of freedom (30 is p ~ 1e-4).
    indices = new_record(counter_bytes("uniform")).indices(0, 8192)
    counts = [0] * 8
    for i in indices:
        counts[i * 8 // MIN_ENTRIES] += 1
    chi2 = sum((c - 1024) ** 2 / 1024 for c in counts)
    assert chi2 < 30, counts
    ascending = sum(a < b for a, b in zip(indices, indices[1:]))
    assert 0.4 < ascending / (len(indices) - 1) < 0.6  # no order: issuance order is not in the indices


@pytest.mark.parametrize(("size", "allocated"), [(MIN_ENTRIES + 8, 0), (MIN_ENTRIES, MIN_ENTRIES + 1), (MIN_ENTRIES, -1), (MIN_ENTRIES - 8, 0)])
def test_bad_records_are_refused(size: int, allocated: int) -> None:
    if size == MIN_ENTRIES + 8:
        with pytest.raises(errors.InvalidArgument):
            AllocationRecord(bytes(31), size, allocated)
        return
    with pytest.raises(errors.InvalidArgument):
        AllocationRecord(bytes(32), size, allocated)


def test_taking_hands_out_within_the_list() -> None:
    rec = AllocationRecord(bytes(32), MIN_ENTRIES, MIN_ENTRIES - 2)
    assert rec.taking(2).free == 0
    for n in (0, 3):
        with pytest.raises(errors.InvalidArgument):
            rec.taking(n)


def test_sealed_record_opens_only_with_its_key_and_resource_and_hides_the_count() -> None:
    rec = AllocationRecord(bytes(range(32)), MIN_ENTRIES, 12_345)
    sealed = seal_record(rec, DID, "allocation-1", "key-1", SEED, bytes(24))
    assert open_record(sealed, DID, "allocation-1", {"key-1": SEED}) == rec
    doc = json.loads(sealed)  # what any reader of the ledger sees
    assert set(doc) == {"box", "key", "type"} and doc["key"] == "key-1" and "12345" not in sealed
    assert open_record(sealed, DID, "allocation-1", {"key-1": bytes(32)}) is None  # another key
    assert open_record(sealed, DID, "allocation-1", {"key-2": SEED}) is None  # sealed with key-1
    assert open_record(sealed, DID, "allocation-2", {"key-1": SEED}) is None  # moved to another list
    box = bytearray(base64.urlsafe_b64decode(doc["box"] + "=="))
    box[-1] ^= 1
    altered = json.dumps({**doc, "box": base64.urlsafe_b64encode(bytes(box)).decode().rstrip("=")})
    assert open_record(altered, DID, "allocation-1", {"key-1": SEED}) is None
    for junk in ("", "{}", "[]", "x" * 600, json.dumps({**doc, "type": "other"})):
        assert open_record(junk, DID, "allocation-1", {"key-1": SEED}) is None
    # The same size whatever the count: the record's length says nothing either.
    assert len(seal_record(AllocationRecord(rec.key, MIN_ENTRIES, 0), DID, "allocation-1", "key-1", SEED, bytes(24))) == len(sealed)


# -- StatusLists over a ledger -----------------------------------------------------------------------


def test_random_allocation_end_to_end() -> None:
    ledger = TimedLedger()
    ident, iss = ledger.new_issuer()
    dev = device(ledger)
    lists, _ = lists_for(ledger, ident, iss)
    got = [lists.allocate(1) for _ in range(12)]
    indices = [a.indices[0] for a in got]
    assert all(a.number == 1 for a in got) and len(set(indices)) == 12 and indices != sorted(indices)
    assert [a.start for a in got] == list(range(12))
    # What the ledger shows: lists without a count, an opaque allocation record (standard library only).
    for rid in ("revocation-1", "suspension-1"):
        subject = subject_of(ledger.fetch(ident.did, rid))
        assert "allocated" not in subject and set(subject) == {"id", "type", "statusPurpose", "encodedList"}
        assert subject["id"] == f"http://127.0.0.1:8080/1.0/identifiers/{ident.did}?resource={rid}#list"
    assert set(json.loads(ledger.fetch(ident.did, "allocation-1"))) == {"box", "key", "type"}
    record = lists.record(1)
    assert record is not None and record.allocated == 12 and all(record.is_allocated(i) for i in indices)
    # A credential with one of the indices verifies; revoking that index revokes it (and only it).
    token = iss.issue(dev.did, [DEVICE_ATTESTATION], device_attestation_claims("X", "S", "h", "f", T0), ledger.time, status=iss.status_entries(1, indices[5]))
    assert ledger.verifier().verify(token, ledger.time + 1000).valid
    lists.set_status("revocation", 1, indices[5], True)
    assert ledger.verifier().verify(token, ledger.time + 1000).reason == "REVOKED"
    raw = gzip.decompress(base64.urlsafe_b64decode(subject_of(ledger.fetch(ident.did, "revocation-1"))["encodedList"][1:] + "=="))
    assert [i for i in range(MIN_ENTRIES) if raw[i // 8] & (0x80 >> (i % 8))] == [indices[5]]
    never = next(i for i in range(MIN_ENTRIES) if not record.is_allocated(i))
    with pytest.raises(errors.InvalidArgument):
        lists.set_status("suspension", 1, never, True)


def test_a_competing_device_makes_the_allocation_retry_on_the_new_state() -> None:
    ledger = TimedLedger()
    ident, iss = ledger.new_issuer()
    a, access = lists_for(ledger, ident, iss, "a")
    b, _ = lists_for(ledger, ident, Issuer(ident.did, iss.key_id, ident.key), "b")
    first = a.allocate(1)
    won: list[int] = []
    access.before_submit = lambda: won.extend(b.allocate(3).indices)  # b publishes between a's read and a's publish
    second = a.allocate(2)
    assert len(won) == 3 and second.start == 4 and len({first.indices[0], *won, *second.indices}) == 6
    rec = a.record(1)
    assert rec is not None and rec.allocated == 6


def test_lists_of_sequential_allocation_are_kept_but_not_allocated_in() -> None:
    ledger = TimedLedger()
    ident, _ = ledger.new_issuer()
    legacy = Issuer(ident.did, ident.current, ident.key, None)
    ledger.publish(ident, "suspension-1", legacy.status_list("suspension", 1, Bitstring(), ledger.time))
    ledger.publish(ident, "revocation-1", legacy.status_list("revocation", 1, Bitstring(), ledger.time, allocated=5))
    lists, _ = lists_for(ledger, ident, Issuer(ident.did, ident.current, ident.key))
    assert lists.allocate(1).number == 2
    lists.set_status("revocation", 1, 3, True)
    with pytest.raises(errors.InvalidArgument):
        lists.set_status("suspension", 1, 5, True)
    republished = subject_of(ledger.fetch(ident.did, "revocation-1"))
    assert republished["allocated"] == 5 and republished["id"] == f"{ident.did}?resource=revocation-1#list"  # its id is kept


def test_a_list_created_by_an_interrupted_allocation_is_taken_up() -> None:
    ledger = TimedLedger()
    ident, iss = ledger.new_issuer()
    ledger.publish(ident, "suspension-1", iss.status_list("suspension", 1, Bitstring(), ledger.time))
    ledger.publish(ident, "revocation-1", iss.status_list("revocation", 1, Bitstring(), ledger.time))
    lists, _ = lists_for(ledger, ident, iss)
    assert lists.allocate(1).number == 1


def test_a_record_sealed_with_a_key_not_held_moves_allocation_to_a_new_list() -> None:
    ledger = TimedLedger()
    ident, old = ledger.new_issuer()
    old_key = ident.key
    lists, _ = lists_for(ledger, ident, old, "old")
    first = lists.allocate(1)
    new = ledger.rotate(ident)
    blind, _ = lists_for(ledger, ident, new, "blind")
    assert blind.record(1) is None and blind.allocate(1).number == 2
    # Holding the rotated-out key as well, the issuer goes on in list 1 (resealed under its new key).
    seeing, _ = lists_for(ledger, ident, new, "seeing", keys={old.key_id: old_key})
    later = seeing.allocate(1)
    assert later.number == 2  # list 2 is newer and has room
    assert seeing.record(1) is not None and seeing.record(1).allocated == 1 and first.indices[0] not in later.indices  # type: ignore[union-attr]


def test_allocation_bounds() -> None:
    ledger = TimedLedger()
    ident, iss = ledger.new_issuer()
    lists, _ = lists_for(ledger, ident, iss)
    for n in (0, MIN_ENTRIES + 1):
        with pytest.raises(errors.InvalidArgument):
            lists.allocate(n)
    whole = lists.allocate(MIN_ENTRIES)
    assert sorted(whole.indices) == list(range(MIN_ENTRIES))
    assert lists.allocate(1).number == 2  # list 1 is full
    with pytest.raises(errors.InvalidArgument):
        lists.set_status("revocation", 1, 0, False)

