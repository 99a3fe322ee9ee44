"""The replaying witness's extra check: a checkpoint of the node's own ledger must have its roots (docs/witness.md).

A didnode node serving ``POST /add-checkpoint`` (``didnode serve --http ...
--witness-for ORIGIN=VKEY``) holds, for the checkpoints of its own ledger,
the log itself. :class:`LedgerReplayCheck` compares an offered checkpoint with
what the node computed, before the witness's consistency rules:

* **own ledger**: the note parses as a didnode checkpoint
  (:func:`~didnode.core.tlog_checkpoint.to_checkpoint`: network, state root
  and time extensions) naming the node's network, and the node is in
  cluster mode (every node of the network holds the one log of the stream)
  or the origin is the node's own. Anything else gets the standalone checks
  only.
* **log root**: once the node's log has reached the checkpoint's size, the
  root of its log tree at that size (computed from the stored tree at any
  size) must equal the note's; a smaller log is waited for up to
  ``wait_s``, then :class:`~didnode.errors.WitnessNotCaughtUp` (503).
* **state root**: the ``didnode-state-root`` extension must equal the
  node's state root when the node knows it at that size: its log is at
  exactly that size (the state tree exists only at the current size), or
  it stored a checkpoint of that size. At other sizes the state root is not
  checked (the log root still is).

A difference is :class:`~didnode.errors.ReplayMismatch` (422); the witness
keeps the offered note as evidence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from didnode.core.checkpoint import Checkpoint
from didnode.core.merkle import log_tree, sparse
from didnode.core.tlog_checkpoint import TlogCheckpoint, to_checkpoint
from didnode.errors import DidnodeError, ReplayMismatch, WitnessNotCaughtUp
from didnode.store.checkpoint_tables import CheckpointTables
from didnode.store.tree_tables import LogNodes, StateNodes

log = logging.getLogger("didnode.witness")

DEFAULT_WAIT_S = 3.0
POLL_S = 0.05


class ReplayCheck(Protocol):
    """What :class:`~didnode.witness.service.Witness` asks of a replaying node before cosigning."""

    async def check(self, checkpoint: TlogCheckpoint) -> bool:
        """Raise when ``checkpoint`` contradicts the replayed log; True when checked, False when not the node's ledger."""
        ...


@dataclass(frozen=True)
class Replayed:
    """The node's own roots at one size: ``log_size`` is its whole log; roots None until it reached the size."""

    log_size: int
    log_root: bytes | None
    state_root: bytes | None


class LedgerReplayCheck:
    """The check of a running :class:`~didnode.service.node.Node` (module docstring)."""

    def __init__(self, node: Any, wait_s: float = DEFAULT_WAIT_S) -> None:
        self.node = node
        self.wait_s = wait_s
        self.checkpoints = CheckpointTables(node.store)

    def own(self, checkpoint: TlogCheckpoint) -> Checkpoint | None:
        """The didnode checkpoint if ``checkpoint`` is of this node's ledger, else None."""
        try:
            cp = to_checkpoint(checkpoint)
        except DidnodeError:
            return None
        if cp.network != self.node.network:
            return None
        if self.node.mode == "cluster" or checkpoint.origin == self.node.origin:
            return cp
        return None

    def replayed(self, size: int) -> Replayed:
        """The node's log root at ``size`` and its state root there when known (one read transaction)."""
        store = self.node.store
        with store.read() as txn:
            n = self.node.tables.log_size(txn)
            if n < size:
                return Replayed(n, None, None)
            log_root = log_tree.root(LogNodes(txn, store), size)
            if n == size:
                return Replayed(n, log_root, sparse.root(StateNodes(txn, store)))
            stored = self.checkpoints.find(txn, size)
            return Replayed(n, log_root, stored.checkpoint.state_root if stored is not None else None)

    async def check(self, checkpoint: TlogCheckpoint) -> bool:
        """Raise :class:`ReplayMismatch` or :class:`WitnessNotCaughtUp`; True when the checkpoint was checked."""
        cp = self.own(checkpoint)
        if cp is None:
            return False
        deadline = time.monotonic() + self.wait_s
        while True:
            mine = await asyncio.to_thread(self.replayed, cp.tree_size)
            if mine.log_root is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)
        if mine.log_root is None:
            raise WitnessNotCaughtUp(
                f"this node has applied {mine.log_size} entries of its ledger, not yet the {cp.tree_size} of the checkpoint; retry",
                size=cp.tree_size, applied=mine.log_size,
            )
        if mine.log_root != cp.log_root:
            raise ReplayMismatch(
                f"the checkpoint of {checkpoint.origin!r} at size {cp.tree_size} has another log root than this node's log at that size",
                size=cp.tree_size, what="log root",
            )
        if mine.state_root is not None and mine.state_root != cp.state_root:
            raise ReplayMismatch(
                f"the checkpoint of {checkpoint.origin!r} at size {cp.tree_size} has another state root than this node computed at that size",
                size=cp.tree_size, what="state root",
            )
        return True


__all__ = ["DEFAULT_WAIT_S", "LedgerReplayCheck", "ReplayCheck", "Replayed"]
