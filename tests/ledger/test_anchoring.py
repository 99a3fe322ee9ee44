"""Device data anchoring on a real LMDB ledger through the node's own apply path: each bad head with its reason,
all or nothing, chaining, equivocation evidence, the anchored-head index, quotas and the audit."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest

from didnode import errors
from didnode.core import builder
from didnode.core.data.anchoring import AnchorRow, StreamState
from didnode.core.data.heads import MAX_COUNT, ZERO_HASH
from didnode.core.governance.policy import PUBLISHES, CreateQuota, PublishQuota
from didnode.core.operations import MAX_HEADS, MAX_PUBLISH_PAYLOAD_BYTES
from didnode.core.results import Receipt
from didnode.ledger.audit import audit
from didnode.store import layout
from tests.core.governance.world import governed
from tests.factory import NET, Identity, adopt_rotation, new_create, rotate_op
from tests.ledger.data_world import Stream, anchor
from tests.ledger.governed_ledger import GovLedger

HOUR = 3600


def ok(outcome: object) -> Receipt:
    assert isinstance(outcome, Receipt), outcome
    return outcome


def rejected(outcome: object, cls: type[errors.DidnodeError]) -> errors.DidnodeError:
    assert isinstance(outcome, cls), outcome
    assert type(outcome) is cls, outcome
    return outcome


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[GovLedger]:
    led = GovLedger(tmp_path / "node")
    yield led
    led.close()


def world(ledger: GovLedger, devices: int = 1) -> tuple[Identity, Identity, list[Identity]]:
    """(admin, gateway, devices): the admin controls the devices (it revokes and deactivates them)."""
    admin, admin_op = new_create()
    gateway, gateway_op = new_create()
    made = [new_create(controllers=[admin]) for _ in range(devices)]
    for o in ledger.submit([admin_op, gateway_op] + [op for _, op in made]):
        ok(o)
    return admin, gateway, [d for d, _ in made]


def stream_state(ledger: GovLedger, did: str, name: str = "temp") -> StreamState | None:
    with ledger.store.read() as txn:
        return ledger.tables.stream_state(txn, did, name)


def covering(ledger: GovLedger, did: str, seq: int, name: str = "temp") -> tuple[int, AnchorRow] | None:
    with ledger.store.read() as txn:
        return ledger.tables.covering_anchor(txn, did, name, seq)


def table(ledger: GovLedger, db: object) -> dict[bytes, bytes]:
    with ledger.store.read() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor(db=db)}


def state_of(ledger: GovLedger, did: str):  # type: ignore[no-untyped-def]
    with ledger.store.read() as txn:
        return ledger.tables.get_state(txn, did)


def controlled(ledger: GovLedger, admin: Identity, unsigned_of) -> Receipt:  # type: ignore[no-untyped-def]
    return ok(ledger.one(builder.sign(unsigned_of(), [(admin.kid, admin.key)])))


# --------------------------------------------------------------------------
# Accepted heads, chaining, the index
# --------------------------------------------------------------------------


def test_heads_chain_within_one_op_and_across_ops(ledger: GovLedger) -> None:
    _, gw, (dev,) = world(ledger)
    s = Stream(dev)
    r = ok(ledger.one(anchor(ledger, gw, [s.head(10), s.head(5), s.head(1)])))
    assert r.type == "anchor" and r.did == gw.did
    st = stream_state(ledger, dev.did)
    assert st == StreamState(16, s.last, 3, r.position)
    r2 = ok(ledger.one(anchor(ledger, gw, [s.head(4)])))
    assert stream_state(ledger, dev.did) == StreamState(20, s.last, 4, r2.position)


def test_covering_anchor_finds_the_head_of_every_seq_it_covers_and_no_other(ledger: GovLedger) -> None:
    _, gw, (dev,) = world(ledger)
    s = Stream(dev)
    other = Stream(dev, "other")
    r = ok(ledger.one(anchor(ledger, gw, [s.head(3), s.head(7), other.head(2)])))
    r2 = ok(ledger.one(anchor(ledger, gw, [s.head(1)])))
    expected = [(0, 0, 3, s.heads[0]), (3, 1, 7, s.heads[1])]
    for first, index, count, head in expected:
        for seq in range(first, first + count):
            assert covering(ledger, dev.did, seq) == (first, AnchorRow(r.position, index, count, head.hash))
    assert covering(ledger, dev.did, 10) == (10, AnchorRow(r2.position, 0, 1, s.heads[2].hash))
    assert covering(ledger, dev.did, 11) is None and covering(ledger, dev.did, 2**53) is None
    assert covering(ledger, dev.did, 1, "other") == (0, AnchorRow(r.position, 2, 2, other.heads[0].hash))
    assert covering(ledger, dev.did, 2, "other") is None
    assert covering(ledger, dev.did, 0, "none") is None
    assert covering(ledger, gw.did, 0) is None


def test_anchors_in_one_batch_chain_and_judge_alike(ledger: GovLedger) -> None:
    _, gw, devs = world(ledger, 3)
    streams = [Stream(d) for d in devs]
    first = anchor(ledger, gw, [s.head(2) for s in streams])
    prev = hashlib.sha256(first.payload).hexdigest()
    seq = state_of(ledger, gw.did).seq + 1
    second = anchor(ledger, gw, [s.head(3) for s in streams], seq + 1, prev)
    bad = anchor(ledger, gw, [streams[0].head(1, first=100, advance=False)], seq + 2, hashlib.sha256(second.payload).hexdigest())
    outs = ledger.submit([first, second, bad])
    ok(outs[0]), ok(outs[1])
    rejected(outs[2], errors.SequenceGap)
    for s in streams:
        assert stream_state(ledger, s.device.did) == StreamState(5, s.last, 2, outs[1].position)


def test_a_head_of_a_device_created_in_the_same_batch_is_verified_by_the_writer(ledger: GovLedger) -> None:
    _, gw, _ = world(ledger)
    dev, dev_op = new_create()
    s = Stream(dev)
    good = anchor(ledger, gw, [s.head(4)])
    outs = ledger.submit([dev_op, good])
    ok(outs[0]), ok(outs[1])
    assert stream_state(ledger, dev.did).next_seq == 4
    # The same, with a head signed by a key that is not the new device's: the writer verifies it and refuses it.
    dev2, dev2_op = new_create()
    s2 = Stream(dev2)
    forged = anchor(ledger, gw, [s2.head(4, key=new_create()[0].key)])
    outs = ledger.submit([dev2_op, forged])
    ok(outs[0])
    rejected(outs[1], errors.InvalidSignature)
    assert stream_state(ledger, dev2.did) is None


# --------------------------------------------------------------------------
# Each bad head with its reason
# --------------------------------------------------------------------------


def test_a_head_by_a_rotated_out_key_after_its_rotation_is_refused(ledger: GovLedger) -> None:
    _, gw, (dev,) = world(ledger)
    s = Stream(dev)
    before = s.head(5, advance=False)  # signed before the rotation, anchored after it
    unsigned, auth, nxt, key_id = rotate_op(dev, state_of(ledger, dev.did))
    ok(ledger.one(builder.sign(unsigned, [(builder.next_kid(dev.did), dev.next_key)])))
    old_key, old_id = dev.key, dev.current
    adopt_rotation(dev, auth, nxt, key_id)
    err = rejected(ledger.one(anchor(ledger, gw, [before])), errors.KeyRotated)
    assert err.details["kid"] == f"{dev.did}#{old_id}" and err.details["head"] == "0"
    rejected(ledger.one(anchor(ledger, gw, [s.head(5, key_id=old_id, key=old_key, advance=False)])), errors.KeyRotated)
    ok(ledger.one(anchor(ledger, gw, [s.head(5)])))  # the new key's head


def test_a_head_by_a_revoked_key_is_refused(ledger: GovLedger) -> None:
    admin, gw, (dev,) = world(ledger)
    s = Stream(dev)
    ok(ledger.one(anchor(ledger, gw, [s.head(3)])))
    st = state_of(ledger, dev.did)
    controlled(ledger, admin, lambda: builder.revoke(NET, dev.did, st.seq + 1, st.last, dev.current, "compromised"))
    err = rejected(ledger.one(anchor(ledger, gw, [s.head(3, advance=False)])), errors.KeyRevoked)
    assert err.details["kid"] == dev.kid
    assert stream_state(ledger, dev.did).next_seq == 3


def test_a_head_of_a_deactivated_did_is_refused(ledger: GovLedger) -> None:
    admin, gw, (dev,) = world(ledger)
    s = Stream(dev)
    st = state_of(ledger, dev.did)
    controlled(ledger, admin, lambda: builder.deactivate(NET, dev.did, st.seq + 1, st.last, "retired"))
    rejected(ledger.one(anchor(ledger, gw, [s.head(3, advance=False)])), errors.DidDeactivated)


def test_a_head_of_an_unknown_did_is_refused(ledger: GovLedger) -> None:
    _, gw, _ = world(ledger)
    stranger, _ = new_create()
    rejected(ledger.one(anchor(ledger, gw, [Stream(stranger).head(3)])), errors.UnknownDid)


def test_a_head_by_a_key_that_is_not_an_authentication_key_or_not_the_dids_is_refused(ledger: GovLedger) -> None:
    _, gw, _ = world(ledger)
    from nacl.signing import SigningKey

    auth, assertion, nxt = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    u = builder.create(NET, [builder.NewKey("key-1", bytes(auth.verify_key)), builder.NewKey("key-2", bytes(assertion.verify_key), ("assertionMethod",))], bytes(nxt.verify_key))
    ok(ledger.one(builder.sign(u, [(f"{u.did}#key-1", auth), (f"{u.did}#key-2", assertion)])))
    dev = Identity(u.did, {"key-1": auth, "key-2": assertion}, "key-1", nxt)
    s = Stream(dev)
    err = rejected(ledger.one(anchor(ledger, gw, [s.head(2, key_id="key-2", key=assertion, advance=False)])), errors.WrongSigner)
    assert "authentication" in str(err)
    err = rejected(ledger.one(anchor(ledger, gw, [s.head(2, key_id="key-9", key=auth, advance=False)])), errors.WrongSigner)
    assert err.details["kid"] == f"{dev.did}#key-9"
    ok(ledger.one(anchor(ledger, gw, [s.head(2)])))


def test_a_head_with_a_bad_signature_is_refused_by_the_rules_not_the_prepare_stage(ledger: GovLedger) -> None:
    _, gw, (dev,) = world(ledger)
    s = Stream(dev)
    good = s.head(2, advance=False)
    bad = bytearray(good.raw)
    bad[-1] ^= 1
    err = rejected(ledger.one(anchor(ledger, gw, [bytes(bad)])), errors.InvalidSignature)
    assert err.details["head"] == "0" and err.details["rejected"] == "0:BAD_SIGNATURE"
    # A head for another network: signed bytes name the network, so the signature does not verify here.
    err = rejected(ledger.one(anchor(ledger, gw, [s.head(2, network="prod", advance=False)])), errors.InvalidSignature)
    assert err.details["head"] == "0"
    ok(ledger.one(anchor(ledger, gw, [good])))


def test_a_gap_a_repeat_and_a_prev_mismatch_are_refused(ledger: GovLedger) -> None:
    _, gw, (dev,) = world(ledger)
    s = Stream(dev)
    h0 = s.head(5)
    ok(ledger.one(anchor(ledger, gw, [h0])))
    err = rejected(ledger.one(anchor(ledger, gw, [s.head(5, first=6, advance=False)])), errors.SequenceGap)
    assert err.details["expected"] == "5"
    first_pos = covering(ledger, dev.did, 0)[1].position  # type: ignore[index]
    err = rejected(ledger.one(anchor(ledger, gw, [h0])), errors.HeadRepeated)
    assert err.details["position"] == str(first_pos)
    # The first head of a stream must name zeros; a later one the last head.
    rejected(ledger.one(anchor(ledger, gw, [s.head(5, prev=ZERO_HASH, advance=False)])), errors.PrevHeadMismatch)
    rejected(ledger.one(anchor(ledger, gw, [s.head(5, prev=b"\x01" * 32, advance=False)])), errors.PrevHeadMismatch)
    # A stream's first head naming a prev does not even decode.
    rejected(ledger.one(anchor(ledger, gw, [Stream(dev, "fresh").head(5, prev=h0.hash)])), errors.MalformedHead)
    # Repeated within one operation.
    h1 = s.head(2)
    err = rejected(ledger.one(anchor(ledger, gw, [h1, h1])), errors.HeadRepeated)
    assert err.details["other"] == "0" and "position" not in err.details
    assert stream_state(ledger, dev.did).next_seq == 5


def test_equivocation_is_refused_and_kept_as_evidence(ledger: GovLedger) -> None:
    _, gw, (dev,) = world(ledger)
    s = Stream(dev)
    ok(ledger.one(anchor(ledger, gw, [s.head(5), s.head(5)])))
    anchored_at = covering(ledger, dev.did, 5)[1].position  # type: ignore[index]
    other = s.head(5, first=5, prev=s.heads[0].hash, salt=b"second", advance=False)  # another root over 5..9
    inside = s.head(2, first=6, prev=s.heads[0].hash, salt=b"x", advance=False)  # starts inside the anchored head
    err = rejected(ledger.one(anchor(ledger, gw, [other])), errors.Equivocation)
    assert err.details["did"] == dev.did and err.details["position"] == str(anchored_at)
    rejected(ledger.one(anchor(ledger, gw, [inside])), errors.Equivocation)
    evidence = table(ledger, ledger.tables.evidence_db)
    key = layout.anchor_key(dev.did, "temp", 5) + hashlib.sha256(other.raw).digest()
    assert evidence[key] == other.raw + layout.u64(anchored_at)
    key2 = layout.anchor_key(dev.did, "temp", 6) + hashlib.sha256(inside.raw).digest()
    assert evidence[key2] == inside.raw + layout.u64(anchored_at)
    assert len(evidence) == 2
    # Equivocation inside one operation: the second head over the same numbers. The first is anchored
    # nowhere (the anchor is refused), so the error names it by index and no evidence row points at a
    # position that does not hold it (this once named the refused anchor's own position).
    size = ledger.size()
    a = s.head(3)
    b = s.head(3, first=a.head.first, prev=a.head.prev, salt=b"b", advance=False)
    err = rejected(ledger.one(anchor(ledger, gw, [a, b])), errors.Equivocation)
    assert err.details["head"] == "1" and err.details["other"] == "0" and "position" not in err.details
    assert "head 0 of this anchor" in str(err) and f"position {size}" not in str(err)
    assert len(table(ledger, ledger.tables.evidence_db)) == 2


def test_an_oversized_anchor_is_too_large(ledger: GovLedger) -> None:
    _, gw, devs = world(ledger, 1)
    s = Stream(devs[0])
    heads = [s.head(1, advance=False) for _ in range(MAX_HEADS + 1)]
    # Every signed head is over 200 bytes (a DID is 56 characters), so 257 of them are over the
    # payload limit too: the size limits refuse such an anchor before its heads are counted.
    err = rejected(ledger.one(anchor(ledger, gw, heads)), errors.TooLarge)
    assert err.details["field"] in ("entry", "payload")
    # Fewer heads, over 64 KiB: streams with long names and DIDs make big heads.
    big = [Stream(devs[0], f"{'s' * 60}{i:04d}").head(1) for i in range(MAX_HEADS)]
    rejected(ledger.one(anchor(ledger, gw, big)), errors.TooLarge)
    assert stream_state(ledger, devs[0].did, big[0].head.stream) is None


def test_the_payload_limit_is_64_kib_for_fewer_heads(ledger: GovLedger) -> None:
    _, gw, (dev,) = world(ledger)
    heads = [Stream(dev, f"{'p' * 60}{i:04d}").head(1) for i in range(MAX_HEADS)]
    n = next(n for n in range(1, MAX_HEADS + 1) if len(anchor(ledger, gw, heads[:n]).payload) > MAX_PUBLISH_PAYLOAD_BYTES)
    op = anchor(ledger, gw, heads[:n])
    assert n < MAX_HEADS
    # A new submission: its log entry would not fit a tile bundle (just under 64 KiB) ...
    err = rejected(ledger.one(op), errors.TooLarge)
    assert err.details["field"] == "entry"
    # ... and an operation already ordered (a follower's) is held to the 64 KiB payload limit.
    from didnode.ledger.prepare import prepare_many

    (out,) = prepare_many([(op.payload, op.proofs)], NET, ledger.tables, new=False)
    err = rejected(out, errors.TooLarge)
    assert err.details["field"] == "payload"
    (fits,) = prepare_many([(anchor(ledger, gw, heads[: n - 1]).payload, op.proofs)], NET, ledger.tables, new=False)
    assert not isinstance(fits, errors.TooLarge)


# --------------------------------------------------------------------------
# All or nothing
# --------------------------------------------------------------------------


def test_one_bad_head_refuses_the_op_naming_every_bad_head_and_the_good_ones_go_through_after(ledger: GovLedger) -> None:
    admin, gw, devs = world(ledger, 4)
    streams = [Stream(d) for d in devs]
    ok(ledger.one(anchor(ledger, gw, [streams[1].head(2)])))
    st = state_of(ledger, devs[3].did)
    controlled(ledger, admin, lambda: builder.revoke(NET, devs[3].did, st.seq + 1, st.last, devs[3].current, "lost"))
    before = (table(ledger, ledger.tables.streams_db), table(ledger, ledger.tables.anchors_db))
    good = [streams[0].head(4, advance=False), streams[2].head(4, advance=False)]
    heads = [good[0], streams[1].head(2, first=9, advance=False), good[1], streams[3].head(1, advance=False)]
    err = rejected(ledger.one(anchor(ledger, gw, heads)), errors.SequenceGap)
    assert err.details["head"] == "1" and err.details["rejected"] == "1:SEQUENCE_GAP;3:KEY_REVOKED"
    assert (table(ledger, ledger.tables.streams_db), table(ledger, ledger.tables.anchors_db)) == before
    ok(ledger.one(anchor(ledger, gw, good)))
    assert stream_state(ledger, devs[0].did).next_seq == 4 and stream_state(ledger, devs[2].did).next_seq == 4


def test_the_anchor_is_signed_by_the_submitters_assertion_key(ledger: GovLedger) -> None:
    _, gw, (dev,) = world(ledger)
    s = Stream(dev)
    st = state_of(ledger, gw.did)
    op = builder.sign(builder.anchor(NET, gw.did, st.seq + 1, st.last, [s.head(1, advance=False).raw]), [(dev.kid, dev.key)])
    assert not isinstance(ledger.one(op), Receipt)


# --------------------------------------------------------------------------
# Governance: an anchor is a publish
# --------------------------------------------------------------------------


def test_an_anchor_counts_against_the_submitters_publish_quota(ledger: GovLedger) -> None:
    maker, maker_op = new_create()
    gov = governed(extra_genesis=[(maker, maker_op)], registrars={maker.did: CreateQuota(HOUR, 5, 8)}, publish=PublishQuota(HOUR, count=2))
    for o in ledger.submit(gov.genesis_ops()):
        ok(o)
    dev, dev_op = new_create(controllers=[maker])
    ok(ledger.one(dev_op))
    s = Stream(dev)
    ok(ledger.one(anchor(ledger, maker, [s.head(2)])))
    ok(ledger.one(anchor(ledger, maker, [s.head(2)])))
    err = rejected(ledger.one(anchor(ledger, maker, [s.head(2, advance=False)])), errors.QuotaExceeded)
    assert err.details["did"] == maker.did
    assert ledger.usage(maker.did, PUBLISHES).total_count == 2
    assert stream_state(ledger, dev.did).next_seq == 4


# --------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------


def test_the_audit_replays_anchors_and_catches_a_tampered_stream_row(tmp_path: Path) -> None:
    led = GovLedger(tmp_path / "node")
    admin, gw, devs = world(led, 3)
    streams = [Stream(d) for d in devs]
    ok(led.one(anchor(led, gw, [s.head(3) for s in streams])))
    rejected(led.one(anchor(led, gw, [streams[0].head(2, first=50, advance=False)])), errors.SequenceGap)
    ok(led.one(anchor(led, gw, [streams[0].head(2), streams[1].head(MAX_COUNT)])))
    size = led.size()
    led.close()
    report = audit(str(tmp_path / "node"), workers=0)
    assert report.entries == size
    assert audit(str(tmp_path / "node"), workers=2, chunk=2).state_root == report.state_root
    led = GovLedger(tmp_path / "node")
    key = layout.stream_key(devs[0].did, "temp")
    led.store.write(lambda txn: txn.put(key, StreamState(99, bytes(32), 2, 1).encode(), db=led.tables.streams_db))
    led.close()
    with pytest.raises(errors.AuditFailed, match="data stream state"):
        audit(str(tmp_path / "node"), workers=0)


def test_the_audit_catches_a_tampered_anchor_row(tmp_path: Path) -> None:
    led = GovLedger(tmp_path / "node")
    _, gw, (dev,) = world(led)
    s = Stream(dev)
    ok(led.one(anchor(led, gw, [s.head(3)])))
    key = layout.anchor_key(dev.did, "temp", 0)
    led.store.write(lambda txn: txn.put(key, AnchorRow(0, 0, 4, bytes(32)).encode(), db=led.tables.anchors_db))
    led.close()
    with pytest.raises(errors.AuditFailed, match="anchored-head index"):
        audit(str(tmp_path / "node"), workers=0)
