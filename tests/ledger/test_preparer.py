"""Preparing in a worker process gives the same operations and verdicts as in-process, on a live store."""

from __future__ import annotations

from pathlib import Path

from didnode import errors
from didnode.core.builder import SignedOperation
from didnode.core.operations import Operation, Proof
from didnode.core.results import Receipt
from didnode.ledger.batch import apply_batch
from didnode.ledger.preparer import INLINE_BELOW, InlinePreparer, ProcessPreparer
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
from tests.factory import NET, new_create


def _summary(out: list) -> list:  # type: ignore[type-arg]
    """What matters of a prepared list: per item, the error class or (did, hash, verified pairs)."""
    return [type(o).__name__ if isinstance(o, errors.DidnodeError) else (o.did, o.hash, frozenset(o.verified)) for o in out]


def test_worker_and_inline_agree_and_the_worker_reads_the_live_store(tmp_path: Path) -> None:
    path = tmp_path / "db"
    # A small map, so that the writes below grow it while the worker has it open.
    store = Store(path, map_size=1 << 20)
    tables = LedgerTables(store)
    process = ProcessPreparer(tables, str(path), NET, workers=1)
    try:
        admin, admin_op = new_create()
        filler = [new_create()[1] for _ in range(3000)]
        prepared = InlinePreparer(tables, NET).prepare([(o.payload, o.proofs) for o in [admin_op, *filler]])
        out = store.write(lambda txn: apply_batch(tables, txn, prepared, 1_700_000_000_000))
        assert all(isinstance(o, Receipt) for o in out)
        assert store.env.info()["map_size"] > 1 << 20  # the map grew after the worker opened the store

        good = [new_create()[1] for _ in range(INLINE_BELOW)]
        controlled = [new_create(controllers=[admin])[1] for _ in range(3)]
        victim = good[2]
        forged = SignedOperation(victim.type, victim.network, victim.did, victim.payload, (Proof(victim.proofs[0].kid, b"\x01" * 64),))
        garbage = (b'{"type":"create"', good[0].proofs)
        items = [(o.payload, o.proofs) for o in [*good, *controlled, forged]] + [garbage]

        inline = InlinePreparer(tables, NET).prepare(items)
        remote = process.prepare(items)
        assert _summary(remote) == _summary(inline)
        assert isinstance(remote[len(good) + len(controlled)], errors.InvalidSignature)
        assert isinstance(remote[-1], errors.MalformedOperation)
        # The controller's key came from the worker's read of the live store: both proofs were verified there.
        for op in remote[len(good) : len(good) + len(controlled)]:
            assert isinstance(op, Operation) and len(op.verified) == 2
    finally:
        process.close()
        store.close()


def test_small_groups_are_prepared_in_the_calling_thread(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", map_size=1 << 22)
    tables = LedgerTables(store)
    process = ProcessPreparer(tables, str(tmp_path / "db"), NET, workers=1)
    try:
        op = new_create()[1]
        fut = process.submit([(op.payload, op.proofs)])
        assert fut.done()  # no round trip for fewer than INLINE_BELOW items
        (prepared,) = fut.result()
        assert isinstance(prepared, Operation) and prepared.verified
    finally:
        process.close()
        store.close()


_OWNER = """
import sys, time
from didnode.ledger.preparer import ProcessPreparer
from didnode.store.env import Store
from didnode.store.ledger_tables import LedgerTables
store = Store(sys.argv[1], map_size=1 << 22)
prep = ProcessPreparer(LedgerTables(store), sys.argv[1], "local", workers=2)
print(" ".join(str(pid) for pid in prep._pool._processes), flush=True)
time.sleep(60)
"""


def test_workers_exit_when_their_node_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(tmp_path / "db")], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        workers = [int(p) for p in owner.stdout.readline().split()]
        assert len(workers) == 2
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        alive = workers
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [p for p in workers if _running(p)]
        assert not alive, f"prepare workers {alive} outlived their killed node"
    finally:
        owner.kill()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
