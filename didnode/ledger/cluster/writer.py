"""The writer: applies the stream to this node's LMDB and answers those waiting for it.

Thread ``didnode-writer`` applies each batch of messages with
``apply_batch(times=...)`` (the stream's timestamps) and records the last
applied stream sequence, the per-DID subject sequences and the clamped stream
time in the *same* LMDB transaction, then wakes the waiters. Tasks
(checkpoint signing) run in that transaction too, as in embedded mode.

Determinism: every node applies the same messages in the same order with the
same times, so log positions (dense: a message rejected at apply takes none),
entries, states and tree roots are byte-identical on every node whatever the
batch boundaries. Message times are clamped to be non-decreasing over *all*
messages (rejected ones included) before ``apply_batch`` sees them, which
makes each entry's time independent of how messages were grouped.

Read-your-writes: the publisher waits (on the NATS loop) until this node
applied the stream sequence of each operation it published, and answers with
what ``apply_batch`` decided there.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from dataclasses import dataclass
from typing import Any, Sequence

import lmdb

from didnode.core import entry as entry_codec
from didnode.core.operations import Operation
from didnode.core.results import Receipt
from didnode.errors import ClusterUnavailable, DidnodeError, DuplicateOperation, Internal, NodeUnavailable
from didnode.ledger import stream as st
from didnode.ledger.batch import BatchHook, Outcome, apply_batch
from didnode.ledger.cluster.follower import Follower
from didnode.ledger.cluster.shared import Prepared, Shared
from didnode.ledger.orderer import TaskRequest, run_task
from didnode.store.cluster_tables import subject_key

log = logging.getLogger("didnode.cluster")

# Outcomes kept in memory per stream sequence, so that a waiter registered
# after its message was applied (a duplicate publish's ack) still gets it.
RECENT_OUTCOMES = 200_000


@dataclass(slots=True)
class _Waiter:
    op: Operation | None
    future: "asyncio.Future[Outcome | None]"


class Writer:
    """Applies what the follower prepared, and the writer tasks, from ``apply_q``."""

    def __init__(
        self,
        shared: Shared,
        follower: Follower,
        hooks: Sequence[BatchHook],
        apply_q: "queue.SimpleQueue[Prepared | TaskRequest | None]",
    ) -> None:
        self.shared = shared
        self.follower = follower
        self.config = shared.config
        self.tables = shared.tables
        self.cluster = shared.cluster
        self.hooks = list(hooks)
        self.max_batch = shared.max_batch
        self.loop = shared.loop
        # -- under shared.lock
        self._waiters: dict[int, list[_Waiter]] = {}
        self._recent: dict[int, tuple[bytes, Outcome]] = {}
        # -- writer thread
        self._apply_q = apply_q
        self._last_commit = 0.0
        self._last_commit_size = 0

    # ------------------------------------------------------------------
    # Thread didnode-writer: apply, record the position, wake waiters
    # ------------------------------------------------------------------

    def write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._apply_q.get()
            if first is None:
                break
            preps: list[Prepared] = []
            tasks: list[TaskRequest] = []
            count = 0
            item: Prepared | TaskRequest | None = first
            # Group commit, adaptive. Every commit costs an fsync and rewrites every
            # LMDB page it touched (the trees touch ~20 random pages per operation, the
            # upper ones shared within a commit), and under load the stream trickles
            # in (its leader stores message by message). So after a big commit (load)
            # the next one waits until `commit_interval_s` has passed, gathering what
            # arrives meanwhile; after a small one (a quiet stream) it goes at once.
            busy = self._last_commit_size >= self.config.busy_commit
            not_before = self._last_commit + self.config.commit_interval_s if busy else 0.0
            while True:
                if isinstance(item, Prepared):
                    preps.append(item)
                    count += len(item.msgs)
                elif isinstance(item, TaskRequest):
                    tasks.append(item)
                if count >= self.max_batch:
                    break
                wait = not_before - time.monotonic()
                try:
                    item = self._apply_q.get(timeout=wait) if wait > 0 else self._apply_q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
            self.commit(preps, tasks)
            self._last_commit = time.monotonic()
            self._last_commit_size = count

    def commit(self, preps: list[Prepared], tasks: list[TaskRequest]) -> None:
        msgs = [m for p in preps for m in p.msgs]
        ops = [o for p in preps for o in p.ops]
        hashes = [h for p in preps for h in p.hashes]
        # Only the next sequences may be applied: drop redeliveries, refuse gaps.
        keep = [i for i, m in enumerate(msgs) if m.seq > self.shared.applied_seq]
        if len(keep) != len(msgs):
            msgs, ops, hashes = [msgs[i] for i in keep], [ops[i] for i in keep], [hashes[i] for i in keep]
        if msgs and any(m.seq != self.shared.applied_seq + 1 + i for i, m in enumerate(msgs)):
            log.error("stream messages out of order after %d; resyncing the consumer", self.shared.applied_seq)
            msgs, ops, hashes = [], [], []
            self.loop.call_soon_threadsafe(self.follower.resync)

        def batch(txn: lmdb.Transaction) -> tuple[list[Outcome], list[Any]]:
            outcomes: list[Outcome] = []
            if msgs:
                t = self.cluster.stream_time(txn)
                times: list[int] = []
                subjects: dict[bytes, int] = {}
                for m in msgs:
                    t = max(t, m.ts_ms)  # non-decreasing over every message, rejected ones included
                    times.append(t)
                    subjects[subject_key(st.did_for_subject(m.subject))] = m.seq
                # now_ms=0: the ordering time comes from the stream alone, never from this node's clock.
                outcomes = apply_batch(self.tables, txn, ops, 0, self.hooks, times=times)
                self.cluster.record(txn, msgs[-1].seq, t, subjects)
            return outcomes, [run_task(self.tables, txn, r.task) for r in tasks]

        while True:
            try:
                outcomes, results = self.tables.store.write(batch)
                break
            except (lmdb.Error, DidnodeError) as exc:
                # Nothing committed; the messages stay ours to apply (never skip one).
                log.error("cannot apply stream messages %s: %s; retrying", f"{msgs[0].seq}..{msgs[-1].seq}" if msgs else "-", exc)
                if self.shared.closed:
                    err = NodeUnavailable("the node is shutting down")
                    for r in tasks:
                        r.done(err)
                    return
                time.sleep(1.0)
        self.shared.batches += 1
        self.shared.applied_msgs += len(msgs)
        ready: list[tuple[_Waiter, tuple[bytes, Outcome], int]] = []
        if msgs:
            with self.shared.lock:
                self.shared.applied_seq = msgs[-1].seq
                for m, h, o in zip(msgs, hashes, outcomes):
                    self._recent[m.seq] = (h, o)
                    ws = self._waiters.pop(m.seq, None)
                    if ws:
                        ready.extend((w, (h, o), m.seq) for w in ws)
                floor = msgs[-1].seq - RECENT_OUTCOMES
                for s in range(msgs[0].seq - RECENT_OUTCOMES, floor + 1):
                    self._recent.pop(s, None)
        for r, res in zip(tasks, results):
            r.done(res)
        if msgs and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._after_apply, ready)
            except RuntimeError:
                pass  # the loop closed while stopping; nobody waits any more

    def _after_apply(self, ready: list[tuple[_Waiter, tuple[bytes, Outcome], int]]) -> None:
        for w, entry, seq in ready:
            if not w.future.done():
                w.future.set_result(self._matched(entry, w.op, seq))
        self.follower.kick()

    # ------------------------------------------------------------------
    # Waiting for this node to apply a stream sequence (read-your-writes)
    # ------------------------------------------------------------------

    @staticmethod
    def _matched(entry: tuple[bytes, Outcome], op: Operation | None, seq: int) -> Outcome | None:
        h, outcome = entry
        if op is None:
            return None
        if h != op.hash:
            log.error("stream sequence %d holds operation %s, not %s", seq, h.hex()[:16], op.hash.hex()[:16])
            return Internal(f"stream sequence {seq} holds another operation than the one published there")
        return outcome

    def waiter(self, seq: int, op: Operation | None) -> "asyncio.Future[Outcome | None]":
        fut: asyncio.Future[Outcome | None] = self.loop.create_future()
        with self.shared.lock:
            if seq > self.shared.applied_seq:
                self._waiters.setdefault(seq, []).append(_Waiter(op, fut))
                return fut
            entry = self._recent.get(seq)
        fut.set_result(self._matched(entry, op, seq) if entry is not None else self.from_store(op))
        return fut

    def from_store(self, op: Operation | None) -> Outcome | None:
        """The outcome of an operation applied too long ago to be in memory (a late duplicate ack)."""
        if op is None:
            return None
        with self.tables.store.read() as txn:
            if not self.tables.has_operation(txn, op.hash):
                return DuplicateOperation(f"operation {op.hash.hex()} was ordered long ago and rejected when applied; resubmit to see why")
            e = entry_codec.decode(self.tables.entry(txn, self.tables.position_of(txn, op.hash)))
        return Receipt(e.position, e.time, op.hash, op.did, op.type, op.seq)

    def fail_waiters(self, err: DidnodeError) -> None:
        """Answer everyone waiting for a sequence this node has not applied with ``err`` (NATS loop):
        the stream that acknowledged their operations is gone or was replaced."""
        with self.shared.lock:
            waiters, self._waiters = self._waiters, {}
        for seq, ws in waiters.items():
            for w in ws:
                if not w.future.done():
                    w.future.set_result(
                        type(err)(f"stream sequence {seq} was acknowledged but will not be applied here: {err.message}", **err.details)
                        if w.op is not None
                        else None
                    )

    def forget_waiters(self, items: list[tuple[int, "asyncio.Future[Outcome | None]"]]) -> None:
        with self.shared.lock:
            for seq, fut in items:
                ws = self._waiters.get(seq)
                if ws:
                    ws[:] = [w for w in ws if w.future is not fut]
                    if not ws:
                        del self._waiters[seq]

    async def outcomes_at(self, items: list[tuple[Operation, int]], deadline: float) -> list[Outcome]:
        futs = [self.waiter(seq, op) for op, seq in items]
        pending = [f for f in futs if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - self.loop.time()))
        out: list[Outcome] = []
        late: list[tuple[int, asyncio.Future[Outcome | None]]] = []
        for (op, seq), f in zip(items, futs):
            if f.done():
                r = f.result()
                assert r is not None
                out.append(r)
            else:
                late.append((seq, f))
                out.append(
                    ClusterUnavailable(
                        f"operation {op.hash.hex()[:16]}… is ordered at stream sequence {seq} but this node has not applied it yet "
                        f"(applied {self.shared.applied_seq}); it will be applied: resolve it shortly",
                        stream_seq=seq,
                    )
                )
        self.forget_waiters(late)
        return out

    async def wait_applied(self, seq: int, deadline: float) -> None:
        fut = self.waiter(seq, None)
        if not fut.done():
            try:
                await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - self.loop.time()))
            except asyncio.TimeoutError:
                self.forget_waiters([(seq, fut)])
