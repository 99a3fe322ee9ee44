"""The embedded orderer: one writer thread that group-commits batches to LMDB.

Requests queue up while a batch is being applied; the writer then takes all
of them (up to ``max_batch`` operations) into the next transaction. One
fsync covers the whole batch, which is where throughput comes from; the
callbacks (the "accepted" replies) run only after the commit returned.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from didnode.core.operations import Operation
import lmdb

from didnode.errors import DidnodeError, Internal, NodeUnavailable, Overloaded
from didnode.ledger.batch import BatchHook, Outcome, apply_batch
from didnode.store.ledger_tables import LedgerTables

Callback = Callable[[list[Outcome]], None]


@dataclass(slots=True)
class _Request:
    ops: Sequence[Operation | DidnodeError]
    done: Callback


class LocalOrderer:
    """Orders operations by arrival and applies them in durable batches.

    ``clock_ms`` gives the ordering time; ``hooks`` maintain extra tables in
    the same transaction. ``max_pending`` bounds queued operations
    (backpressure: beyond it :meth:`submit` raises :class:`Overloaded`).
    """

    def __init__(
        self,
        tables: LedgerTables,
        clock_ms: Callable[[], int],
        hooks: Sequence[BatchHook] = (),
        max_batch: int = 2048,
        max_pending: int = 100_000,
    ) -> None:
        self.tables = tables
        self.clock_ms = clock_ms
        self.hooks = list(hooks)
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="didnode-writer", daemon=True)
        self._thread.start()

    def submit(self, ops: Sequence[Operation | DidnodeError], done: Callback) -> None:
        """Queue ``ops``; ``done(outcomes)`` runs on the writer thread after the commit."""
        with self._lock:
            if self._closed:
                raise NodeUnavailable("the node is shutting down")
            if self._pending + len(ops) > self.max_pending:
                raise Overloaded(f"{self._pending} operations are waiting to be applied; retry shortly")
            self._pending += len(ops)
        self._queue.put(_Request(ops, done))

    def apply_now(self, ops: Sequence[Operation | DidnodeError]) -> list[Outcome]:
        """Apply synchronously from the calling thread (startup, before :meth:`start`)."""
        return self.tables.store.write(lambda txn: apply_batch(self.tables, txn, ops, self.clock_ms(), self.hooks))

    def stop(self) -> None:
        """Finish every queued request, then stop the writer."""
        with self._lock:
            self._closed = True
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            reqs = [first]
            count = len(first.ops)
            while count < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                reqs.append(nxt)
                count += len(nxt.ops)
            ops = [op for r in reqs for op in r.ops]
            try:
                outcomes = self.tables.store.write(
                    lambda txn: apply_batch(self.tables, txn, ops, self.clock_ms(), self.hooks)
                )
            except DidnodeError as exc:
                outcomes = [exc] * len(ops)
            except lmdb.Error as exc:
                # Disk full, I/O error: nothing of the batch committed; say so to every waiter.
                outcomes = [Internal(f"the store could not commit the batch: {exc}")] * len(ops)
            self.batches += 1
            with self._lock:
                self._pending -= count
            i = 0
            for r in reqs:
                n = len(r.ops)
                r.done(outcomes[i : i + n])
                i += n
