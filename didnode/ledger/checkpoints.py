"""Lazily signed checkpoints of one node.

Signing one checkpoint per batch would cost a signature and a row per
fsync for nobody; instead a checkpoint is signed on request, when the log
grew since the latest stored one (or that one is older than ``max_age_ms``,
so that clients with a staleness bound can still be served).

Both roots of a checkpoint must describe the same log size. The state tree is
not versioned (it only exists at the current size), so both roots, and any
state proof served under the checkpoint, are read in *one* transaction:
:meth:`Checkpointer.current` answers from a read snapshot when the stored
checkpoint already covers that snapshot's whole log, and
:meth:`Checkpointer.ensure` signs in the writer's transaction (see
``LocalOrderer.submit_task``), where nothing can move under it.
"""

from __future__ import annotations

from typing import Callable

import lmdb
from nacl.signing import SigningKey

from didnode.core.checkpoint import Checkpoint, SignedCheckpoint, sign
from didnode.ledger.trees import roots
from didnode.store.checkpoint_tables import CheckpointTables
from didnode.store.ledger_tables import LedgerTables

DEFAULT_MAX_AGE_MS = 60_000


class Checkpointer:
    """Signs and stores checkpoints with the node's key (``kid`` names it)."""

    def __init__(
        self,
        tables: LedgerTables,
        network: str,
        key: SigningKey,
        kid: str,
        clock_ms: Callable[[], int],
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
    ) -> None:
        self.tables = tables
        self.checkpoints = CheckpointTables(tables.store)
        self.network = network
        self.key = key
        self.kid = kid
        self.clock_ms = clock_ms
        self.max_age_ms = max_age_ms

    def current(self, txn: lmdb.Transaction) -> SignedCheckpoint | None:
        """The stored latest checkpoint if it covers the whole log of ``txn`` and is
        fresh; ``None`` when a new one must be signed (:meth:`ensure`)."""
        latest = self.checkpoints.latest(txn)
        if latest is None or latest.tree_size != self.tables.log_size(txn):
            return None
        if self.clock_ms() - latest.checkpoint.time_ms > self.max_age_ms:
            return None
        return latest

    def ensure(self, txn: lmdb.Transaction) -> SignedCheckpoint:
        """The current checkpoint of ``txn``'s log, signing and storing a new one if needed.

        Precondition: ``txn`` is a write transaction of the store's one writer
        (the orderer's thread), so the log cannot grow between reading the
        roots and storing the checkpoint.
        """
        existing = self.current(txn)
        if existing is not None:
            return existing
        r = roots(self.tables, txn)
        latest = self.checkpoints.latest(txn)
        # Checkpoint times never go backwards and never precede the entries they cover.
        time_ms = max(self.clock_ms(), self.tables.last_time(txn), latest.checkpoint.time_ms if latest else 0)
        signed = sign(Checkpoint(self.network, r.size, r.log_root, r.state_root, time_ms), self.key, self.kid)
        self.checkpoints.put(txn, signed)
        return signed
