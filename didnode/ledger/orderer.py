"""The embedded orderer: one writer thread that group-commits batches to LMDB.

Requests queue up while a batch is being applied; the writer then takes all
of them (up to ``max_batch`` operations) into the next transaction. One
fsync covers the whole batch, which is where throughput comes from; the
callbacks (the "accepted" replies) run only after the commit returned.

Tasks (:meth:`LocalOrderer.submit_task`) ride in the same queue: a function
of the write transaction that runs after the batch's operations, in a nested
transaction, and is answered after the same commit. This is how other
writers (e.g. signing a checkpoint) share the one LMDB writer without a
second write transaction, and see exactly the state the batch produced.

What every orderer shares is defined here once: the :class:`Orderer`
protocol, the ``done`` callback and task types, :class:`TaskRequest` (a task
queued for the writer), :func:`run_task` and :func:`settle`. The cluster
orderer (``didnode.ledger.cluster``) uses them as this one does.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from didnode.core.operations import Operation
import logging

import lmdb

from didnode.errors import DidnodeError, Internal, NodeUnavailable, Overloaded
from didnode.ledger.batch import BatchHook, Outcome, apply_batch
from didnode.store.ledger_tables import LedgerTables

Callback = Callable[[list[Outcome]], None]
Task = Callable[[lmdb.Transaction], Any]
log = logging.getLogger("didnode.orderer")


@dataclass(slots=True)
class TaskRequest:
    """A task queued for the writer; ``done`` gets its result (or its error) after the commit."""

    task: Task
    done: Callable[[Any], None]


def run_task(tables: LedgerTables, txn: lmdb.Transaction, task: Task) -> Any:
    """Run a writer task in a transaction nested in the batch's ``txn``; return its result or its error.

    Only the task's own writes roll back when it fails; the batch still
    commits. Both orderers (this module's and the JetStream one) run tasks so.
    """
    try:
        with tables.store.env.begin(write=True, parent=txn, buffers=False) as child:
            return task(child)
    except DidnodeError as exc:
        return exc
    except lmdb.MapFullError:
        raise  # the store grows the map and retries the whole transaction
    except Exception:  # the writer thread must survive a buggy task; the batch still commits
        log.exception("writer task failed")
        return Internal("internal error in a writer task; see the node log")


def settle(fut: "asyncio.Future[Any]", result: Any) -> None:
    """Resolve ``fut`` with ``result`` unless it is done already.

    For an orderer's ``done`` callback handed to an event loop with
    ``call_soon_threadsafe``: the coroutine awaiting ``fut`` may have been
    cancelled (a client gone, a shutdown) before the callback ran, and
    ``set_result`` on a cancelled future raises.
    """
    if not fut.done():
        fut.set_result(result)


class Orderer(Protocol):
    """What the service layer needs of an orderer: this module's LocalOrderer (embedded)
    or ``didnode.ledger.cluster.JetStreamOrderer`` (cluster)."""

    def submit(self, ops: Sequence[Operation | DidnodeError], done: Callback) -> None: ...

    def submit_task(self, task: Task, done: Callable[[Any], None]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


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
        max_batch: int = 8192,
        max_pending: int = 100_000,
    ) -> None:
        self.tables = tables
        self.clock_ms = clock_ms
        self.hooks = list(hooks)
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[_Request | TaskRequest | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        # Told (operations, seconds) of each batch written (apply and durable commit), e.g. by the
        # node's metrics; called on the writer thread, must not block.
        self.on_batch: Callable[[int, float], None] | None = None
        # Why the last batch could not be committed (disk full, read-only store); None once one commits.
        self.last_error: DidnodeError | None = None

    @property
    def pending(self) -> int:
        """Operations queued and not yet applied (the queue depth)."""
        return self._pending

    @property
    def closed(self) -> bool:
        """Whether :meth:`stop` was called (submissions are refused)."""
        return self._closed

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

    def submit_task(self, task: Task, done: Callable[[Any], None]) -> None:
        """Queue ``task(txn)`` to run in the writer's next transaction, after that batch's operations.

        ``done`` runs on the writer thread after the commit with the task's
        return value, or with the :class:`DidnodeError` it raised (then only
        the task's own writes are rolled back: it runs in a nested
        transaction). Precondition: ``task`` only reads and writes through
        ``txn`` and may be run twice (the store retries a transaction after
        growing the map).
        """
        with self._lock:
            if self._closed:
                raise NodeUnavailable("the node is shutting down")
        self._queue.put(TaskRequest(task, done))

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
            count = len(first.ops) if isinstance(first, _Request) else 0
            while count < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                reqs.append(nxt)
                if isinstance(nxt, _Request):
                    count += len(nxt.ops)
            ops = [op for r in reqs if isinstance(r, _Request) for op in r.ops]
            tasks = [r for r in reqs if isinstance(r, TaskRequest)]

            def batch(txn: lmdb.Transaction) -> tuple[list[Outcome], list[Any]]:
                outcomes = apply_batch(self.tables, txn, ops, self.clock_ms(), self.hooks) if ops else []
                return outcomes, [run_task(self.tables, txn, t.task) for t in tasks]

            started = time.perf_counter()
            try:
                outcomes, results = self.tables.store.write(batch)
                self.last_error = None
            except DidnodeError as exc:
                outcomes, results = [exc] * len(ops), [exc] * len(tasks)
                self.last_error = exc
            except lmdb.Error as exc:
                # Disk full, I/O error: nothing of the batch committed; say so to every waiter.
                err = Internal(f"the store could not commit the batch: {exc}")
                outcomes, results = [err] * len(ops), [err] * len(tasks)
                self.last_error = err
            if self.on_batch is not None and ops:
                self.on_batch(len(ops), time.perf_counter() - started)
            self.batches += 1
            with self._lock:
                self._pending -= count
            i = 0
            answers = iter(results)
            for r in reqs:
                if isinstance(r, TaskRequest):
                    r.done(next(answers))
                    continue
                n = len(r.ops)
                r.done(outcomes[i : i + n])
                i += n
