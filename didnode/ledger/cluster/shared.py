"""What the cluster orderer's stages share, and what they hand each other.

:class:`Shared` holds the state more than one stage reads or writes: the
configuration, the NATS event loop and its tasks, and where this node is in
the stream (``applied_seq``, advanced by the writer; ``stream_last``, learnt
by the connection, the follower and the publisher). Fields that say "under
``lock``" are read and written from several threads; the others belong to the
NATS loop's thread. The messages that travel from the follower to the writer
(:class:`Raw`, then :class:`Prepared`) are defined here so that neither stage
imports the other for them; writer tasks travel as the embedded orderer's
:class:`~didnode.ledger.orderer.TaskRequest`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from didnode.core.operations import Operation
from didnode.errors import DidnodeError
from didnode.ledger.cluster.config import ClusterConfig
from didnode.store.cluster_tables import ClusterTables
from didnode.store.ledger_tables import LedgerTables

@dataclass(slots=True)
class Raw:
    seq: int
    ts_ms: int
    subject: str
    data: bytes


@dataclass(slots=True)
class Prepared:
    msgs: list[Raw]
    ops: list[Operation | DidnodeError]
    hashes: list[bytes]


class Shared:
    """The state the publisher, the follower, the writer and the connection share."""

    def __init__(self, tables: LedgerTables, config: ClusterConfig, max_batch: int) -> None:
        self.tables = tables
        self.cluster = ClusterTables(tables.store)
        self.config = config
        self.network = config.network
        self.stream = config.stream_name
        self.max_batch = max_batch
        self.batches = 0  # LMDB transactions of the follower (for logs and benchmarks)
        self.applied_msgs = 0
        with tables.store.read() as txn:
            self.applied_seq = self.cluster.applied_seq(txn)
        # -- shared between threads, under lock
        self.lock = threading.Lock()
        self.pending = 0
        self.closed = False
        # The network's governance refused this node's own DID create (publisher.genesis): it serves without it.
        self.own_create_refused: DidnodeError | None = None
        # Operations this node published, parsed and verified: the follower
        # reuses them instead of verifying the same signatures again.
        self.local_ops: dict[bytes, Operation] = {}
        # -- NATS loop state
        self.loop = asyncio.new_event_loop()
        self.stream_last = self.applied_seq
        self.tasks: set[asyncio.Task[Any]] = set()
        # Set when the follower must read again from the next expected sequence
        # (a disconnect, a gap, messages out of order at the writer).
        self.reset_evt: asyncio.Event | None = None

    def spawn(self, coro: Any) -> "asyncio.Task[Any]":
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
