"""The ``checkpoints`` table: u64 tree size -> signed checkpoint bytes.

One checkpoint per tree size (a re-signed checkpoint at the same size, e.g.
a fresher time, replaces the older one). Only the latest
:data:`MAX_STORED` are kept; older ones are dropped when a new one is stored,
since any of them can be re-derived as a consistency proof from a newer one.
Every method takes the caller's transaction.
"""

from __future__ import annotations

from typing import Iterator

import lmdb

from didnode.core import checkpoint as cp_codec
from didnode.core.checkpoint import SignedCheckpoint
from didnode.errors import MalformedProof, NoCheckpoint, StoreCorrupted
from didnode.store import layout
from didnode.store.env import Store

MAX_STORED = 512


def _decode(raw: bytes, size: int) -> SignedCheckpoint:
    try:
        signed = cp_codec.decode(raw)
    except MalformedProof as exc:
        raise StoreCorrupted(f"stored checkpoint at tree size {size} does not decode: {exc}", size=size) from None
    if signed.tree_size != size:
        raise StoreCorrupted(f"checkpoint stored under tree size {size} is for size {signed.tree_size}", size=size)
    return signed


class CheckpointTables:
    """Typed access to the stored signed checkpoints."""

    def __init__(self, store: Store) -> None:
        self.db = store.dbs[layout.DB_CHECKPOINTS]

    def latest(self, txn: lmdb.Transaction) -> SignedCheckpoint | None:
        """The checkpoint with the largest tree size, or ``None`` before the first is signed."""
        cur = txn.cursor(db=self.db)
        if not cur.last():
            return None
        return _decode(cur.value(), layout.read_u64(cur.key()))

    def at(self, txn: lmdb.Transaction, size: int) -> SignedCheckpoint:
        """The stored checkpoint at ``size``; raises :class:`NoCheckpoint`."""
        raw = txn.get(layout.u64(size), db=self.db)
        if raw is None:
            raise NoCheckpoint(f"this node holds no signed checkpoint at tree size {size}", size=size)
        return _decode(raw, size)

    def find(self, txn: lmdb.Transaction, size: int) -> SignedCheckpoint | None:
        """The stored checkpoint at ``size`` if there is one (absence is normal here)."""
        raw = txn.get(layout.u64(size), db=self.db)
        return None if raw is None else _decode(raw, size)

    def put(self, txn: lmdb.Transaction, signed: SignedCheckpoint) -> None:
        """Store ``signed`` (replacing one at the same size) and drop the oldest beyond :data:`MAX_STORED`."""
        txn.put(layout.u64(signed.tree_size), signed.encode(), db=self.db)
        extra = txn.stat(self.db)["entries"] - MAX_STORED
        if extra > 0:
            cur = txn.cursor(db=self.db)
            cur.first()
            for _ in range(extra):
                cur.delete()

    def all(self, txn: lmdb.Transaction) -> Iterator[tuple[int, bytes]]:
        """(tree size, raw stored bytes) in size order; raw so that an auditor decodes them itself."""
        for key, value in txn.cursor(db=self.db):
            yield layout.read_u64(key), value
