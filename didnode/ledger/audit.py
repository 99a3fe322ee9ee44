"""Audit a node's store: replay the whole log from position 0 and check every stored byte.

The store is opened read-only (:mod:`didnode.store.readonly`); nothing in it
is trusted. The log is replayed with the node's own parse/apply code
(``trusted=False``: every signature is verified again) into a fresh
temporary LMDB, and then everything the store holds is compared with what
the replay says it must hold:

=================  ==========================================================
check              what must hold
=================  ==========================================================
operation          every entry decodes, sits at its position, parses for the
                   store's network, and applies (signatures, key fates,
                   per-DID ``seq``/``prev`` chain, controllers) to the state
                   the entries before it produced; no operation twice
time               entry times never go backwards; the stored last time is the
                   last entry's
merkle-leaf        Merkle node (0, p) is ``SHA-256(0x00 || entry p)``
merkle             every node above the leaves is the hash of its children;
                   no node beyond the log
index              ``ophash`` maps each operation but creates (found by
                   their DID) to its position, and holds nothing else; the
                   ``controlled`` index holds exactly the rows the state
                   records imply (didnode.ledger.controlled)
state              each DID's stored state record equals the replayed one; no
                   other record exists
state-tree         the stored sparse tree is well formed (every child hash,
                   shortcut form, leaves on their paths, nothing unreachable)
                   and its leaves are exactly SHA-256(DID) -> SHA-256(record)
                   of the (replay-checked) state records
checkpoint         every stored checkpoint verifies under the node DID's key,
                   is of the store's network, and its roots equal the replayed
                   roots at its size
meta               log size, network and node DID (position 0 creates it)
governance         every create and publish is admitted by the network's
                   policy as replayed (registrars, quotas, in ordering time);
                   every ``govern`` operation by its threshold of governors;
                   the stored usage counts equal the replayed ones
data               every segment head of every anchor is accepted by the
                   anchoring rules as replayed; the stored stream states and
                   anchored-head index equal the replayed ones
=================  ==========================================================

Findings that belong to a log position are ranked by position and the first
is reported (:class:`~didnode.errors.AuditFailed`, ``details`` position and
check); others (counts, checkpoints) come after.

Speed: the per-entry work that needs no earlier state (decode, parse,
signature verification, applying controller-less creates, index lookups)
runs in worker *processes* (Python-level parsing holds the GIL, so threads
would not scale), and one more process checks both stored trees while the
replay runs; the serial replay in this process only checks order-dependent
facts and applies the operations that need earlier state.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import lmdb

from didnode.core import checkpoint as cp_codec
from didnode.core import entry as entry_codec
from didnode.core.governance.policy import Policy, is_governance_record
from didnode.core.keystate import ApplyContext, DidState
from didnode.core.merkle import log_tree, sparse
from didnode.core.merkle.hasher import leaf_hash, node_hash
from didnode.core.operations import parse
from didnode.core.transparency_verify import verify_checkpoint
from didnode.errors import AuditFailed, DidnodeError, UnknownDid
from didnode.ledger import controlled
from didnode.ledger.audit_rules import ReplayedRules
from didnode.ledger.audit_scan import SAME_AS_STORED, Scanned, check_log_tree, check_state_tree, scan_range
from didnode.ledger.audit_worker import Workers
from didnode.store import layout
from didnode.store.env import Store
from didnode.store.ledger_tables import did_state
from didnode.store.readonly import ReadOnlyStore, ledger_path
from didnode.store.tree_tables import LogNodes, StateNodes

CHUNK = 2048
# The tables the audit reads; others (checkpoints, cluster bookkeeping) are optional.
REQUIRED_DBS = (
    layout.DB_META, layout.DB_LOG, layout.DB_OPHASH, layout.DB_STATE, layout.DB_MERKLE, layout.DB_SMT,
)
PARALLEL_THRESHOLD = 20_000
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class AuditReport:
    """A clean audit: what was replayed and the roots it reproduced."""

    network: str
    node_did: str
    entries: int
    dids: int
    checkpoints: int
    log_root: bytes
    state_root: bytes
    seconds: float

    @property
    def rate(self) -> float:
        """Entries replayed per second."""
        return self.entries / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One finding: ``position`` is the log position it belongs to, if any.

    ``level`` > 0 marks a Merkle node over ``2**level`` positions from
    ``position``; ``order`` breaks ties (replay findings before tree findings).
    """

    rank: int
    order: int
    position: int | None
    level: int
    check: str
    message: str

    @classmethod
    def at(cls, position: int | None, check: str, message: str, level: int = 0, order: int = 0) -> "Problem":
        return cls(position if position is not None else 1 << 64, order, position, level, check, message)

    def explained_by(self, other: "Problem") -> bool:
        """Whether ``other`` (a lower node or an entry below this node) accounts for this finding."""
        if self.position is None or other.position is None or other.level >= self.level:
            return False
        return self.position <= other.position < self.position + (1 << self.level)

    def error(self) -> AuditFailed:
        if self.position is None:
            return AuditFailed(self.message, check=self.check)
        return AuditFailed(f"position {self.position}: {self.message}", position=self.position, check=self.check)


