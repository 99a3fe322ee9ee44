"""Bulk signature verification: in-thread and in a worker process give the same verdicts."""

from __future__ import annotations

import os
from pathlib import Path

from nacl.signing import SigningKey

from didnode import errors
from didnode.core.builder import SignedOperation
from didnode.core.operations import Operation, Proof
from didnode.ledger.prepare import prepare_many
from didnode.ledger.verifier import InlineVerifier, ProcessVerifier, verify_triples
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from tests.factory import NET, new_create


def _triples() -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for i in range(40):
        sk = SigningKey.generate()
        msg = os.urandom(100)
        sig = sk.sign(msg).signature
        if i % 3 == 0:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        if i % 7 == 0:
            sig = sig[:63]
        out.append((bytes(sk.verify_key), msg, sig))
    return out


def test_process_and_inline_verifiers_agree() -> None:
    triples = _triples()
    expected = [not (i % 3 == 0 or i % 7 == 0) for i in range(40)]
    assert verify_triples(triples) == expected
    assert InlineVerifier().verify(triples) == expected
    pv = ProcessVerifier(1)
    try:
        assert pv.verify(triples) == expected
    finally:
        pv.close()


def test_prepare_many_marks_bad_signatures_per_operation(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    tables = LedgerTables(store)
    good = [new_create()[1] for _ in range(10)]
    victim = good[4]
    bad = SignedOperation(victim.type, victim.network, victim.did, victim.payload, (Proof(victim.proofs[0].kid, b"\x00" * 64),))
    items = [(o.payload, o.proofs) for o in good[:4] + [bad] + good[5:]]
    pv = ProcessVerifier(1)
    try:
        out = prepare_many(items, NET, tables, pv)
    finally:
        pv.close()
    assert isinstance(out[4], errors.InvalidSignature)
    assert all(isinstance(o, Operation) and o.verified for i, o in enumerate(out) if i != 4)
