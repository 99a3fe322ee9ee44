"""Lazily signed checkpoints over a real LMDB store, signed in the writer's transaction."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import lmdb
import pytest
from nacl.signing import SigningKey

from didnode.core.checkpoint import SignedCheckpoint
from didnode.core.transparency_verify import verify_checkpoint
from didnode.errors import DidnodeError, InvalidArgument, NoCheckpoint
from didnode.ledger.checkpoints import Checkpointer
from didnode.ledger.orderer import LocalOrderer
from didnode.ledger.prepare import prepare_many
from didnode.ledger.trees import roots, transparency_hooks
from didnode.store import checkpoint_tables
from didnode.store.checkpoint_tables import CheckpointTables
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from tests.factory import NET, new_create

KEY = SigningKey.generate()
KID = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG#key-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "db", map_size=1 << 24)
    tables = LedgerTables(store)
    clock = Clock()
    orderer = LocalOrderer(tables, clock, transparency_hooks(tables))
    orderer.start()
    cp = Checkpointer(tables, NET, KEY, KID, clock, max_age_ms=10_000)
    yield store, tables, clock, orderer, cp
    orderer.stop()
    store.close()


def _wait(submit: Any) -> Any:
    """Run an orderer submission and wait for its answer."""
    box: list[Any] = []
    done = threading.Event()

    def cb(result: Any) -> None:
        box.append(result)
        done.set()

    submit(cb)
    assert done.wait(10)
    return box[0]


def _apply(orderer: LocalOrderer, tables: LedgerTables, n: int) -> None:
    ops = prepare_many([(op.payload, op.proofs) for op in (new_create()[1] for _ in range(n))], NET, tables)
    outcomes = _wait(lambda cb: orderer.submit(ops, cb))
    assert not any(isinstance(o, DidnodeError) for o in outcomes)


def _ensure(orderer: LocalOrderer, cp: Checkpointer) -> SignedCheckpoint:
    result = _wait(lambda cb: orderer.submit_task(cp.ensure, cb))
    assert isinstance(result, SignedCheckpoint), result
    return result


def test_signs_lazily_only_when_the_log_grew_or_the_checkpoint_aged(setup) -> None:  # type: ignore[no-untyped-def]
    store, tables, clock, orderer, cp = setup
    _apply(orderer, tables, 5)
    with store.read() as txn:
        assert cp.current(txn) is None  # nothing signed yet
    first = _ensure(orderer, cp)
    assert first.tree_size == 5
    verify_checkpoint(first, bytes(KEY.verify_key), KID.split("#")[0])
    with store.read() as txn:
        assert cp.current(txn) == first
        r = roots(tables, txn)
        assert (first.checkpoint.log_root, first.checkpoint.state_root) == (r.log_root, r.state_root)
    clock.now += 5_000
    assert _ensure(orderer, cp) == first  # same size, still fresh: no new signature
    _apply(orderer, tables, 3)
    second = _ensure(orderer, cp)
    assert second.tree_size == 8 and second.checkpoint.time_ms >= first.checkpoint.time_ms
    clock.now += 20_000
    third = _ensure(orderer, cp)
    assert third.tree_size == 8 and third.checkpoint.time_ms == clock.now  # re-signed: it had aged
    with store.read() as txn:
        stored = CheckpointTables(store)
        assert stored.at(txn, 5) == first and stored.at(txn, 8) == third
        with pytest.raises(NoCheckpoint):
            stored.at(txn, 6)


def test_checkpoint_time_never_goes_backwards(setup) -> None:  # type: ignore[no-untyped-def]
    store, tables, clock, orderer, cp = setup
    _apply(orderer, tables, 2)
    first = _ensure(orderer, cp)
    clock.now -= 60_000  # the wall clock stepped back
    _apply(orderer, tables, 1)
    assert _ensure(orderer, cp).checkpoint.time_ms >= first.checkpoint.time_ms


def test_a_failing_task_neither_breaks_the_batch_nor_the_writer(setup) -> None:  # type: ignore[no-untyped-def]
    store, tables, clock, orderer, cp = setup

    def bad(txn: lmdb.Transaction) -> None:
        txn.put(b"junk", b"x", db=tables.meta)
        raise InvalidArgument("no")

    assert isinstance(_wait(lambda cb: orderer.submit_task(bad, cb)), InvalidArgument)
    _apply(orderer, tables, 2)
    with store.read() as txn:
        assert txn.get(b"junk", db=tables.meta) is None  # the task's own writes were rolled back
        assert tables.log_size(txn) == 2
    assert _ensure(orderer, cp).tree_size == 2


def test_only_the_latest_checkpoints_are_kept(setup, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    store, tables, clock, orderer, cp = setup
    monkeypatch.setattr(checkpoint_tables, "MAX_STORED", 3)
    for _ in range(5):
        _apply(orderer, tables, 1)
        _ensure(orderer, cp)
    with store.read() as txn:
        assert [size for size, _ in CheckpointTables(store).all(txn)] == [3, 4, 5]
