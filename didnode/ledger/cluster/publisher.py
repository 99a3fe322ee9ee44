"""The publisher: dry-runs submissions, publishes them on the stream, waits for the local apply.

Runs on thread ``didnode-nats``, an asyncio loop owning the NATS connection.
A submission group is dry-run against this node's state (the same
:func:`~didnode.core.keystate.apply`, in a read snapshot: obviously invalid
operations are rejected with the same errors as embedded mode), then
published, one message per operation on its DID's subject, with
``Nats-Msg-Id`` = the operation hash (retries are idempotent) and
``Nats-Expected-Last-Subject-Sequence`` = the stream sequence of the last
message this node applied on that subject (per-DID compare-and-set). A chunk
of independent operations goes out as one JetStream *atomic batch* (one
replicated proposal instead of one per message; with ``sync_interval:
always`` this is what makes durable throughput possible); when a batch fails
as a whole (a compare-and-set lost, a duplicate, a timeout) its operations are
published one by one, which tells each one's fate. At most
``max_inflight_batches`` batches await their acknowledgement at once. Every
publish is bounded by a timeout (for a batch: without progress of the stream)
and retried with the same message id through leader changes until the
submission deadline. The client is answered only when *this* node's LMDB has
applied the stream sequence of its operation (read-your-writes), with what
:func:`~didnode.ledger.batch.apply_batch` decided at that position: an
operation that passed the dry run can still lose to a concurrent write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import cast

import nats.errors
from nats.aio.msg import Msg

from didnode.clock import wall_ms
from didnode.core.governance.policy import Usage
from didnode.core.governance.rules import admit, govern
from didnode.core.keystate import ApplyContext, DidState, apply
from didnode.core.operations import Operation, Proof
from didnode.core.results import Receipt
from didnode.errors import (
    ClusterUnavailable,
    Conflict,
    DidAlreadyExists,
    DidnodeError,
    DuplicateOperation,
    Internal,
    InvalidSignature,
    NodeUnavailable,
    NotARegistrar,
    NotFound,
    QuotaExceeded,
    TooLarge,
    Unauthorized,
    UnknownDid,
    WriteConflict,
)
from didnode.ledger import stream as st
from didnode.ledger.batch import Outcome
from didnode.ledger.cluster.connection import NATS_ERRORS, Connection
from didnode.ledger.cluster.follower import Follower
from didnode.ledger.cluster.shared import Shared
from didnode.ledger.cluster.writer import Writer
from didnode.ledger.orderer import Callback, settle
from didnode.ledger.prepare import prepare_many

log = logging.getLogger("didnode.cluster")

ERR_WRONG_LAST_SEQ = 10071
ERR_MSG_TOO_LARGE = 10054
# Compare-and-set rounds per operation before giving up with WriteConflict.
MAX_CAS_ROUNDS = 4
_TRAILING_INT = re.compile(r"(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class _WrongLast:
    """The per-DID compare-and-set failed; ``last_seq`` is the subject's real last sequence (0 if unknown)."""

    last_seq: int


@dataclass(slots=True)
class _Group:
    ops: list[Operation | DidnodeError]
    done: Callback
    deps: dict[int, list[asyncio.Event]] = field(default_factory=dict)
    events: dict[int, asyncio.Event] = field(default_factory=dict)
    reads: dict[int, list[str]] = field(default_factory=dict)


def _deps(op: Operation) -> set[str]:
    """DIDs whose state ``op`` reads: its own, named controllers, and every signer's DID."""
    out = {op.did, *op.controllers}
    for p in op.proofs:
        out.add(p.kid.partition("#")[0])
    return out


