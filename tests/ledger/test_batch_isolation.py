"""A batch answers per operation, always (issue #14): a bug that one operation triggers, in its
preparation or in its apply, rejects that operation alone (INTERNAL) and its neighbours are applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from didnode import errors
from didnode.core.results import Receipt
from didnode.ledger import batch as batch_mod
from didnode.ledger import prepare as prepare_mod
from tests.factory import new_create
from tests.ledger.test_batch import LmdbLedger


def test_a_bug_in_one_operations_apply_rejects_it_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    led = LmdbLedger(tmp_path / "db")
    ops = [new_create()[1] for _ in range(3)]
    real = batch_mod.apply

    def buggy(state: Any, op: Any, ctx: Any) -> Any:
        if op.did == ops[1].did:
            raise ValueError("a bug in apply")
        return real(state, op, ctx)

    monkeypatch.setattr(batch_mod, "apply", buggy)
    out = led.submit(ops)
    assert isinstance(out[0], Receipt) and isinstance(out[2], Receipt)
    assert isinstance(out[1], errors.Internal)
    assert set(led.records()) == {ops[0].did, ops[2].did}
    assert [o.position for o in (out[0], out[2])] == [0, 1]  # nothing of the failed one was written


def test_a_bug_in_one_operations_parse_rejects_it_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    led = LmdbLedger(tmp_path / "db")
    ops = [new_create()[1] for _ in range(3)]
    real = prepare_mod.parse

    def buggy(payload: bytes, proofs: Any, network: str) -> Any:
        if payload == ops[1].payload:
            raise KeyError("a bug in parse")
        return real(payload, proofs, network)

    monkeypatch.setattr(prepare_mod, "parse", buggy)
    out = led.submit(ops)
    assert isinstance(out[0], Receipt) and isinstance(out[2], Receipt) and isinstance(out[1], errors.Internal)
