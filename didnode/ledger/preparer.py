"""Where submissions are prepared (parsed and signature-checked) before the writer applies them.

The node's interpreter is the bottleneck of the write path: its GIL serializes
gRPC handling, unpickling, apply and commit. Parsing an operation (canonical
JSON check, schema, base58) costs about as much as applying it, and
verifying its signatures costs more, so both happen in a worker process
(:class:`ProcessPreparer`): the node sends a chunk of raw submissions and
gets back parsed operations whose ``verified`` sets are filled in, or the
errors that reject them. The worker reads the live LMDB store itself (a
registered reader, see :class:`~didnode.store.readonly.ReadOnlyStore`) to
find controllers' keys, so a chunk costs one round trip.

A snapshot that is a little behind the writer is harmless: a key id names
one public key for ever, so a signature verified against the snapshot stays
verified, the writer still checks the key's fate against the state it applies
to, and a signature whose key the snapshot does not know yet (a controller
created in a batch not yet committed) is left to the writer to verify.

:class:`InlinePreparer` does the same in the calling thread (tests, tools,
startup, and small requests, for which a round trip costs more than the work).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Protocol, Sequence

from didnode.core.operations import Operation
from didnode.errors import DidnodeError
from didnode.ledger.prepare import Item, prepare_many
from didnode.ledger.processes import exit_with_parent
from didnode.store.ledger_tables import LedgerTables
from didnode.store.readonly import ReadOnlyStore

Prepared = list[Operation | DidnodeError]

# Below this many submissions a chunk is prepared in the calling thread: the
# round trip to a worker (two pickles, two pipe writes, two wake-ups) costs
# more than parsing and verifying a few operations.
INLINE_BELOW = 8


class Preparer(Protocol):
    """Parses and pre-verifies chunks of submissions; one result per item, in order."""

    def prepare(self, items: Sequence[Item]) -> Prepared:
        """Prepare ``items`` and wait for the result."""
        ...

    def submit(self, items: Sequence[Item]) -> "Future[Prepared]":
        """Start preparing ``items``; the future holds what :meth:`prepare` would return."""
        ...

    def close(self) -> None: ...


class InlinePreparer:
    """Prepares in the calling thread against ``tables``."""

    def __init__(self, tables: LedgerTables, network: str) -> None:
        self.tables = tables
        self.network = network

    def prepare(self, items: Sequence[Item]) -> Prepared:
        return prepare_many(items, self.network, self.tables)

    def submit(self, items: Sequence[Item]) -> "Future[Prepared]":
        fut: Future[Prepared] = Future()
        try:
            fut.set_result(self.prepare(items))
        except BaseException as exc:  # a future carries whatever the call raised, as a thread pool would
            fut.set_exception(exc)
        return fut

    def close(self) -> None:
        pass


# -- the worker process ---------------------------------------------------------

_worker_tables: LedgerTables | None = None
_worker_network = ""


def _init_worker(path: str, network: str, parent_pid: int) -> None:
    global _worker_tables, _worker_network
    exit_with_parent(parent_pid)
    _worker_tables = LedgerTables(ReadOnlyStore(path, live=True))  # type: ignore[arg-type]  # reads only
    _worker_network = network


def _prepare_in_worker(items: Sequence[Item]) -> Prepared:
    if _worker_tables is None:  # only reachable if the pool was built without its initializer
        raise RuntimeError("prepare worker used before _init_worker")
    return prepare_many(items, _worker_network, _worker_tables)


class ProcessPreparer:
    """Prepares chunks in ``workers`` spawned processes that read the store at ``store_path``.

    Spawned, not forked: the node runs gRPC threads. Precondition: the LMDB
    environment at ``store_path`` exists (the node opened it first).
    """

    def __init__(self, tables: LedgerTables, store_path: str, network: str, workers: int = 1) -> None:
        self.inline = InlinePreparer(tables, network)
        self._pool = ProcessPoolExecutor(
            max(1, workers),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(store_path, network, os.getpid()),
        )
        # Start every worker now, not on the first request (a spawn costs ~100 ms).
        for f in [self._pool.submit(_prepare_in_worker, []) for _ in range(max(1, workers))]:
            f.result()

    def prepare(self, items: Sequence[Item]) -> Prepared:
        return self.submit(items).result()

    def submit(self, items: Sequence[Item]) -> "Future[Prepared]":
        if len(items) < INLINE_BELOW:
            return self.inline.submit(items)
        return self._pool.submit(_prepare_in_worker, list(items))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