class Publisher:
    """Groups, rounds, the dry run, publishing (NATS loop; the dry run on ``dry_pool``)."""

    def __init__(
        self,
        shared: Shared,
        conn: Connection,
        follower: Follower,
        writer: Writer,
        dry_pool: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self.shared = shared
        self.conn = conn
        self.follower = follower
        self.writer = writer
        self.dry_pool = dry_pool
        self.config = shared.config
        self.stream = shared.stream
        self.network = shared.network
        self.tables = shared.tables
        self.cluster = shared.cluster
        self.loop = shared.loop
        # An operation waits for earlier in-flight ones it depends on (see start_group).
        self._writer_ev: dict[str, asyncio.Event] = {}
        self._readers: dict[str, set[asyncio.Event]] = {}
        # Atomic batch acknowledgements come to one subscription (``<inbox>.<batch id>``),
        # so that a batch can wait for its ack as long as the stream is busy.
        self.ack_prefix = ""
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self.batch_slots: asyncio.Semaphore | None = None

    def start_group(self, ops: list[Operation | DidnodeError], done: Callback) -> None:
        """Register the group's reads and writes (in submission order), then run it.

        An operation waits for every earlier in-flight operation that writes a
        DID it reads, and (when it writes a DID) for earlier ones that read
        it, so a group (or a later group) never publishes ahead of what it
        depends on; independent operations go out together.
        """
        group = _Group(ops, done)
        for i, op in enumerate(ops):
            if not isinstance(op, Operation):
                continue
            ev = asyncio.Event()
            deps = _deps(op)
            waits = [self._writer_ev[d] for d in deps if d in self._writer_ev]
            readers = self._readers.get(op.did)
            if readers:
                waits.extend(readers)
            group.deps[i] = [e for e in waits if not e.is_set()]
            group.events[i] = ev
            self._writer_ev[op.did] = ev
            self._readers.pop(op.did, None)
            reads = [d for d in deps if d != op.did]
            for d in reads:
                self._readers.setdefault(d, set()).add(ev)
            group.reads[i] = reads
        self.shared.spawn(self._run_group(group))

    def _finish_op(self, group: _Group, i: int) -> None:
        ev = group.events.pop(i, None)
        if ev is None:
            return
        ev.set()
        op = group.ops[i]
        assert isinstance(op, Operation)
        if self._writer_ev.get(op.did) is ev:
            del self._writer_ev[op.did]
        for d in group.reads.pop(i, []):
            readers = self._readers.get(d)
            if readers is not None:
                readers.discard(ev)
                if not readers:
                    del self._readers[d]

    async def _run_group(self, group: _Group) -> None:
        ops = group.ops
        outcomes: list[Outcome | None] = [op if isinstance(op, DidnodeError) else None for op in ops]
        pending = [i for i, o in enumerate(outcomes) if o is None]
        deadline = self.loop.time() + self.config.submit_deadline_s
        try:
            while pending:
                ready = [i for i in pending if all(e.is_set() for e in group.deps[i])]
                if not ready:
                    blocker = next(e for i in pending for e in group.deps[i] if not e.is_set())
                    try:
                        await asyncio.wait_for(blocker.wait(), max(0.0, deadline - self.loop.time()))
                    except asyncio.TimeoutError:
                        for i in pending:
                            outcomes[i] = ClusterUnavailable("an earlier write this operation depends on is still not applied; resubmit")
                        break
                    continue
                round_ops = [cast(Operation, ops[i]) for i in ready]  # pending ones parsed
                results = await self._write_round(round_ops, deadline)
                for i, r in zip(ready, results):
                    outcomes[i] = r
                    self._finish_op(group, i)
                taken = set(ready)
                pending = [i for i in pending if i not in taken]
        finally:
            for i in list(group.events):
                self._finish_op(group, i)
            stopped = NodeUnavailable("the node is shutting down")
            final: list[Outcome] = [o if o is not None else stopped for o in outcomes]
            # The follower pops an entry when its message arrives; drop what never will (or came already).
            for op in ops:
                if isinstance(op, Operation):
                    self.shared.local_ops.pop(op.hash, None)
            with self.shared.lock:
                self.shared.pending -= len(ops)
            try:
                group.done(final)
            except Exception:  # a callback's bug must not kill the loop
                log.exception("submission callback failed")

    async def _write_round(self, ops: list[Operation], deadline: float) -> list[Outcome]:
        """Dry-run, publish and await the local apply of independent operations; retry lost compare-and-sets."""
        out: list[Outcome | None] = [None] * len(ops)
        todo = list(range(len(ops)))
        published: set[int] = set()
        for cas_round in range(MAX_CAS_ROUNDS + 1):
            judged_at = self.shared.applied_seq  # the dry run's snapshot holds at least this much
            checks = await self.loop.run_in_executor(self.dry_pool, self._dry_run, [ops[i] for i in todo])
            stale = [k for k, c in enumerate(checks) if _may_be_stale(c)]
            if cas_round == 0 and stale and await self._catch_up(deadline, judged_at):
                # This node was behind the stream (a client that just wrote through another
                # node, say): judge those operations again on the state it has caught up to.
                again = await self.loop.run_in_executor(self.dry_pool, self._dry_run, [ops[todo[k]] for k in stale])
                for k, c in zip(stale, again):
                    checks[k] = c
            pub: list[tuple[int, int]] = []
            for i, c in zip(todo, checks):
                if isinstance(c, DuplicateOperation) and i in published:
                    out[i] = self.writer.from_store(ops[i])  # our own earlier attempt was ordered after all
                elif isinstance(c, DidnodeError):
                    out[i] = c
                else:
                    pub.append((i, c))
            if not pub:
                break
            for i, _ in pub:
                self.shared.local_ops[ops[i].hash] = ops[i]
                published.add(i)
            results = await self._publish([(ops[i], expected) for i, expected in pub], deadline)
            acked: list[tuple[int, int]] = []
            conflicts: list[int] = []
            need = 0
            for (i, _), r in zip(pub, results):
                if isinstance(r, int):
                    acked.append((i, r))
                elif isinstance(r, _WrongLast):
                    conflicts.append(i)
                    need = max(need, r.last_seq)
                else:
                    out[i] = r
            if acked:
                for (i, _), o in zip(acked, await self.writer.outcomes_at([(ops[i], s) for i, s in acked], deadline)):
                    out[i] = o
            if not conflicts:
                break
            if cas_round == MAX_CAS_ROUNDS or self.loop.time() >= deadline:
                for i in conflicts:
                    out[i] = WriteConflict(f"{ops[i].did} kept changing under this {ops[i].type}; resubmit it on the new state", did=ops[i].did)
                break
            # Someone else wrote the DID: catch up to that write, then the dry run tells whether ours still holds.
            await self.writer.wait_applied(need or self.shared.stream_last, deadline)
            todo = conflicts
        return [o if o is not None else Internal("operation left without an outcome") for o in out]

    async def _catch_up(self, deadline: float, judged_at: int) -> bool:
        """Wait (bounded) until this node applied everything the stream holds now; False if it was
        not behind when it judged (its state then held ``judged_at``).

        Compared with ``judged_at``, not with what is applied by the time the stream answers:
        a node that caught up meanwhile must judge again on the newer state.
        """
        nc = self.conn.nc
        if nc is None or not nc.is_connected:
            return False
        try:
            info = await self.conn.api(nc, f"STREAM.INFO.{self.stream}")
        except ClusterUnavailable:
            return False
        last = int(info.get("state", {}).get("last_seq", 0)) if "error" not in info else 0
        self.shared.stream_last = max(self.shared.stream_last, last)
        if last <= judged_at:
            return False
        await self.writer.wait_applied(last, min(deadline, self.loop.time() + self.config.catch_up_s))
        return True

    def _dry_run(self, ops: list[Operation]) -> list[DidnodeError | int]:
        """Validate each op against the current state (read snapshot); its expected subject sequence, or its rejection."""
        out: list[DidnodeError | int] = []
        tables = self.tables
        with tables.store.read() as txn:
            position, now = tables.log_size(txn), tables.last_time(txn)

            def resolve(did: str) -> DidState:
                state = tables.state_if_exists(txn, did)
                if state is None:
                    raise UnknownDid(f"{did} does not exist on this ledger", did=did)
                return state

            # Governance as the writer will judge it; quotas at about the time the stream will stamp
            # (the wall clock, not the last entry's time, which may lie in a window that has ended).
            policy = tables.governance(txn)
            stamp = max(now, wall_ms())

            def counted(kind: bytes, did: str) -> Usage:
                return tables.usage(txn, kind, did)

            for op in ops:
                try:
                    if tables.has_operation(txn, op.hash):
                        at = tables.position_of(txn, op.hash)
                        raise DuplicateOperation(f"operation {op.hash.hex()} is already on the ledger at position {at}", position=at)
                    ctx = ApplyContext(position, now, resolve)
                    if op.type == "govern":
                        govern(policy, op, ctx)
                    else:
                        apply(tables.state_if_exists(txn, op.did), op, ctx)
                        admit(policy, op, stamp, counted)
                    out.append(self.cluster.subject_seq(txn, op.did))
                except DidnodeError as exc:
                    out.append(exc)
        return out

    async def _publish(self, items: list[tuple[Operation, int]], deadline: float) -> list[int | _WrongLast | DidnodeError]:
        """Publish (op, expected subject sequence) pairs; per item its stream sequence or why not."""
        res: list[int | _WrongLast | DidnodeError | None] = [None] * len(items)
        if len(items) > 1 and self.conn.atomic:
            size = self.config.atomic_batch_max
            chunks = [list(range(k, min(k + size, len(items)))) for k in range(0, len(items), size)]
            for chunk, seqs in zip(chunks, await asyncio.gather(*(self._publish_atomic([items[k] for k in c], deadline) for c in chunks))):
                if seqs is not None:
                    for k, s in zip(chunk, seqs):
                        res[k] = s
        rest = [k for k, r in enumerate(res) if r is None]
        if rest:
            for k, r in zip(rest, await asyncio.gather(*(self._publish_one(*items[k], deadline) for k in rest))):
                res[k] = r
        return [r for r in res if r is not None]

    def _message(self, op: Operation, expected: int) -> tuple[str, bytes, dict[str, str]]:
        headers = {st.HDR_MSG_ID: op.hash.hex(), st.HDR_EXPECTED_SUBJECT_SEQ: str(expected)}
        return st.subject_for(self.network, op.did), st.encode_body(op.payload, op.proofs), headers

    async def _publish_atomic(self, items: list[tuple[Operation, int]], deadline: float) -> list[int] | None:
        """One atomic batch; the stream sequences of its messages, or None when it was not
        committed as a whole (then each message is published alone, which tells its own fate).

        At most ``max_inflight_batches`` batches of this node await their acknowledgement
        at once: more would only queue at the stream leader. A batch waits for its
        acknowledgement as long as the stream makes progress (this node keeps receiving
        messages: the batch is queued behind others), up to ``batch_max_wait_s``; after
        ``batch_timeout_s`` without progress (its stream leader died, say) it is sent
        again, same message ids under a new batch id, until the deadline. If the first
        one was committed after all, the second is refused as a duplicate and the
        one-by-one publishes that follow get duplicate acknowledgements that carry the
        sequences.
        """
        last = len(items) - 1
        bodies = [self._message(op, expected) for op, expected in items]
        slots = self.batch_slots
        assert slots is not None
        async with slots:
            while True:
                nc = self.conn.nc
                timeout = min(self.config.batch_timeout_s, deadline - self.loop.time())
                if nc is None or not nc.is_connected or timeout <= 0 or not self.ack_prefix:
                    return None
                batch_id = os.urandom(12).hex()
                ack: asyncio.Future[Msg] = self.loop.create_future()
                self._acks[batch_id] = ack
                reply = f"{self.ack_prefix}.{batch_id}"

                async def send() -> None:
                    for j, (subject, body, headers) in enumerate(bodies):
                        headers = {**headers, st.HDR_BATCH_ID: batch_id, st.HDR_BATCH_SEQ: str(j + 1)}
                        if j < last:
                            await nc.publish(subject, body, headers=headers)
                        else:
                            headers[st.HDR_BATCH_COMMIT] = "1"
                            await nc.publish(subject, body, reply=reply, headers=headers)

                try:
                    # On a stalled socket the publishes wait for buffer space: bound them too.
                    await asyncio.wait_for(send(), timeout + 0.5)
                    await self._await_ack(ack, deadline)
                except NATS_ERRORS as exc:
                    log.info("atomic batch of %d not sent (%s); sending it again", len(items), type(exc).__name__)
                    continue
                finally:
                    self._acks.pop(batch_id, None)
                if not ack.done():
                    log.info("atomic batch of %d not acknowledged; sending it again", len(items))
                    continue
                msg = ack.result()
                if msg.headers and msg.headers.get("Status") == "503":
                    # No responders: no stream leader right now, or no stream any more.
                    self.conn.request_check()
                    await asyncio.sleep(0.2)
                    if self.conn.refusal is not None:
                        return None  # published one by one, each fails with the refusal
                    continue
                try:
                    resp = json.loads(msg.data)
                except ValueError:
                    return None
                break
        if not isinstance(resp, dict) or "error" in resp:
            log.debug("atomic batch of %d refused: %s", len(items), resp.get("error") if isinstance(resp, dict) else resp)
            return None
        seq, count = int(resp.get("seq", 0)), int(resp.get("count", 0))
        if count != len(items) or seq < count:
            log.warning("atomic batch of %d acknowledged as %d messages; publishing them one by one", len(items), count)
            return None
        self.follower.announce(seq)
        # An atomic batch is stored contiguously, ending at the acknowledged sequence
        # (each waiter still checks the operation hash at its sequence).
        return [seq - count + 1 + j for j in range(count)]

    async def _await_ack(self, ack: "asyncio.Future[Msg]", deadline: float) -> None:
        """Wait for a batch acknowledgement while the stream makes progress (see :meth:`_publish_atomic`)."""
        cfg = self.config
        give_up = min(deadline, self.loop.time() + max(cfg.batch_max_wait_s, cfg.batch_timeout_s))
        while not ack.done():
            mark = self.follower.next_seq
            wait = min(cfg.batch_timeout_s, give_up - self.loop.time())
            if wait <= 0:
                return
            await asyncio.wait([ack], timeout=wait)
            if self.follower.next_seq == mark:
                return  # nothing stored meanwhile: the stream (or this batch) is stuck

    async def on_ack(self, msg: Msg) -> None:
        fut = self._acks.pop(msg.subject[len(self.ack_prefix) + 1 :], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def _publish_one(self, op: Operation, expected: int, deadline: float) -> int | _WrongLast | DidnodeError:
        subject, body, headers = self._message(op, expected)
        last_error = "no acknowledgement"
        while True:
            refusal = self.conn.refused()
            if refusal is not None:
                return refusal  # the stream was deleted or replaced
            nc = self.conn.nc
            if nc is None or not nc.is_connected:
                return ClusterUnavailable(f"NATS became unreachable while ordering {op.hash.hex()[:16]}…; resubmit it (idempotent)")
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return ClusterUnavailable(
                    f"the stream did not acknowledge {op.hash.hex()[:16]}… within {self.config.submit_deadline_s:.0f}s ({last_error}); "
                    "it may still be ordered: resubmit it (idempotent)"
                )
            try:
                timeout = min(self.config.publish_timeout_s, remaining)
                msg = await asyncio.wait_for(nc.request(subject, body, timeout=timeout, headers=headers), timeout + 0.5)
                resp = json.loads(msg.data)
            except nats.errors.NoRespondersError:
                last_error = "the stream has no leader"
                self.conn.request_check()  # or no stream any more
                await asyncio.sleep(0.2)
                continue
            except NATS_ERRORS as exc:
                last_error = type(exc).__name__  # a timeout: retry with the same message id
                continue
            except ValueError:
                last_error = "an acknowledgement that is not JSON"
                continue
            err = resp.get("error") if isinstance(resp, dict) else {"description": "not an object"}
            if err is None:
                seq = int(resp["seq"])
                self.follower.announce(seq)
                return seq
            code, desc = err.get("err_code"), str(err.get("description", ""))
            if code == ERR_WRONG_LAST_SEQ:
                m = _TRAILING_INT.search(desc)
                return _WrongLast(int(m.group(1)) if m else 0)
            if code == ERR_MSG_TOO_LARGE:
                return TooLarge(f"the stream refuses a {len(body)}-byte message: {desc}", field="operation")
            last_error = desc or str(code)
            await asyncio.sleep(0.2)

    async def genesis(self, payload: bytes, proofs: tuple[Proof, ...], did: str) -> None:
        """Publish the node's own create until the ledger has its DID."""
        while True:
            with self.tables.store.read() as txn:
                if self.tables.state_if_exists(txn, did) is not None:
                    return
            if not self.conn.writable:
                await self.conn.sleep_or_wake(0.5)
                continue
            ops = await self.loop.run_in_executor(self.dry_pool, prepare_many, [(payload, proofs)], self.network, self.tables)
            fut: asyncio.Future[list[Outcome]] = self.loop.create_future()
            with self.shared.lock:
                self.shared.pending += 1
            self.start_group(ops, lambda outcomes: settle(fut, outcomes))
            outcome = (await fut)[0]
            if isinstance(outcome, (Receipt, DidAlreadyExists, DuplicateOperation)):
                log.info("node DID %s is on the ledger", did)
                return
            if isinstance(outcome, (NotARegistrar, QuotaExceeded)):
                # A governed network admits the creates its policy allows, the node's own too: retrying
                # cannot help. Said once; the node serves on without its DID on the ledger.
                self.shared.own_create_refused = outcome
                log.warning(
                    "this network's governance rejects the node's own DID %s (%s: %s). The node serves reads and relays writes, "
                    "but cannot authenticate clients (AuthService is off) until its DID is on the ledger. Remedy: a registrar "
                    "or governor of the network endorses the node's create (an extra signature by its current authentication key) "
                    "and submits it, or the node's DID is in the network's genesis (didnode init)",
                    did, outcome.reason, outcome,
                )
                return
            log.warning("publishing the node's DID %s: %s; retrying", did, outcome)
            await asyncio.sleep(1.0)


def _may_be_stale(check: DidnodeError | int) -> bool:
    """A dry-run rejection that a node lagging behind the stream could get wrong (state-dependent)."""
    return isinstance(check, (NotFound, Conflict, Unauthorized)) and not isinstance(
        check, (DuplicateOperation, DidAlreadyExists, InvalidSignature)
    )
