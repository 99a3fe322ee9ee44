"""Fuzz target: data receipt files (didnode/receipt/v1), carried for years and verified by whoever holds one.

A receipt file is untrusted bytes end to end: its JSON, and inside it a reading
record, a signed segment head, a log entry with an anchor operation, a checkpoint
note, a state record and a sparse proof. Parsing must give a receipt that
re-encodes to itself or fail typed, and verifying any parsed receipt must return
what it proves or fail typed (:class:`ReceiptInvalid` or a trust error).
"""

from __future__ import annotations

import functools

from didnode.core.data import receipt as rc
from didnode.core.trust import TrustPolicy
from tests.core.data.paper_ledger import NET, PaperLedger
from tests.core.data.receipt_world import Device
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import JSON_TOKENS

RECEIPT_TOKENS = (
    *JSON_TOKENS,
    '"format":', '"didnode/receipt/v1"', '"network":', '"local"', '"reading":', '"record":', '"payload":', '"salt":',
    '"index":', '"proof":', '"head":', '"anchor":', '"position":', '"headIndex":', '"first":', '"count":', '"entry":',
    '"inclusion":', '"checkpoint":', '"note":', '"genesisConsistency":', '"state":', "null", "[]",
)  # fmt: skip


@functools.cache
def _world() -> tuple[list[bytes], TrustPolicy]:
    """(receipt files, the policy they verify under), the same every run."""
    ledger = PaperLedger()
    gateway = ledger.create("gateway")
    device = Device(ledger.create("device"), NET)
    segments = [device.segment(n, secret=bytes([n]) * 32) for n in (1, 3, 6)]
    position = ledger.anchor(gateway, [s.signed for s in segments])
    files = []
    for i, (seg, seq) in enumerate(((segments[0], 0), (segments[1], 2), (segments[2], 7))):
        h = seg.signed.head
        proof = ledger.anchor_proof(device.did, "temp", position, i, h.first, h.count)
        files.append(rc.dumps(rc.build(seg.reading(seq), proof, NET, withhold_payload=seq == 2)).encode())
    return files, ledger.policy()


@target("receipt_file", seeds=lambda: _world()[0], tokens=RECEIPT_TOKENS, max_len=16384)
def fuzz_receipt_file(data: bytes) -> None:
    receipt = rc.loads(data)
    assert rc.loads(rc.dumps(receipt)) == receipt, "a parsed receipt must re-encode to itself"
    proven = rc.verify(receipt, _world()[1])
    assert proven.payload == receipt.payload


def test_samples_verify() -> None:
    files, policy = _world()
    assert [rc.verify(rc.loads(f), policy).seq for f in files] == [0, 2, 7]


test_fuzz = harness.fuzz_tests(__name__)
