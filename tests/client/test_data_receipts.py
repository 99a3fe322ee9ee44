"""Receipts end to end on a real node: segments anchored by a gateway, GetAnchor, verification online and offline,
and every tampering refused with its reason (issue #19)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.client import Client
from didnode.client.aio import AsyncClient
from didnode.client.trust import policy_from_node
from didnode.core import builder
from didnode.core.data import receipt as rc
from didnode.core.data.records import Record, decode_record
from didnode.core.encoding import b64url_decode
from didnode.core.trust import TrustedKey
from tests.conftest import RunningNode, start_node
from tests.core.data.receipt_world import Device, anchor, create
from tests.factory import new_create

NET = "local"


class World:
    def __init__(self, node: RunningNode) -> None:
        self.node = node
        with Client(node.address) as c:
            self.policy = policy_from_node(c)
            self.gateway = create(c, NET)
            self.admin = create(c, NET)
            ident, op = new_create([self.admin], network=NET)
            c.submit(op)
            self.device = Device(ident, NET)
            self.seg1 = self.device.segment(5)
            self.seg2 = self.device.segment(8)
            self.pos1 = anchor(c, self.gateway, [self.seg1.signed, self.seg2.signed], NET)
            self.anchor = c.anchor(self.device.did, "temp", 9)
            self.receipt = rc.build(self.seg2.reading(9), self.anchor, NET)
            # key-1 revoked after the anchor: earlier readings keep verifying
            st = c.state(self.device.did)
            c.submit(builder.sign(builder.revoke(NET, self.device.did, st.seq + 1, st.last, "key-1", "compromised"), [(self.admin.kid, self.admin.key)]))
            self.revoked_at = c.state(self.device.did).key("key-1").ended_pos
            self.after = c.anchor(self.device.did, "temp", 2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    n = start_node(tmp_path_factory.mktemp("receipts") / "node")
    try:
        yield World(n)
    finally:
        n.stop()


def test_get_anchor_answers_the_covering_head(world: World) -> None:
    a = world.anchor
    assert (a.position, a.head_index, a.first, a.count) == (world.pos1, 1, 5, 8)
    assert a.checkpoint.tree_size > a.position and a.checkpoint.note
    with Client(world.node.address) as c:
        first = c.anchor(world.device.did, "temp", 0)
        assert (first.head_index, first.first, first.count) == (0, 0, 5)
        with pytest.raises(errors.UnknownAnchor):
            c.anchor(world.device.did, "temp", 13)
        with pytest.raises(errors.UnknownAnchor):
            c.anchor(world.device.did, "other", 0)
        with pytest.raises(errors.InvalidInput):
            c.anchor(world.device.did, "bad stream!", 0)

    async def aio() -> int:
        async with AsyncClient(world.node.address) as ac:
            return (await ac.anchor(world.device.did, "temp", 3)).count

    assert asyncio.run(aio()) == 5


def test_receipt_verifies_and_says_what_it_proves(world: World) -> None:
    proven = rc.verify(world.receipt, world.policy)
    assert (proven.did, proven.key_id, proven.stream, proven.seq) == (world.device.did, "key-1", "temp", 9)
    assert proven.payload == world.seg2.payloads[4] and proven.payload_present
    assert proven.position == world.pos1 and proven.checkpoint_size > world.pos1
    assert proven.signers == 1 and proven.cosigners == 0
    # a key revoked after the anchor: valid at the anchor's position, and the receipt says when it ended
    assert proven.key_fate == "current" and proven.key_ended == -1
    later = rc.build(world.seg1.reading(2), world.after, NET)
    p2 = rc.verify(later, world.policy)
    assert p2.key_fate == "revoked" and p2.key_ended == world.revoked_at > p2.position == world.pos1


def test_file_round_trip_and_withheld_payload(world: World) -> None:
    again = rc.loads(rc.dumps(world.receipt))
    assert again == world.receipt
    hidden = rc.build(world.seg2.reading(9), world.anchor, NET, withhold_payload=True)
    assert hidden.payload is None and hidden.salt is None
    p = rc.verify(rc.loads(rc.dumps(hidden)), world.policy)
    assert p.payload is None and not p.payload_present and p.commitment == decode_record(world.seg2.records[4]).commitment
    assert rc.verify(rc.withheld(world.receipt), world.policy).payload is None


def _flip(b: bytes, at: int = -1) -> bytes:
    out = bytearray(b)
    out[at] ^= 1
    return bytes(out)


def _invalid(receipt: rc.Receipt, policy: object, what: str) -> None:
    with pytest.raises(errors.ReceiptInvalid) as e:
        rc.verify(receipt, policy)  # type: ignore[arg-type]
    assert e.value.details.get("what") == what, str(e.value)


def test_tampering_is_refused_with_its_reason(world: World) -> None:
    r, p = world.receipt, world.policy
    assert r.payload is not None and r.salt is not None
    _invalid(replace(r, payload=r.payload + b" "), p, "payload")
    _invalid(replace(r, salt=_flip(r.salt)), p, "payload")
    _invalid(replace(r, proof=(_flip(r.proof[0]),) + r.proof[1:]), p, "merkle proof")
    _invalid(replace(r, index=r.index - 1), p, "merkle proof")
    _invalid(replace(r, signed_head=_flip(r.signed_head)), p, "head")
    _invalid(replace(r, entry=_flip(r.entry)), p, "inclusion")
    _invalid(replace(r, inclusion=(_flip(r.inclusion[0]),) + r.inclusion[1:]), p, "inclusion")
    _invalid(replace(r, head_index=0), p, "head")
    _invalid(replace(r, state_proof=_flip(r.state_proof, 40)), p, "state proof")
    _invalid(replace(r, state_record=_flip(r.state_record, 20)), p, "state proof")
    _invalid(replace(r, network="other"), p, "network")


def test_a_forged_record_under_a_valid_root_is_refused(world: World) -> None:
    r = world.receipt
    rec = decode_record(r.record)
    forged = Record(rec.did, rec.stream, rec.seq, rec.device_time + 1, rec.commitment).encode()
    _invalid(replace(r, record=forged), world.policy, "merkle proof")
    # another reading's record (a valid leaf of the same root) at this reading's index
    other = world.seg2.records[3]
    _invalid(replace(r, record=other), world.policy, "merkle proof")
    # a record of another stream, under the same proof
    _invalid(replace(r, record=Record(rec.did, "other", rec.seq, rec.device_time, rec.commitment).encode()), world.policy, "record")


def test_checkpoint_problems_are_trust_errors(world: World) -> None:
    r, p = world.receipt, world.policy
    note = r.note
    body, _, sigs = note.partition(b"\n\n")
    sig_line = sigs.split(b"\n")[0]
    dash, name, b64 = sig_line.split(b" ")
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    bad = body + b"\n\n" + dash + b" " + name + b" " + base64.b64encode(bytes(raw)) + b"\n"
    with pytest.raises(errors.BadCheckpointSignature):
        rc.verify(replace(r, note=bad), p)
    other = replace(p, keys=(TrustedKey(p.keys[0].kid, bytes(SigningKey.generate().verify_key)),))
    with pytest.raises(errors.UntrustedCheckpointSigner):
        rc.verify(r, other)
    with pytest.raises(errors.GenesisMismatch):
        rc.verify(r, replace(p, genesis=hashlib.sha256(b"another ledger").digest()))
    with pytest.raises(errors.GenesisMismatch):
        rc.verify(replace(r, genesis_consistency=r.genesis_consistency[:-1]), p)


def test_receipt_verifies_offline_after_the_node_is_gone(tmp_path: Path) -> None:
    n = start_node(tmp_path / "node")
    try:
        with Client(n.address) as c:
            policy = policy_from_node(c)
            gw = create(c, NET)
            dev = Device(create(c, NET), NET, stream="log")
            seg = dev.segment(3)
            anchor(c, gw, [seg.signed], NET)
            text = rc.dumps(rc.build(seg.reading(1), c.anchor(dev.did, "log", 1), NET))
    finally:
        n.stop()
    (tmp_path / "r.json").write_text(text)
    proven = rc.verify(rc.loads((tmp_path / "r.json").read_bytes()), policy)
    assert proven.seq == 1 and proven.payload == seg.payloads[1]
    assert b64url_decode(rc.to_json(rc.loads(text))["reading"]["record"]) == seg.records[1]
