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

A node never signs a checkpoint inconsistent with one it signed before, even
when its store was rolled back, replaced or lost: the latest checkpoint it
signed is kept beside its key, outside LMDB (:class:`CheckpointRecord`,
``DATA/node.checkpoint``). The store's log must extend it at start
(``Node``) and before every signature (:meth:`Checkpointer.ensure`); a new
checkpoint is recorded after its transaction committed and before anyone
gets it (:meth:`Checkpointer.committed`), and :meth:`Checkpointer.current`
only hands out a stored checkpoint the record covers.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import lmdb
from nacl.signing import SigningKey

from didnode.core.checkpoint import Checkpoint, SignedCheckpoint, from_json
from didnode.core.merkle import log_tree
from didnode.core.tlog_checkpoint import check_origin, default_origin, sign_with_note
from didnode.core.transparency_verify import verify_checkpoint
from didnode.errors import CheckpointRollback, DidnodeError, NodeKeyMismatch, StoreCorrupted
from didnode.fileio import write_atomic
from didnode.ledger.trees import roots
from didnode.store.checkpoint_tables import CheckpointTables
from didnode.store.env import storage_error
from didnode.store.ledger_tables import LedgerTables
from didnode.store.tree_tables import LogNodes

DEFAULT_MAX_AGE_MS = 60_000
CHECKPOINT_FILE = "node.checkpoint"