def _updated_pos(record: bytes) -> int:
    """The position of the last operation behind a state record (a DID's or the governance record)."""
    return (Policy.from_record(record) if is_governance_record(record) else DidState.from_record(record)).updated_pos


class _Found(Exception):
    """Internal: stops the replay at the first bad position (never escapes this module)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


# --------------------------------------------------------------------------
# The replayed state (temporary LMDB, not durable)
# --------------------------------------------------------------------------


class _ReplayState:
    """DID -> state record as the replay builds them (temporary LMDB), and, only
    while a stored checkpoint below the log's end is still ahead, the state tree.

    A record equal to the stored one is kept as ``SAME_AS_STORED`` and read
    from the audited store when needed (the store does not change meanwhile).
    """

    def __init__(self, path: str, stored: Callable[[str], bytes | None]) -> None:
        self.stored = stored
        self.store = Store(path, map_size=1 << 36, sync=False)
        self.state_db = self.store.dbs[layout.DB_STATE]
        self.records: dict[str, bytes] = {}
        self.tree: dict[bytes, bytes] = {}
        self.track_tree = False
        self._txn = self.store.env.begin(buffers=False)

    def record(self, did: str) -> bytes | None:
        rec = self.records.get(did)
        if rec is None:
            rec = self._txn.get(layout.did_key(did), db=self.state_db)
        return self.stored(did) if rec == SAME_AS_STORED else rec

    def exists(self, did: str) -> bool:
        return did in self.records or self._txn.get(layout.did_key(did), db=self.state_db) is not None

    def state(self, did: str) -> DidState | None:
        rec = self.record(did)
        return None if rec is None else did_state(did, rec)

    def resolve(self, did: str) -> DidState:
        state = self.state(did)
        if state is None:
            raise UnknownDid(f"{did} does not exist on this ledger", did=did)
        return state

    def put(self, did: str, record: bytes) -> None:
        self.records[did] = record
        if self.track_tree:
            full = self.stored(did) if record == SAME_AS_STORED else record
            self.tree[sparse.key_for_did(did)] = hashlib.sha256(full or b"").digest()

    def read_txn(self) -> lmdb.Transaction:
        """The current read snapshot of the replayed records (valid until the next flush)."""
        return self._txn

    def flush(self) -> None:
        """Write the buffered records (and fold buffered values into the state tree)."""
        self._txn.abort()
        records = sorted((layout.did_key(d), r) for d, r in self.records.items())
        items = list(self.tree.items())

        def write(txn: lmdb.Transaction) -> None:
            if records:
                txn.cursor(db=self.state_db).putmulti(records)
            if items:
                nodes = StateNodes(txn, self.store)
                sparse.update_many(nodes, items)
                nodes.flush()

        self.store.write(write)
        self.records.clear()
        self.tree.clear()
        self._txn = self.store.env.begin(buffers=False)

    def state_root(self) -> bytes:
        """Root of the state tree over everything put while tracking (see ``track_tree``)."""
        self.flush()
        return sparse.root(StateNodes(self._txn, self.store))

    def count(self) -> int:
        """DIDs replayed so far (after a flush)."""
        return int(self._txn.stat(self.state_db)["entries"])

    def close(self) -> None:
        self._txn.abort()
        self.store.close()


# --------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------


class _Audit:
    def __init__(self, ro: ReadOnlyStore, replay: _ReplayState) -> None:
        self.ro = ro
        self.replay = replay
        self.txn = ro.env.begin(buffers=False)
        self.dbs = ro.dbs
        meta = self.dbs[layout.DB_META]
        schema = self.txn.get(layout.META_SCHEMA, db=meta)
        if schema is None or len(schema) != 8 or layout.read_u64(schema) != layout.SCHEMA_VERSION:
            raise Problem.at(None, "meta", f"store schema version is {schema!r}, not {layout.SCHEMA_VERSION}").error()
        self.network = self._meta_text(layout.META_NETWORK)
        self.node_did = self._meta_text(layout.META_NODE_DID)
        raw = self.txn.get(layout.META_LOG_SIZE, db=meta)
        self.size = 0 if raw is None else layout.read_u64(raw)
        raw = self.txn.get(layout.META_LAST_TIME, db=meta)
        self.last_time = 0 if raw is None else layout.read_u64(raw)
        self.checkpoints: list[tuple[int, bytes]] = []
        if ro.has(layout.DB_CHECKPOINTS):
            self.checkpoints = [(layout.read_u64(k), v) for k, v in self.txn.cursor(db=self.dbs[layout.DB_CHECKPOINTS])]
        self.boundaries = {s for s, _ in self.checkpoints if 0 < s <= self.size}
        # The replay builds its own state tree only up to the last stored checkpoint
        # below the log's end; the state root at the end is the stored tree's,
        # checked by ``check_state_tree`` instead (much cheaper than rebuilding).
        self.tree_until = max((s for s in self.boundaries if s < self.size), default=0)
        replay.track_tree = self.tree_until > 0
        self.state_roots: dict[int, bytes] = {}
        self.entry_times: dict[int, int] = {}
        self.prev_time = 0
        self.first_did = ""
        self.creates = 0
        # Governance and device data, replayed with the writer's rules (audit_rules).
        self.rules = ReplayedRules()

    def _meta_text(self, name: bytes) -> str:
        raw = self.txn.get(name, db=self.dbs[layout.DB_META])
        if raw is None:
            raise Problem.at(None, "meta", f"store metadata {name.decode()} is missing").error()
        return raw.decode("utf-8", "replace")

    # -- the serial replay ---------------------------------------------------

    def leaf_diagnosis(self, p: int) -> str:
        """Which of entry ``p`` and its Merkle leaf was altered, judged by the stored parent."""
        db = self.dbs[layout.DB_MERKLE]
        entry = self.txn.get(layout.u64(p), db=self.dbs[layout.DB_LOG]) or b""
        mine = leaf_hash(entry)
        stored = self.txn.get(layout.merkle_key(0, p), db=db)
        if stored is None:
            return f"the Merkle leaf of position {p} is missing"
        sibling = self.txn.get(layout.merkle_key(0, p ^ 1), db=db)
        parent = self.txn.get(layout.merkle_key(1, p >> 1), db=db)
        if sibling is not None and parent is not None:

            def fits(leaf: bytes) -> bool:
                return (node_hash(leaf, sibling) if p % 2 == 0 else node_hash(sibling, leaf)) == parent

            if fits(mine):
                return f"the stored Merkle leaf (level 0, index {p}) was altered: entry {p} still fits the tree above it"
            if fits(stored):
                return f"log entry {p} was altered after it was logged: it no longer hashes to its Merkle leaf"
        return f"log entry {p} and its stored Merkle leaf disagree: one of them was altered"

    def step(self, it: Scanned) -> None:
        p = it.position
        if it.error is not None:
            reason, message = it.error
            extra = "" if it.leaf_ok else f"; {self.leaf_diagnosis(p)}"
            raise _Found(Problem.at(p, "operation", f"{message} [{reason}]{extra}"))
        if not it.leaf_ok:
            if it.record is None:
                # An operation the altered bytes broke is reported as such (as the scan reports the ones it applies).
                try:
                    self._apply(p, it)
                except _Found as found:
                    raise _Found(Problem.at(p, "operation", f"{found.problem.message}; {self.leaf_diagnosis(p)}")) from None
            raise _Found(Problem.at(p, "merkle-leaf", self.leaf_diagnosis(p)))
        if it.time < self.prev_time:
            raise _Found(Problem.at(p, "time", f"entry time {it.time} is before the previous entry's time {self.prev_time}"))
        # A repeated operation needs no op-hash set here: a repeated create finds its
        # DID existing (its hash is the DID's), any other repeats a used seq.
        if it.record is not None:
            # A controller-less create the scan already applied to "no state".
            if self.replay.exists(it.did):
                raise _Found(Problem.at(p, "operation", f"{it.did} already exists [DID_EXISTS]"))
            try:  # signed by the device alone: no registrar sponsors it
                self.rules.admit_self_signed_create(it.did, it.time)
            except DidnodeError as exc:
                raise _Found(Problem.at(p, "operation", f"{exc} [{exc.reason}]")) from None
            record = it.record
            self.creates += 1
        else:
            record = self._apply(p, it)
        if it.index_problem is not None:
            raise _Found(Problem.at(p, "index", it.index_problem))
        if p == 0:
            self.first_did = it.did
        self.replay.put(it.did, record)
        self.prev_time = it.time
        if p + 1 in self.boundaries:
            self.entry_times[p + 1] = it.time
            if p + 1 <= self.tree_until:
                self.state_roots[p + 1] = self.replay.state_root()
                self.replay.track_tree = p + 1 < self.tree_until

    def _apply(self, p: int, it: Scanned) -> bytes:
        e = entry_codec.decode(self.txn.get(layout.u64(p), db=self.dbs[layout.DB_LOG]))
        try:
            op = parse(e.payload, e.proofs, self.network)
            op.verified.update(it.verified)
            ctx = ApplyContext(p, e.time, self.replay.resolve)
            record = self.rules.apply(op, None if op.type == "govern" else self.replay.state(op.did), ctx)
        except DidnodeError as exc:
            raise _Found(Problem.at(p, "operation", f"{exc} [{exc.reason}]")) from None
        self.creates += op.type == "create"
        return record

    # -- after the replay ---------------------------------------------------------

    def compare_state(self) -> list[Problem]:
        """The stored state table against the replayed one (first difference only)."""
        stored = self.txn.cursor(db=self.dbs[layout.DB_STATE]).iternext()
        mine = self.replay.read_txn().cursor(db=self.replay.state_db).iternext()
        a, b = next(stored, None), next(mine, None)
        while a is not None or b is not None:
            if a is not None and b is not None and a[0] == b[0] and (a[1] == b[1] or b[1] == SAME_AS_STORED):
                a, b = next(stored, None), next(mine, None)
                continue
            if b is None or (a is not None and a[0] < b[0]):
                assert a is not None
                did = a[0].decode("utf-8", "replace")
                return [Problem.at(None, "state", f"the state table holds a record for {did}, which no log entry created")]
            did = b[0].decode()
            pos = _updated_pos(b[1] if b[1] != SAME_AS_STORED else a[1] if a else b"")
            if a is None or a[0] > b[0]:
                return [Problem.at(pos, "state", f"the state record of {did} is missing (last operation at position {pos})")]
            return [Problem.at(pos, "state", f"the stored state record of {did} differs from the replayed one (its last operation is at position {pos})")]
        return []

    def position_of_did(self, did: str) -> int | None:
        """The position of ``did``'s last replayed operation (None if it never existed)."""
        rec = self.replay.record(did) if did else None
        return None if rec is None else _updated_pos(rec)

    def compare_governance(self) -> list[Problem]:
        """The stored governance binding, usage counts and data tables against the replayed ones; the
        controller index against the one the (replay-checked) state records imply."""
        out = [Problem.at(None, check, msg) for check, msg in self.rules.differences(self.txn, self.dbs, self.ro.has)]
        if self.ro.has(layout.DB_CONTROLLED) and self.txn.get(layout.META_CONTROLLED, db=self.dbs[layout.DB_META]) is not None:
            msg = controlled.differences(self.txn, self.dbs[layout.DB_STATE], self.dbs[layout.DB_CONTROLLED])
            out += [Problem.at(None, "index", msg)] if msg else []
        return out

    def check_counts(self) -> list[Problem]:
        out = []
        n = self.size
        entries = self.txn.stat(self.dbs[layout.DB_LOG])["entries"]
        if entries != n:
            out.append(Problem.at(None, "meta", f"the log holds {entries} rows; the log size is {n}"))
        entries = self.txn.stat(self.dbs[layout.DB_OPHASH])["entries"]
        if entries != n - self.creates:
            out.append(Problem.at(None, "index", f"the op-hash index holds {entries} rows; the log holds {n - self.creates} operations other than creates"))
        if n and self.last_time != self.prev_time:
            out.append(Problem.at(n - 1, "time", f"the stored last time {self.last_time} is not the last entry's time {self.prev_time}"))
        if n and self.first_did != self.node_did:
            out.append(Problem.at(0, "meta", f"position 0 creates {self.first_did}, but the store says the node DID is {self.node_did}"))
        return out

    def check_checkpoints(self, final_state_root: bytes) -> list[Problem]:
        """Every stored checkpoint against the node key and the replayed roots.

        Precondition: the stored trees were checked (``final_state_root`` is the
        verified stored state root at the log's end).
        """
        self.state_roots[self.size] = final_state_root
        out: list[Problem] = []
        node = self.replay.state(self.node_did)
        log_nodes = LogNodes(self.txn, self.ro)  # type: ignore[arg-type]  # duck-typed: needs .dbs only
        for size, raw in self.checkpoints:
            label = f"the checkpoint stored at tree size {size}"
            try:
                signed = cp_codec.decode(raw)
                if signed.tree_size != size:
                    raise AuditFailed(f"{label} is for tree size {signed.tree_size}")
                if signed.signer_did != self.node_did or node is None:
                    raise AuditFailed(f"{label} is signed by {signed.kid}, not by the node DID {self.node_did}")
                cp = verify_checkpoint(signed, node.key(signed.kid.partition("#")[2]).raw, self.node_did)
                if cp.network != self.network:
                    raise AuditFailed(f"{label} is of network {cp.network!r}, the store of {self.network!r}")
                if not 0 < size <= self.size:
                    raise AuditFailed(f"{label} is beyond the log's {self.size} entries")
                if cp.log_root != log_tree.root(log_nodes, size):
                    raise AuditFailed(f"{label} signs a log root that is not the root of the log's first {size} entries")
                if cp.state_root != self.state_roots.get(size):
                    raise AuditFailed(f"{label} signs a state root that the replay does not reach at that size")
                if cp.time_ms < self.entry_times.get(size, 0):
                    raise AuditFailed(f"{label} is dated before the last entry it covers")
            except DidnodeError as exc:
                out.append(Problem.at(None, "checkpoint", f"{exc} [{exc.reason}]" if not isinstance(exc, AuditFailed) else str(exc)))
                break
        return out

    def close(self) -> None:
        self.txn.abort()


