"""Typed access to the ledger's LMDB tables. Every method takes the transaction.

Values are copied out as ``bytes`` (the store opens transactions with
``buffers=False``), so nothing returned here refers to LMDB memory after
its transaction ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import json

import lmdb

from didnode.core import entry as entry_codec
from didnode.core.did import did_for_create_hash
from didnode.core.data.anchoring import AnchorRow, StreamState
from didnode.core.governance.policy import Policy, Usage, is_governance_record
from didnode.core.keystate import DidState
from didnode.errors import StoreCorrupted, UnknownDid, UnknownOperation
from didnode.store import layout
from didnode.store.env import Store


@dataclass(frozen=True, slots=True)
class VersionRef:
    """Where one operation of a DID sits: its seq, ledger position and ordering time."""

    seq: int
    position: int
    time: int


class LedgerTables:
    """The log, operation index, per-DID state and history, and node metadata."""

    def __init__(self, store: Store) -> None:
        self.store = store
        d = store.dbs
        self.meta = d[layout.DB_META]
        self.log = d[layout.DB_LOG]
        self.ophash = d[layout.DB_OPHASH]
        self.state = d[layout.DB_STATE]
        self.usage_db = d[layout.DB_USAGE]
        self.streams_db = d[layout.DB_STREAMS]
        self.anchors_db = d[layout.DB_ANCHORS]
        self.evidence_db = d[layout.DB_EVIDENCE]
        self._policy: tuple[bytes, Policy] | None = None

    # -- metadata -------------------------------------------------------

    def log_size(self, txn: lmdb.Transaction) -> int:
        raw = txn.get(layout.META_LOG_SIZE, db=self.meta)
        return 0 if raw is None else layout.read_u64(raw)

    def last_time(self, txn: lmdb.Transaction) -> int:
        raw = txn.get(layout.META_LAST_TIME, db=self.meta)
        return 0 if raw is None else layout.read_u64(raw)

    def set_log_end(self, txn: lmdb.Transaction, size: int, time: int) -> None:
        txn.put(layout.META_LOG_SIZE, layout.u64(size), db=self.meta)
        txn.put(layout.META_LAST_TIME, layout.u64(time), db=self.meta)

    def meta_text(self, txn: lmdb.Transaction, name: bytes) -> str:
        """A UTF-8 metadata value; raises :class:`StoreCorrupted` if it was never written."""
        raw = txn.get(name, db=self.meta)
        if raw is None:
            raise StoreCorrupted(f"store metadata {name.decode()} is missing")
        return raw.decode()

    def has_meta(self, txn: lmdb.Transaction, name: bytes) -> bool:
        return txn.get(name, db=self.meta) is not None

    def set_meta_text(self, txn: lmdb.Transaction, name: bytes, value: str) -> None:
        txn.put(name, value.encode(), db=self.meta)

    # -- log and operation index ------------------------------------------

    def entry(self, txn: lmdb.Transaction, position: int) -> bytes:
        raw = txn.get(layout.u64(position), db=self.log)
        if raw is None:
            raise UnknownOperation(f"no log entry at position {position}", position=position)
        return raw

    def entries(self, txn: lmdb.Transaction):  # type: ignore[no-untyped-def]
        """Iterate (position, entry bytes) in log order."""
        cur = txn.cursor(db=self.log)
        if not cur.first():
            return
        for key, value in cur:
            yield layout.read_u64(key), value

    def position_of(self, txn: lmdb.Transaction, op_hash: bytes) -> int:
        """The log position of the operation whose payload hashes to ``op_hash``; raises :class:`UnknownOperation`.

        The op-hash index holds every operation but creates: a create's hash
        is its DID's identifier, so a create is found through the state table
        (the DID's creation position). That saves one randomly keyed row, and
        one dirty page, per create.
        """
        raw = txn.get(op_hash, db=self.ophash)
        if raw is not None:
            return layout.read_u64(raw)
        if len(op_hash) == 32:
            record = txn.get(layout.did_key(did_for_create_hash(op_hash)), db=self.state)
            if record is not None:
                return DidState.from_record(record).created_pos
        raise UnknownOperation(f"no operation with hash {op_hash.hex()}", hash=op_hash.hex())

    def has_indexed_operation(self, txn: lmdb.Transaction, op_hash: bytes) -> bool:
        """Whether an operation other than a create with this hash is on the ledger (one read of the op-hash index).

        What the writer asks of a non-create: its hash cannot be a create's,
        whose payload has another type.
        """
        return txn.get(op_hash, db=self.ophash) is not None

    def has_operation(self, txn: lmdb.Transaction, op_hash: bytes) -> bool:
        """Whether an operation with this hash is on the ledger (creates included, see :meth:`position_of`)."""
        if txn.get(op_hash, db=self.ophash) is not None:
            return True
        return len(op_hash) == 32 and txn.get(layout.did_key(did_for_create_hash(op_hash)), db=self.state) is not None

    # -- per-DID state and history -----------------------------------------

    def state_record(self, txn: lmdb.Transaction, did: str) -> bytes:
        raw = txn.get(layout.did_key(did), db=self.state)
        if raw is None:
            raise UnknownDid(f"{did} does not exist on this ledger", did=did)
        return raw

    def get_state(self, txn: lmdb.Transaction, did: str) -> DidState:
        """The current state of ``did``; raises :class:`UnknownDid`."""
        return did_state(did, self.state_record(txn, did))

    def state_if_exists(self, txn: lmdb.Transaction, did: str) -> DidState | None:
        """The current state, or None when the DID was never created (the input ``apply`` expects)."""
        raw = txn.get(layout.did_key(did), db=self.state)
        return None if raw is None else did_state(did, raw)

    # -- device data ----------------------------------------------------------

    def stream_state(self, txn: lmdb.Transaction, did: str, stream: str) -> StreamState | None:
        """A data stream's anchoring state, or None when nothing of it is anchored."""
        raw = txn.get(layout.stream_key(did, stream), db=self.streams_db)
        return None if raw is None else StreamState.decode(raw)

    def covering_anchor(self, txn: lmdb.Transaction, did: str, stream: str, seq: int) -> tuple[int, AnchorRow] | None:
        """(first sequence number, row) of the anchored head of ``stream`` covering ``seq``, or None."""
        prefix = layout.stream_key(did, stream) + b"\x00"
        cur = txn.cursor(db=self.anchors_db)
        key = layout.anchor_key(did, stream, seq)
        if not cur.set_range(key) or cur.key() != key:
            if not (cur.prev() if cur.key() else cur.last()):
                return None
        found = bytes(cur.key())
        if not found.startswith(prefix) or len(found) != len(prefix) + 8:
            return None
        first = layout.read_u64(found[len(prefix):])
        row = AnchorRow.decode(cur.value())
        return (first, row) if first <= seq < first + row.count else None

    # -- governance -----------------------------------------------------------

    def governance(self, txn: lmdb.Transaction) -> Policy | None:
        """The network's governance record, or None on a network without governance (open to all)."""
        did = txn.get(layout.META_GOVERNANCE, db=self.meta)
        if did is None:
            return None
        raw = self.state_record(txn, bytes(did).decode())
        # Every batch asks; the record changes rarely and may list a thousand registrars.
        cached = self._policy
        if cached is not None and cached[0] == raw:
            return cached[1]
        policy = Policy.from_record(raw)
        self._policy = (raw, policy)
        return policy

    def usage(self, txn: lmdb.Transaction, kind: bytes, did: str) -> Usage:
        """What the log counted of ``did``'s creates (as registrar) or publishes."""
        raw = txn.get(layout.usage_key(kind, did), db=self.usage_db)
        return Usage() if raw is None else Usage.decode(raw)

    def versions(self, txn: lmdb.Transaction, did: str) -> list[VersionRef]:
        """Every operation of ``did`` in seq order; raises :class:`UnknownDid` when there is none.

        There is no history table: each operation names its predecessor
        (``prev``, an operation hash), so the chain is walked back from the
        state's last operation through the op-hash index. That costs two reads
        per version when asked (history and past versions are rare reads),
        instead of one more randomly keyed row, and one more dirty page, per
        accepted operation on the write path.
        """
        raw = self.state_record(txn, did)
        head = Policy.from_record(raw) if is_governance_record(raw) else DidState.from_record(raw)
        out: list[VersionRef] = []
        pos = head.updated_pos
        expected = head.seq
        while True:
            e = entry_codec.decode(self.entry(txn, pos))
            try:
                body = json.loads(e.payload)
                seq, named, prev = body["seq"], body.get("did", did), body.get("prev")
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreCorrupted(f"log entry {pos} does not hold an operation: {exc}", position=pos) from None
            if seq != expected or (seq > 0 and named != did):
                raise StoreCorrupted(f"the chain of {did} is broken at position {pos}: found seq {seq} of {named}, want seq {expected}", position=pos)
            out.append(VersionRef(seq, pos, e.time))
            if seq == 0:
                break
            try:
                pos = self.position_of(txn, bytes.fromhex(prev))
            except (UnknownOperation, TypeError, ValueError):
                raise StoreCorrupted(f"operation {prev!r} before position {pos} of {did} is not on the ledger", position=pos) from None
            expected -= 1
        out.reverse()
        return out

    def count_dids(self, txn: lmdb.Transaction) -> int:
        return txn.stat(self.state)["entries"]

    # -- writes ---------------------------------------------------------------

    def write_batch(self, txn: lmdb.Transaction, writes: "BatchWrites") -> None:
        """Write everything a batch's accepted operations changed.

        Keys are sorted per table before writing, so a batch of random keys
        (hashes, DIDs) walks each B-tree once in order instead of jumping
        between pages: fewer page touches, fewer dirty pages to fsync.
        """
        log_cur = txn.cursor(db=self.log)
        for pos, data in writes.log:
            if not log_cur.put(layout.u64(pos), data, overwrite=False, append=True):
                raise StoreCorrupted(f"log position {pos} is already taken")
        for table, items in (
            (self.ophash, writes.ophash), (self.state, writes.state), (self.usage_db, writes.usage),
            (self.streams_db, writes.streams), (self.anchors_db, writes.anchors), (self.evidence_db, writes.evidence),
        ):
            if items:
                txn.cursor(db=table).putmulti(sorted(items.items()))
        if writes.governance:
            txn.put(layout.META_GOVERNANCE, writes.governance.encode(), db=self.meta)


class BatchWrites:
    """The rows a batch will write, gathered while the batch is validated.

    Reads during the batch go through the batch's own caches (states,
    operation hashes), so nothing needs to be written before the end.
    """

    __slots__ = ("log", "ophash", "state", "usage", "governance", "streams", "anchors", "evidence")

    def __init__(self) -> None:
        self.log: list[tuple[int, bytes]] = []
        self.ophash: dict[bytes, bytes] = {}
        self.state: dict[bytes, bytes] = {}
        self.usage: dict[bytes, bytes] = {}
        self.governance = ""  # the governance identifier, when the batch holds the inception
        self.streams: dict[bytes, bytes] = {}
        self.anchors: dict[bytes, bytes] = {}
        self.evidence: dict[bytes, bytes] = {}  # written for refused anchors too: a device's equivocation

    def accepted(self, position: int, entry: bytes, op_hash: bytes, did: str, state_record: bytes, create: bool) -> None:
        """Record the rows of one accepted operation (a later state of the same DID replaces an earlier one).

        A create gets no op-hash row (see :meth:`LedgerTables.position_of`).
        """
        self.log.append((position, entry))
        if not create:
            self.ophash[op_hash] = layout.u64(position)
        self.state[layout.did_key(did)] = state_record


def did_state(did: str, raw: bytes) -> DidState:
    """Decode a state-table value as the state of the DID ``did``: the governance record is no DID's."""
    if is_governance_record(raw):
        raise UnknownDid(f"{did} is this network's governance record, not a DID (didctl gov show reads it)", did=did)
    return DidState.from_record(raw)
