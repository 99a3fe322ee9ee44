"""LMDB-backed node stores for the Merkle log and the sparse state tree.

They adapt one transaction to the store protocols of
:mod:`didnode.core.merkle` (which know nothing of LMDB); create one per
transaction and never keep it after the transaction ends.
"""

from __future__ import annotations

import lmdb

from didnode.store import layout
from didnode.store.env import Store


class LogNodes:
    """``NodeStore`` over the ``merkle`` table: (level, index) -> 32-byte hash."""

    __slots__ = ("txn", "db", "_cursor")

    def __init__(self, txn: lmdb.Transaction, store: Store) -> None:
        self.txn = txn
        self.db = store.dbs[layout.DB_MERKLE]
        self._cursor: lmdb.Cursor | None = None

    def get(self, level: int, index: int) -> bytes:
        value = self.txn.get(layout.merkle_key(level, index), db=self.db)
        if value is None:
            raise KeyError((level, index))
        return value

    def put(self, level: int, index: int, hash_: bytes) -> None:
        key = layout.merkle_key(level, index)
        if self._cursor is None:
            self._cursor = self.txn.cursor(db=self.db)
        # Appends write increasing keys (see layout.merkle_key): LMDB's append
        # mode fills pages. It refuses a key that is not past the last one,
        # and only then does the ordinary put run.
        if not self._cursor.put(key, hash_, append=True):
            self.txn.put(key, hash_, db=self.db)


class StateNodes:
    """``SparseStore`` over the ``smt`` table: node id -> 65-byte record.

    Writes are buffered and reach the transaction in :meth:`flush`, sorted by
    id, in one ``putmulti``: a batch update writes each node once, in an order
    that jumps between the levels of the tree, and one sorted C-level pass
    over the B-tree is cheaper than as many single puts from Python. Reads
    see the buffered writes. Precondition: :meth:`flush` is called before the
    transaction commits (and before anything else reads the table through
    the transaction).
    """

    __slots__ = ("txn", "db", "_pending")

    def __init__(self, txn: lmdb.Transaction, store: Store) -> None:
        self.txn = txn
        self.db = store.dbs[layout.DB_SMT]
        self._pending: dict[bytes, bytes] = {}

    def get(self, node_id: bytes) -> bytes:
        value = self._pending.get(node_id)
        if value is None:
            value = self.txn.get(node_id, db=self.db)
            if value is None:
                raise KeyError(node_id)
        return value

    def put(self, node_id: bytes, record: bytes) -> None:
        self._pending[node_id] = record

    def delete(self, node_id: bytes) -> None:
        self.flush()
        self.txn.delete(node_id, db=self.db)

    def flush(self) -> None:
        """Write the buffered records to the transaction."""
        if self._pending:
            self.txn.cursor(db=self.db).putmulti(sorted(self._pending.items()))
            self._pending.clear()
