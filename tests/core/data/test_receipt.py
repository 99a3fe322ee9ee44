"""Receipts, pure (issue #19): the file format, and what verify refuses that the ledger would never write.

The ledger is a :class:`PaperLedger` (the node's codecs and trees, in memory), so a receipt
can hang from a ledger that accepted a head it should not have (a key revoked before the
anchor), and from checkpoints with witnesses' cosignatures or none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.core import builder, cosignature
from didnode.core import note as note_codec
from didnode.core.data import receipt as rc
from didnode.core.tlog_checkpoint import add_signatures
from didnode.core.trust import TrustedKey
from didnode.core.trust.historical import verify_historical
from didnode.core.trust.policy import WitnessKey
from tests.core.data.paper_ledger import NET, PaperLedger
from tests.core.data.receipt_world import Device


@pytest.fixture()
def paper() -> tuple[PaperLedger, Device, rc.Receipt]:
    ledger = PaperLedger()
    gateway = ledger.create("gateway")
    admin = ledger.create("admin")
    device = Device(ledger.create("device", (admin,)), NET)
    seg = device.segment(6, secret=b"s" * 32)
    position = ledger.anchor(gateway, [seg.signed])
    proof = ledger.anchor_proof(device.did, "temp", position, 0, 0, 6)
    return ledger, device, rc.build(seg.reading(4), proof, NET)


def test_round_trip_and_strict_parsing(paper: tuple[PaperLedger, Device, rc.Receipt]) -> None:
    ledger, _, r = paper
    text = rc.dumps(r)
    assert rc.loads(text) == r and rc.loads(text.encode()) == r
    doc = json.loads(text)
    assert doc["format"] == "didnode/receipt/v1" and set(doc) == {"format", "network", "reading", "head", "anchor", "checkpoint", "state"}
    assert rc.verify(rc.loads(text), ledger.policy()).seq == 4

    def refused(mutate: object, needle: str) -> None:
        d = json.loads(text)
        mutate(d)  # type: ignore[operator]
        with pytest.raises(errors.ReceiptInvalid) as e:
            rc.loads(json.dumps(d))
        assert needle in str(e.value), str(e.value)

    refused(lambda d: d.update(format="didnode/receipt/v2"), "format")
    refused(lambda d: d.update(extra=1), "members")
    refused(lambda d: d.pop("state"), "members")
    refused(lambda d: d["reading"].update(payload=None), "both present or both withheld")
    refused(lambda d: d["reading"].update(index=-1), "reading.index")
    refused(lambda d: d["reading"].update(index=True), "reading.index")
    refused(lambda d: d["reading"].update(record="a+b/"), "reading.record")
    refused(lambda d: d["reading"].update(proof=["AA"]), "not 32 bytes")
    refused(lambda d: d["anchor"].update(inclusion="x"), "anchor.inclusion")
    refused(lambda d: d.update(network="Bad Net"), "network")
    for bad in (b"", b"[]", b"\xff", b'{"format": 1, "format": 2}', b"{" * 100000):
        with pytest.raises(errors.ReceiptInvalid):
            rc.loads(bad)
    with pytest.raises(errors.ReceiptInvalid):
        rc.loads(b" " * (rc.MAX_RECEIPT_BYTES + 1))


def test_proven_json(paper: tuple[PaperLedger, Device, rc.Receipt]) -> None:
    ledger, device, r = paper
    p = rc.verify(r, ledger.policy())
    out = p.to_json()
    assert out["key"] == f"{device.did}#key-1" and out["keyValidUntil"] is None and out["payloadPresent"]
    assert out["signers"] == 1 and out["cosigners"] == 0 and out["checkpointSize"] == len(ledger.entries)
    assert rc.verify(rc.withheld(r), ledger.policy()).to_json()["payload"] is None


def test_a_key_revoked_before_the_anchor_is_refused(paper: tuple[PaperLedger, Device, rc.Receipt]) -> None:
    """The ledger refuses such a head; a receipt of a ledger that did not is refused by the verifier all the same."""
    ledger, device, _ = paper
    st = ledger.mem.states[device.did]
    admin_key = SigningKey(hashlib.sha256(b"admin/auth").digest())  # PaperLedger.create("admin")
    revoke = builder.revoke(NET, device.did, st.seq + 1, st.last, "key-1", "compromised")
    ledger.submit(builder.sign(revoke, [(f"{st.controllers[0]}#key-1", admin_key)]))
    seg = device.segment(2, secret=b"t" * 32)
    position = ledger.anchor(ledger.create("gateway2"), [seg.signed])
    r = rc.build(seg.reading(7), ledger.anchor_proof(device.did, "temp", position, 0, 6, 2), NET)
    with pytest.raises(errors.ReceiptInvalid) as e:
        rc.verify(r, ledger.policy())
    assert e.value.details["what"] == "key" and "was not valid at the anchor's position" in str(e.value)


def test_the_head_must_be_signed_by_the_named_key(paper: tuple[PaperLedger, Device, rc.Receipt]) -> None:
    ledger, device, _ = paper
    seg = device.segment(2, key=SigningKey.generate(), secret=b"u" * 32)  # key-1's name, another key
    position = ledger.anchor(ledger.create("gw3"), [seg.signed])
    r = rc.build(seg.reading(6), ledger.anchor_proof(device.did, "temp", position, 0, 6, 2), NET)
    with pytest.raises(errors.ReceiptInvalid) as e:
        rc.verify(r, ledger.policy())
    assert e.value.details["what"] == "head signature"
    with pytest.raises(errors.ReceiptInvalid) as e:
        rc.verify(replace(r, first=5), ledger.policy())
    assert e.value.details["what"] == "head"


def test_an_entry_that_is_not_an_anchor(paper: tuple[PaperLedger, Device, rc.Receipt]) -> None:
    ledger, device, r = paper
    a = ledger.anchor_proof(device.did, "temp", 0, 0, 0, 6)  # entry 0: a create
    with pytest.raises(errors.ReceiptInvalid) as e:
        rc.verify(replace(r, position=0, entry=a.entry, inclusion=a.inclusion), ledger.policy())
    assert e.value.details["what"] == "entry" and "not an anchor" in str(e.value)
    with pytest.raises(errors.ReceiptInvalid) as e:
        rc.verify(replace(r, position=99), ledger.policy())
    assert e.value.details["what"] == "inclusion"


def test_historical_checkpoints_thresholds_and_witnesses(paper: tuple[PaperLedger, Device, rc.Receipt]) -> None:
    ledger, _, r = paper
    policy = ledger.policy()
    # a second trusted key and a threshold of 2: one signature is not enough
    other = SigningKey(b"k" * 32)
    two = replace(policy, keys=policy.keys + (TrustedKey("did:dnode:QmOther#key-1", bytes(other.verify_key)),), threshold=2)
    with pytest.raises(errors.CheckpointBelowThreshold):
        rc.verify(r, two)
    # witnesses: the policy needs one cosignature; a cosigned note verifies, however old its timestamp
    wkey = SigningKey(b"w" * 32)
    witness = WitnessKey("witness.example/w1", bytes(wkey.verify_key))
    witnessed = replace(policy, witnesses=(witness,), witness_threshold=1)
    with pytest.raises(errors.CheckpointBelowThreshold):
        rc.verify(r, witnessed)
    signed = ledger.checkpoint()
    cosig = cosignature.cosign(note_codec.parse(signed.note).text, witness.name, wkey, 1_000)  # 1970: a historical check bounds no time
    cp = add_signatures(signed, cosig)
    proven = rc.verify(replace(r, note=cp.note), witnessed)
    assert (proven.signers, proven.cosigners) == (1, 1)
    with pytest.raises(errors.GenesisMismatch):
        verify_historical(policy, cp.note, ())