def _when(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CheckpointRecord:
    """The latest checkpoint this node signed, in ``path`` (``DATA/node.checkpoint``): its JSON form
    (docs/transparency.md §3) on one line, mode 0600, replaced atomically.

    It lives beside ``node.key`` and outside the LMDB file on purpose: a store
    that is rolled back to an older copy, replaced or emptied takes its own
    ``checkpoints`` table with it, while what the key signed stays signed.
    ``latest`` is ``None`` until the node signed (or adopted) one.
    """

    def __init__(self, path: str, public_key: bytes, node_did: str) -> None:
        """Load ``path`` if it exists: it must be a checkpoint signed by ``public_key`` for ``node_did``
        (:class:`StoreCorrupted` if it does not parse, :class:`NodeKeyMismatch` if another key signed it)."""
        self.path = path
        self.public_key = public_key
        self.node_did = node_did
        self.latest: SignedCheckpoint | None = self._load()

    def _load(self) -> SignedCheckpoint | None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(exc, f"read {self.path}") from None
        try:
            signed = from_json(json.loads(raw))
        except (ValueError, DidnodeError) as exc:
            raise StoreCorrupted(f"{self.path} is not a signed checkpoint: {exc}") from None
        try:
            verify_checkpoint(signed, self.public_key, self.node_did)
        except DidnodeError as exc:
            raise NodeKeyMismatch(
                f"{self.path} records a checkpoint this node's key did not sign ({exc}); it belongs to another "
                f"node identity: put back that identity's node.key, or move {self.path} aside"
            ) from None
        return signed

    def covers(self, signed: SignedCheckpoint) -> bool:
        """Whether ``signed`` has the recorded size and log root (so giving it out is consistent)."""
        rec = self.latest
        return rec is not None and rec.tree_size == signed.tree_size and rec.checkpoint.log_root == signed.checkpoint.log_root

    def check_log(self, tables: LedgerTables, txn: lmdb.Transaction, size: int, log_root: bytes, *, signing: bool) -> None:
        """Raise :class:`CheckpointRollback` unless the log of ``txn`` (``size`` entries, root ``log_root``)
        extends the recorded checkpoint: at least as long, and of the same root at the recorded size
        (composed from the stored log tree in O(log n) reads)."""
        rec = self.latest
        if rec is None:
            return
        where = tables.store.path
        if size < rec.tree_size:
            if signing:
                raise CheckpointRollback(
                    f"refusing to sign a checkpoint of {size} entries: this node signed one of {rec.tree_size} entries "
                    f"({self.path}) and a node's tree size never goes backwards; the ledger in {where} holds {size}",
                    size=size, signed_size=rec.tree_size,
                )
            raise CheckpointRollback(
                f"{self.path} records a checkpoint of {rec.tree_size} entries this node signed at {_when(rec.checkpoint.time_ms)}, "
                f"but the ledger in {where} holds {size}: it was rolled back or replaced, and any checkpoint signed now "
                f"would contradict that one; restore the ledger that matches it, or start a new identity "
                f"(move {where} aside and run didnode serve --new-identity)",
                size=size, signed_size=rec.tree_size,
            )
        at = log_root if size == rec.tree_size else log_tree.root(LogNodes(txn, tables.store), rec.tree_size)
        if at != rec.checkpoint.log_root:
            raise CheckpointRollback(
                f"the ledger in {where} is not the one this node signed: its log root at size {rec.tree_size} is "
                f"{at.hex()[:16]}…, the checkpoint in {self.path} says {rec.checkpoint.log_root.hex()[:16]}…; "
                + ("refusing to sign" if signing else "restore the ledger that matches it, or start a new identity "
                   f"(move {where} aside and run didnode serve --new-identity)"),
                signed_size=rec.tree_size,
            )

    def save(self, signed: SignedCheckpoint) -> None:
        """Record ``signed`` (durably: the file is fsync'd, renamed over the old one, the directory fsync'd).

        Precondition: ``signed`` passed :meth:`check_log` (the callers hold the
        writer). Raises the :func:`~didnode.store.env.storage_error` of a failed
        write; the old record stays then.
        """
        if signed == self.latest:
            return
        text = json.dumps(signed.to_json(), separators=(",", ":"), sort_keys=True) + "\n"
        try:
            write_atomic(Path(self.path), text.encode(), mode=0o600)
        except OSError as exc:
            raise storage_error(exc, f"record the checkpoint in {self.path}", os.path.dirname(self.path) or ".") from None
        self.latest = signed


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
        record: CheckpointRecord | None = None,
        origin: str | None = None,
    ) -> None:
        """``record``: the node's :class:`CheckpointRecord` (every node has one; without it, as in
        tests of the signing alone, nothing outside the store is checked or written). ``origin``: the
        C2SP origin (and note key name) of the checkpoint notes, default ``didnode.local/<network>``."""
        self.record = record
        self.origin = check_origin(origin) if origin is not None else default_origin(network)
        self._origin_line = self.origin.encode("utf-8") + b"\n"
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
        if not latest.note.startswith(self._origin_line):
            return None  # signed before notes, or under another origin (serve --origin changed): sign again
        if self.record is not None and not self.record.covers(latest):
            return None  # stored, but not recorded yet (or its recording failed): sign again
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
        recorded = self.record.latest if self.record is not None else None
        if self.record is not None:
            self.record.check_log(self.tables, txn, r.size, r.log_root, signing=True)
        latest = self.checkpoints.latest(txn)
        # Checkpoint times never go backwards and never precede the entries they cover.
        time_ms = max(
            self.clock_ms(),
            self.tables.last_time(txn),
            latest.checkpoint.time_ms if latest else 0,
            recorded.checkpoint.time_ms if recorded else 0,
        )
        # Signed both ways: the old signature and the C2SP checkpoint note (docs/transparency.md).
        signed = sign_with_note(Checkpoint(self.network, r.size, r.log_root, r.state_root, time_ms), self.key, self.kid, self.origin)
        self.checkpoints.put(txn, signed)
        return signed

    def committed(self, signed: SignedCheckpoint) -> None:
        """Record ``signed`` once the transaction that stored it committed, before anyone is given it.

        Called on the writer thread (the orderer's ``done`` callback), so
        records happen in signing order. Raises the storage error of a failed
        write: then the checkpoint must not be handed out (it stays in the
        store, unrecorded, and :meth:`current` will not serve it).
        """
        if self.record is not None:
            self.record.save(signed)