class _Source:
    """Scanned chunks in position order, and the checks of both stored trees,
    computed here (``workers == 0``) or by worker processes (:mod:`audit_worker`):
    ``workers`` scanners plus one checker for the trees, started first so that
    it runs alongside the replay."""

    def __init__(self, ro: ReadOnlyStore, network: str, size: int, workers: int, chunk: int) -> None:
        self.ro, self.network, self.size, self.chunk, self.workers = ro, network, size, chunk, workers
        self.pool = Workers(ro.path, workers + 1) if workers > 0 else None
        if self.pool is not None:
            self.pool.submit(workers, ("tree", size))
            self.pool.submit(workers, ("smt",))

    def chunks(self) -> Iterator[list[Scanned]]:
        size, chunk, pool, count = self.size, self.chunk, self.pool, self.workers
        starts = list(range(0, size, chunk))
        if pool is None:
            for start in starts:
                yield scan_range(self.ro, self.network, start, min(size, start + chunk))
            return
        submitted = 0

        def more() -> None:
            nonlocal submitted
            if submitted < len(starts):
                start = starts[submitted]
                pool.submit(submitted % count, ("scan", self.network, start, min(size, start + chunk)))
                submitted += 1

        for _ in range(3 * count):
            more()
        for k in range(len(starts)):
            items = pool.result(k % count)
            more()
            yield items

    def tree_checks(self) -> tuple[list[tuple[int, int, str]], tuple[bytes, list[tuple[str, str]]]]:
        """(log tree problems, (stored state root, state tree problems))."""
        if self.pool is None:
            return check_log_tree(self.ro, self.size), check_state_tree(self.ro)
        return self.pool.result(self.workers), self.pool.result(self.workers)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def audit(
    data_dir: str,
    workers: int | None = None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> AuditReport:
    """Replay and check the store of ``data_dir`` (a node data dir, or its ``ledger`` dir).

    Precondition: no node is writing to that store (stop it, or audit a copy;
    see :func:`didnode.store.readonly.snapshot`). ``workers`` worker processes
    do the stateless per-entry checks (default: 2 for logs of at least
    20,000 entries, else none). Returns the report of a clean audit; raises
    :class:`AuditFailed` naming the first bad position and what is wrong
    there, or :class:`StoreCorrupted` when the store cannot be opened.
    """
    started = time.perf_counter()
    ro = ReadOnlyStore(ledger_path(data_dir))
    scratch = tempfile.mkdtemp(prefix="didnode-audit-")
    stored_state = ro.dbs[layout.DB_STATE] if ro.has(layout.DB_STATE) else None
    stored_txn = ro.env.begin(buffers=False)

    def stored(did: str) -> bytes | None:
        return stored_txn.get(layout.did_key(did), db=stored_state)

    replay = _ReplayState(os.path.join(scratch, "replay"), stored)
    job: _Audit | None = None
    try:
        for name in REQUIRED_DBS:
            if not ro.has(name):
                raise Problem.at(None, "meta", f"the store has no {name.decode()} table").error()
        job = _Audit(ro, replay)
        n = job.size
        if workers is None:
            workers = 2 if n >= PARALLEL_THRESHOLD else 0
        source = _Source(ro, job.network, n, workers, chunk)
        problems: list[Problem] = []
        done = 0
        replayed = False
        try:
            try:
                for items in source.chunks():
                    for it in items:
                        job.step(it)
                    done += len(items)
                    replay.flush()
                    if progress is not None:
                        progress(done, n)
                replayed = True
            except _Found as found:
                problems.append(found.problem)
            log_problems, (state_root, tree_problems) = source.tree_checks()
        finally:
            source.close()
        problems += [Problem.at(pos, "merkle", msg, level=lv, order=1) for lv, pos, msg in log_problems]
        if replayed:
            problems += job.check_counts() + job.compare_state() + job.compare_governance()
            problems += [
                Problem.at(job.position_of_did(did), "state-tree", msg if not did or did in msg else f"{msg} (on the path of {did})", order=1)
                for did, msg in tree_problems
            ]
        if replayed and not problems:
            problems += job.check_checkpoints(state_root)
        if problems:
            # An altered entry also breaks every tree node above it: report the lowest cause.
            raise min(p for p in problems if not any(p.explained_by(q) for q in problems)).error()
        log_root = log_tree.root(LogNodes(job.txn, ro), n)  # type: ignore[arg-type]
        return AuditReport(
            job.network, job.node_did, n, replay.count(), len(job.checkpoints), log_root, state_root, time.perf_counter() - started
        )
    finally:
        if job is not None:
            job.close()
        replay.close()
        stored_txn.abort()
        ro.close()
        shutil.rmtree(scratch, ignore_errors=True)
