"""Cluster-mode rows of the ledger store: where this node is in the stream.

All of it is written by the follower in the same transaction as the batch
it describes (``didnode.ledger.cluster.writer``), so after a crash the store's
state, its applied stream sequence and its per-DID subject sequences always
describe the same prefix of the stream: the node resumes exactly once.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import lmdb

from didnode.store import layout
from didnode.store.env import Store

# LMDB keys are at most 511 bytes; a subject token from a foreign publisher
# could be longer, so long ones are stored by hash (no DID is that long).
_MAX_KEY = 400


def subject_key(did: str) -> bytes:
    """The ``stream_subj`` key of a DID (or of any subject token)."""
    raw = did.encode()
    return raw if len(raw) <= _MAX_KEY else b"#" + hashlib.sha256(raw).digest()


class ClusterTables:
    """Applied stream position, stream identity and per-DID last subject sequence."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.meta = store.dbs[layout.DB_META]
        self.subjects = store.dbs[layout.DB_STREAM_SUBJECTS]

    def _u64(self, txn: lmdb.Transaction, name: bytes) -> int:
        raw = txn.get(name, db=self.meta)
        return 0 if raw is None else layout.read_u64(raw)

    def applied_seq(self, txn: lmdb.Transaction) -> int:
        """The last stream sequence applied to this store (0: none)."""
        return self._u64(txn, layout.META_STREAM_SEQ)

    def stream_time(self, txn: lmdb.Transaction) -> int:
        """The largest (clamped) message timestamp applied so far, ms."""
        return self._u64(txn, layout.META_STREAM_TIME)

    def subject_seq(self, txn: lmdb.Transaction, did: str) -> int:
        """Stream sequence of the last message on ``did``'s subject (0: none yet)."""
        raw = txn.get(subject_key(did), db=self.subjects)
        return 0 if raw is None else layout.read_u64(raw)

    def record(self, txn: lmdb.Transaction, applied_seq: int, stream_time: int, subjects: Mapping[bytes, int]) -> None:
        """Advance the applied position (in the batch's own transaction).

        Precondition: ``subjects`` maps :func:`subject_key` keys to the last
        sequence of the batch on that subject; ``applied_seq`` is the batch's last.
        """
        txn.put(layout.META_STREAM_SEQ, layout.u64(applied_seq), db=self.meta)
        txn.put(layout.META_STREAM_TIME, layout.u64(stream_time), db=self.meta)
        if subjects:
            txn.cursor(db=self.subjects).putmulti(sorted((k, layout.u64(v)) for k, v in subjects.items()))

    def binding(self, txn: lmdb.Transaction) -> tuple[str, str] | None:
        """(stream name, stream creation time) this store follows, or None if never bound."""
        name = txn.get(layout.META_STREAM_NAME, db=self.meta)
        if name is None:
            return None
        created = txn.get(layout.META_STREAM_CREATED, db=self.meta) or b""
        return name.decode(), created.decode()

    def bind(self, txn: lmdb.Transaction, name: str, created: str) -> None:
        txn.put(layout.META_STREAM_NAME, name.encode(), db=self.meta)
        txn.put(layout.META_STREAM_CREATED, created.encode(), db=self.meta)
