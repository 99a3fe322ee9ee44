"""The transparency trees, maintained in the same transaction as every batch.

* The log tree (RFC 6962): leaf ``i`` is the log entry bytes at position ``i``.
* The state tree (sparse Merkle map): ``sha256(DID) -> sha256(state record)``.

Both are deterministic functions of the log, so every node that applies the
same log has the same roots.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import lmdb

from didnode.core.merkle import log_tree, sparse
from didnode.core.merkle.hasher import leaf_hash
from didnode.ledger.batch import AppliedEntry, BatchHook
from didnode.ledger.controlled import ControlledHook
from didnode.store.ledger_tables import LedgerTables
from didnode.store.tree_tables import LogNodes, StateNodes


@dataclass(frozen=True, slots=True)
class Roots:
    """The roots of both trees at one log size."""

    size: int
    log_root: bytes
    state_root: bytes


def state_value(record: bytes) -> bytes:
    """The state tree's value for a DID: sha256 of its canonical state record."""
    return hashlib.sha256(record).digest()


class TreesHook(BatchHook):
    """Appends the batch's leaves to the log tree and updates the state tree."""

    def __init__(self, tables: LedgerTables) -> None:
        self.store = tables.store

    def on_batch(self, txn: lmdb.Transaction, applied: Sequence[AppliedEntry]) -> None:
        first = applied[0].position
        log_tree.append_many(LogNodes(txn, self.store), first, [leaf_hash(a.entry) for a in applied])
        # Last state of each DID in the batch wins (update_many keeps the last value).
        nodes = StateNodes(txn, self.store)
        sparse.update_many(nodes, [(sparse.key_for_did(a.did), state_value(a.state_record)) for a in applied])
        nodes.flush()


def roots(tables: LedgerTables, txn: lmdb.Transaction) -> Roots:
    """Roots at the current log size (the state root is only known for the current size)."""
    n = tables.log_size(txn)
    return Roots(n, log_tree.root(LogNodes(txn, tables.store), n), sparse.root(StateNodes(txn, tables.store)))


def transparency_hooks(tables: LedgerTables) -> list[BatchHook]:
    """The hooks every node runs: the trees (part of the deterministic state) and the controller index (derived)."""
    return [TreesHook(tables), ControlledHook(tables)]
