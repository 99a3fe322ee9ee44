"""Cluster mode: a replicated NATS JetStream stream orders the ledger; every node follows it.

:class:`JetStreamOrderer` offers the interface of the embedded
:class:`~didnode.ledger.orderer.LocalOrderer` (``submit``, ``submit_task``,
``start``, ``stop``), so the service layer is the same in both modes. Inside
it are three stages on three threads:

* **publisher** (thread ``didnode-nats``, an asyncio loop owning the NATS
  connection). A submission group is dry-run against this node's state (the
  same :func:`~didnode.core.keystate.apply`, in a read snapshot: obviously
  invalid operations are rejected with the same errors as embedded mode),
  then published, one message per operation on its DID's subject, with
  ``Nats-Msg-Id`` = the operation hash (retries are idempotent) and
  ``Nats-Expected-Last-Subject-Sequence`` = the stream sequence of the last
  message this node applied on that subject (per-DID compare-and-set). A
  chunk of independent operations goes out as one JetStream *atomic batch*
  (one replicated proposal instead of one per message; with
  ``sync_interval: always`` this is what makes durable throughput possible);
  when a batch fails as a whole (a compare-and-set lost, a duplicate, a
  timeout) its operations are published one by one, which tells each one's
  fate. At most ``max_inflight_batches`` batches await their
  acknowledgement at once. Every publish is bounded by a timeout (for a
  batch: without progress of the stream) and retried with the same
  message id through leader changes until the submission deadline. The
  client is answered only when *this* node's LMDB has applied the stream
  sequence of its operation (read-your-writes), with what
  :func:`~didnode.ledger.batch.apply_batch` decided at that position: an
  operation that passed the dry run can still lose to a concurrent write.
* **follower** (same loop, then thread ``didnode-follow``). Batched direct
  gets (answered by the nearest replica, no consumer on the servers) read
  the stream in order from the last applied sequence + 1, when the stream
  grew (acknowledgements, the other nodes' ticks) and at least every
  ``poll_interval_s``; on a stream without ``allow_direct`` an ephemeral pull
  consumer (no acks, in memory) does. The loop checks that sequences are
  dense and reads again (or recreates the consumer) on any gap, stall or
  reconnect. No acknowledgement goes back: the position is the applied
  stream sequence recorded in LMDB. The follow thread
  decodes and parses messages and verifies their signatures in bulk (the
  node's verifier process), reusing the already verified operation when the
  message is one this node published.
* **writer** (thread ``didnode-writer``): applies each batch of messages with
  ``apply_batch(times=...)`` (the stream's timestamps) and records the last
  applied stream sequence, the per-DID subject sequences and the clamped
  stream time in the *same* LMDB transaction, then wakes the waiters. Tasks
  (checkpoint signing) run in that transaction too, as in embedded mode.

Determinism: every node applies the same messages in the same order with the
same times, so log positions (dense: a message rejected at apply takes none),
entries, states and tree roots are byte-identical on every node whatever the
batch boundaries. Message times are clamped to be non-decreasing over *all*
messages (rejected ones included) before ``apply_batch`` sees them, which
makes each entry's time independent of how messages were grouped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, cast

import lmdb
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from didnode.core import entry as entry_codec
from didnode.core.keystate import ApplyContext, DidState, apply
from didnode.core.operations import Operation, Proof
from didnode.errors import (
    ClusterUnavailable,
    Conflict,
    DidAlreadyExists,
    DidnodeError,
    DuplicateOperation,
    Internal,
    InvalidSignature,
    NodeUnavailable,
    NotFound,
    Overloaded,
    StreamMismatch,
    TooLarge,
    Unauthorized,
    UnknownDid,
    WriteConflict,
    WrongSubject,
)
from didnode.ledger import stream as st
from didnode.ledger.batch import Accepted, BatchHook, Outcome, apply_batch
from didnode.ledger.orderer import run_task
from didnode.ledger.prepare import prepare_many
from didnode.ledger.verifier import InlineVerifier, Verifier
from didnode.store.cluster_tables import ClusterTables, subject_key
from didnode.store.ledger_tables import LedgerTables

log = logging.getLogger("didnode.cluster")

Callback = Callable[[list[Outcome]], None]
Task = Callable[[lmdb.Transaction], Any]

# Everything nats-py raises for a failed network operation.
NATS_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, asyncio.TimeoutError, OSError)
ERR_WRONG_LAST_SEQ = 10071
ERR_STREAM_NOT_FOUND = 10059
ERR_STREAM_NAME_IN_USE = 10058
ERR_MSG_TOO_LARGE = 10054
# Compare-and-set rounds per operation before giving up with WriteConflict.
MAX_CAS_ROUNDS = 4
# Outcomes kept in memory per stream sequence, so that a waiter registered
# after its message was applied (a duplicate publish's ack) still gets it.
RECENT_OUTCOMES = 200_000
_TRAILING_INT = re.compile(r"(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How a node joins a cluster (``didnode serve --nats ... --stream ...``)."""

    servers: tuple[str, ...]
    network: str
    stream: str = ""  # default: DIDNODE_<NETWORK>
    replicas: int = 0  # 0: 3, or 1 on a single server
    duplicate_window_s: float = 120.0
    publish_timeout_s: float = 2.0  # one publish attempt (nats-py futures never time out alone)
    # An atomic batch waits this long for its acknowledgement while the stream makes no
    # progress (this node receives nothing): then it is sent again. While the stream
    # stores other messages the batch is only queued behind them (each message is
    # fsync'd on every replica) and the wait goes on, up to batch_max_wait_s.
    batch_timeout_s: float = 3.0
    batch_max_wait_s: float = 10.0
    # Atomic batches of this node awaiting their acknowledgement at once. More only
    # lengthen the queue at the stream leader (and so every batch's wait) without
    # storing anything sooner; two keep the leader busy while one is acknowledged.
    max_inflight_batches: int = 2
    api_timeout_s: float = 3.0
    catch_up_s: float = 5.0  # longest wait for this node to catch up before judging a submission
    submit_deadline_s: float = 20.0  # all attempts of one submission, publish to local apply
    pull_batch: int = 1000  # messages per read (a direct get batch, or a consumer pull)
    pull_max_bytes: int = 4 << 20  # bytes per direct get batch
    pull_expires_s: float = 5.0
    heartbeat_s: float = 1.0
    # With direct gets, a node reads the stream when told that it grew (its own acks,
    # the other nodes' ticks) and, for writes from elsewhere, at least this often.
    poll_interval_s: float = 0.1
    max_buffered: int = 20_000  # delivered but not yet applied messages
    commit_interval_s: float = 0.2  # under load, at most one follower commit per interval (group commit)
    busy_commit: int = 32  # a commit of this many messages means "under load"
    flush_interval_s: float = 0.005  # under load, delivered messages reach the follow thread at most this often
    atomic_batch_max: int = 1000  # the server's default limit of messages per atomic batch
    client_name: str = "didnode"

    @property
    def stream_name(self) -> str:
        return self.stream or st.default_stream_name(self.network)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Where a cluster node stands (NodeInfo and health report it)."""

    stream: str
    connected: bool
    writable: bool
    applied_seq: int
    stream_last_seq: int
    lag: int
    reason: str  # why the node is not writable; empty when it is


@dataclass(slots=True)
class _Raw:
    seq: int
    ts_ms: int
    subject: str
    data: bytes


@dataclass(slots=True)
class _Prepared:
    msgs: list[_Raw]
    ops: list[Operation | DidnodeError]
    hashes: list[bytes]


@dataclass(slots=True)
class _TaskReq:
    task: Task
    done: Callable[[Any], None]


@dataclass(slots=True)
class _Waiter:
    op: Operation | None
    future: "asyncio.Future[Outcome | None]"


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


class JetStreamOrderer:
    """Orders operations through a JetStream stream and applies the stream to this node's LMDB.

    Thread rules: :meth:`submit`, :meth:`submit_task`, :meth:`status` and
    :meth:`stop` may be called from any thread; ``done`` callbacks run on the
    NATS thread (submissions) or the writer thread (tasks), as with
    :class:`~didnode.ledger.orderer.LocalOrderer`.
    """

    def __init__(
        self,
        tables: LedgerTables,
        config: ClusterConfig,
        hooks: Sequence[BatchHook] = (),
        verifier: Verifier | None = None,
        max_batch: int = 2048,
        max_pending: int = 100_000,
    ) -> None:
        self.tables = tables
        self.cluster = ClusterTables(tables.store)
        self.config = config
        self.network = config.network
        self.stream = config.stream_name
        self.hooks = list(hooks)
        self.verifier: Verifier = verifier if verifier is not None else InlineVerifier()
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.batches = 0  # LMDB transactions of the follower (for logs and benchmarks)
        self.applied_msgs = 0
        with tables.store.read() as txn:
            self._applied_seq = self.cluster.applied_seq(txn)
        # -- shared between threads, under _lock
        self._lock = threading.Lock()
        self._waiters: dict[int, list[_Waiter]] = {}
        self._recent: dict[int, tuple[bytes, Outcome]] = {}
        self._pending = 0
        self._closed = False
        # Operations this node published, parsed and verified: the follower
        # reuses them instead of verifying the same signatures again.
        self._local_ops: dict[bytes, Operation] = {}
        # -- NATS loop state
        self._loop = asyncio.new_event_loop()
        self._nc: NatsClient | None = None
        self._writable = False
        self._why = "not connected to NATS yet"
        self._listeners: list[Callable[[bool], None]] = []
        self._stream_last = self._applied_seq
        self._atomic = False
        self._direct = False  # the stream allows direct gets: read it with them, not with a consumer
        self._grew: asyncio.Event | None = None  # the stream grew, or the buffer has room again
        self._fetch_id = ""
        self._fetch_done: asyncio.Future[int] | None = None
        self._consumer_until = 0.0  # follow with a consumer until then (the nearest replica lags)
        self._next_seq = self._applied_seq + 1
        self._consumer = ""
        self._inbox = ""
        self._credit = 0
        self._last_activity = 0.0
        self._pull_scheduled = False
        self._incoming: list[_Raw] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer_ev: dict[str, asyncio.Event] = {}
        self._readers: dict[str, set[asyncio.Event]] = {}
        self._stop_evt: asyncio.Event | None = None
        self._wake_evt: asyncio.Event | None = None
        self._reset_evt: asyncio.Event | None = None
        # Atomic batch acknowledgements come to one subscription (``<inbox>.<batch id>``),
        # so that a batch can wait for its ack as long as the stream is busy.
        self._ack_prefix = ""
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self._batch_slots: asyncio.Semaphore | None = None
        # -- pipeline queues and threads
        self._raw_q: queue.SimpleQueue[list[_Raw] | None] = queue.SimpleQueue()
        self._apply_q: queue.SimpleQueue[_Prepared | _TaskReq | None] = queue.SimpleQueue()
        self._dry_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="didnode-dryrun")
        self._threads: list[threading.Thread] = []
        self._last_commit = 0.0
        self._last_commit_size = 0
        self._last_flush = 0.0

    # ------------------------------------------------------------------
    # Public interface (any thread)
    # ------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer, the follower and the NATS connection (which retries until it succeeds)."""
        for target, name in ((self._write_loop, "didnode-writer"), (self._prep_loop, "didnode-follow"), (self._run_loop, "didnode-nats")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, ops: Sequence[Operation | DidnodeError], done: Callback) -> None:
        """Publish ``ops`` (one group, in order); ``done(outcomes)`` runs once this node applied them.

        Raises :class:`ClusterUnavailable` at once when NATS is unreachable
        (fail fast; reads keep working), :class:`Overloaded` beyond
        ``max_pending`` waiting operations, :class:`NodeUnavailable` when stopping.
        """
        with self._lock:
            if self._closed:
                raise NodeUnavailable("the node is shutting down")
            if not self._writable:
                raise ClusterUnavailable(f"this node cannot order writes now: {self._why}; reads still work", stream=self.stream)
            if self._pending + len(ops) > self.max_pending:
                raise Overloaded(f"{self._pending} operations are waiting to be ordered; retry shortly")
            self._pending += len(ops)
        try:
            self._loop.call_soon_threadsafe(self._start_group, list(ops), done)
        except RuntimeError:  # the loop closed: stop() ran since the check above
            with self._lock:
                self._pending -= len(ops)
            raise NodeUnavailable("the node is shutting down") from None

    def submit_task(self, task: Task, done: Callable[[Any], None]) -> None:
        """Run ``task(txn)`` in the writer's next transaction (see ``LocalOrderer.submit_task``)."""
        with self._lock:
            if self._closed:
                raise NodeUnavailable("the node is shutting down")
        self._apply_q.put(_TaskReq(task, done))

    def publish_genesis(self, payload: bytes, proofs: Sequence[Proof], did: str) -> None:
        """Make sure the node's own DID create is on the ledger: publish it (in the
        background, retrying while NATS is away) unless the ledger already has ``did``."""
        self._loop.call_soon_threadsafe(self._spawn, self._genesis(payload, tuple(proofs), did))

    def add_listener(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(writable)`` now and on every change (from the NATS thread)."""
        self._listeners.append(fn)
        fn(self._writable)

    def status(self) -> ClusterStatus:
        applied = self._applied_seq
        last = max(self._stream_last, applied)
        nc = self._nc
        return ClusterStatus(self.stream, bool(nc and nc.is_connected), self._writable, applied, last, last - applied, "" if self._writable else self._why)

    def stop(self) -> None:
        """Stop publishing and following, finish the batch being applied, stop the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(timeout=15)
            except (concurrent.futures.TimeoutError, RuntimeError) as exc:
                log.warning("NATS side did not stop cleanly: %s", exc)
        self._raw_q.put(None)
        for t in self._threads:
            t.join(timeout=30)
        self._dry_pool.shutdown(wait=True)

    # ------------------------------------------------------------------
    # NATS loop: connection, stream, supervision
    # ------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    def _spawn(self, coro: Any) -> "asyncio.Task[Any]":
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _main(self) -> None:
        self._stop_evt = asyncio.Event()
        self._wake_evt = asyncio.Event()
        self._reset_evt = asyncio.Event()
        self._batch_slots = asyncio.Semaphore(max(1, self.config.max_inflight_batches))
        self._grew = asyncio.Event()
        self._spawn(self._supervise())
        await self._stop_evt.wait()

    async def _shutdown(self) -> None:
        self._set_state(False, "the node is shutting down")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        nc = self._nc
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), 5)
            except NATS_ERRORS as exc:
                log.debug("closing the NATS connection: %s", exc)
        assert self._stop_evt is not None
        self._stop_evt.set()

    def _set_state(self, writable: bool, why: str) -> None:
        changed = writable != self._writable
        with self._lock:
            self._writable = writable
            self._why = why
        if changed:
            if writable:
                log.info("cluster stream %s reachable: accepting writes", self.stream)
            else:
                log.warning("not accepting writes: %s", why)
            for fn in self._listeners:
                try:
                    fn(writable)
                except Exception:  # a listener's bug must not stop the cluster loop
                    log.exception("writability listener failed")

    async def _sleep_or_wake(self, seconds: float) -> None:
        assert self._wake_evt is not None
        try:
            await asyncio.wait_for(self._wake_evt.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self._wake_evt.clear()

    async def _connect(self) -> NatsClient:
        """Connect, retrying for ever (nats-py with ``max_reconnect_attempts=-1`` never gives up)."""

        async def on_error(exc: Exception) -> None:
            if not self._writable:
                self._why = f"cannot reach NATS ({', '.join(self.config.servers)}): {exc or type(exc).__name__}"
            log.debug("NATS: %r", exc)

        async def on_disconnected() -> None:
            self._set_state(False, "disconnected from NATS; reconnecting")
            if self._reset_evt is not None:
                self._reset_evt.set()

        async def on_reconnected() -> None:
            log.info("reconnected to NATS")
            if self._wake_evt is not None:
                self._wake_evt.set()

        return await nats.connect(
            servers=list(self.config.servers),
            name=self.config.client_name,
            allow_reconnect=True,
            # In the order given: each node lists its nearest server first (its direct gets
            # are then answered by that server's replica, spreading the reads).
            dont_randomize=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py annotates int; seconds as float work
            connect_timeout=2,
            ping_interval=5,
            max_outstanding_pings=2,
            flush_timeout=5,  # a forced flush (full buffer on a stalled socket) must not wait for ever
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        )

    async def _supervise(self) -> None:
        """Connect; then keep the stream checked and the follower running, for the node's life."""
        nc = await self._connect()
        # nats-py subscribes again by itself after a reconnect.
        prefix = nc.new_inbox()
        await nc.subscribe(prefix + ".*", cb=self._on_ack)
        self._ack_prefix = prefix
        self._nc = nc
        log.info("connected to NATS at %s", nc.connected_url.netloc if nc.connected_url else "?")
        checked = False  # the stream was found and matched this store at least once
        while True:
            if not nc.is_connected:
                self._set_state(False, "disconnected from NATS; reconnecting")
                await self._sleep_or_wake(0.5)
                continue
            try:
                await self._ensure_stream(nc)
                checked = True
            except StreamMismatch as exc:
                self._set_state(False, str(exc))
                log.error("%s", exc)
                await self._sleep_or_wake(10.0)
                continue
            except ClusterUnavailable as exc:
                # Connected, but the stream does not answer (a leader election, most
                # likely): once the stream was seen, that is a stall, not unavailability;
                # in-flight publishes retry through it. Before, the node cannot write.
                if not checked:
                    self._set_state(False, str(exc))
                    await self._sleep_or_wake(1.0)
                    continue
                log.info("stream %s does not answer (%s); following again", self.stream, exc)
            self._set_state(True, "")
            try:
                await self._follow(nc)
            except ClusterUnavailable as exc:
                log.warning("follower: %s; restarting it", exc)
                await self._sleep_or_wake(0.5)

    async def _api(self, nc: NatsClient, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One JetStream API request (``$JS.API.<subject>``); raises :class:`ClusterUnavailable`."""
        try:
            data = b"" if body is None else json.dumps(body).encode()
            timeout = self.config.api_timeout_s
            # nats-py bounds the wait for the reply, not the publish before it: bound both.
            msg = await asyncio.wait_for(nc.request("$JS.API." + subject, data, timeout=timeout), timeout + 0.5)
            resp = json.loads(msg.data)
        except nats.errors.NoRespondersError:
            raise ClusterUnavailable("JetStream is not enabled or has no leader on this NATS cluster") from None
        except NATS_ERRORS as exc:
            raise ClusterUnavailable(f"JetStream API {subject.split('.')[0]} got no answer: {type(exc).__name__}") from None
        except ValueError:
            raise ClusterUnavailable(f"JetStream API {subject} answered with bytes that are not JSON") from None
        if not isinstance(resp, dict):
            raise ClusterUnavailable(f"JetStream API {subject} answered {type(resp).__name__}")
        return resp

    async def _ensure_stream(self, nc: NatsClient) -> None:
        """Create the stream if absent; check it is the one this store follows."""
        info = await self._api(nc, f"STREAM.INFO.{self.stream}")
        err = info.get("error")
        if err and err.get("err_code") == ERR_STREAM_NOT_FOUND:
            await self._create_stream(nc)
            info = await self._api(nc, f"STREAM.INFO.{self.stream}")
            err = info.get("error")
        if err:
            raise ClusterUnavailable(f"stream {self.stream}: {err.get('description', err)}")
        cfg, state = info.get("config", {}), info.get("state", {})
        if st.subject_filter(self.network) not in cfg.get("subjects", []):
            raise StreamMismatch(f"stream {self.stream} does not carry subjects {st.subject_filter(self.network)}; it is not this network's ledger")
        created = str(info.get("created", ""))
        with self.tables.store.read() as txn:
            bound = self.cluster.binding(txn)
        if bound is None:
            await self._in_writer(lambda txn: self.cluster.bind(txn, self.stream, created))
        elif bound[0] != self.stream or (bound[1] and created and bound[1] != created):
            raise StreamMismatch(
                f"this store follows stream {bound[0]} created {bound[1]}, not stream {self.stream} created {created}; "
                "use another --data directory (a node replays the stream from the start)",
                stream=self.stream,
            )
        last = int(state.get("last_seq", 0))
        if self._applied_seq > last:
            raise StreamMismatch(
                f"this store applied stream {self.stream} up to {self._applied_seq} but the stream ends at {last}: "
                "the stream was recreated or lost messages",
                stream=self.stream,
            )
        self._atomic = bool(cfg.get("allow_atomic", False))
        self._direct = bool(cfg.get("allow_direct", False))
        self._stream_last = max(self._stream_last, last)

    async def _create_stream(self, nc: NatsClient) -> None:
        """Create the stream: replicas 3 (or ``config.replicas``), falling back to 1 on a single server.

        The size of the NATS cluster is not visible to a client (servers may not
        advertise each other), so asking for 3 replicas and letting JetStream
        refuse is the reliable test.
        """
        tries = [self.config.replicas] if self.config.replicas else [3, 1]
        last_error = ""
        for replicas in tries:
            # Atomic batches need NATS 2.12; an older server refuses the field, then the stream goes without.
            for atomic in (True, False):
                cfg = st.stream_config(self.stream, self.network, replicas, self.config.duplicate_window_s, atomic)
                resp = await self._api(nc, f"STREAM.CREATE.{self.stream}", cfg)
                err = resp.get("error")
                if err is None:
                    log.info("created stream %s (replicas %d, atomic batches %s)", self.stream, replicas, atomic)
                    return
                if err.get("err_code") == ERR_STREAM_NAME_IN_USE:
                    return  # another node created it first; INFO tells what it is
                last_error = str(err.get("description", err))
                log.debug("creating stream %s with replicas %d, atomic %s: %s", self.stream, replicas, atomic, last_error)
        raise ClusterUnavailable(f"cannot create stream {self.stream}: {last_error}")

    async def _in_writer(self, task: Task) -> Any:
        fut: asyncio.Future[Any] = self._loop.create_future()

        def done(result: Any) -> None:
            self._loop.call_soon_threadsafe(_settle, fut, result)

        self.submit_task(task, done)
        result = await fut
        if isinstance(result, DidnodeError):
            raise result
        return result

    # ------------------------------------------------------------------
    # Follower (NATS loop side): an ephemeral pull consumer, checked for gaps
    # ------------------------------------------------------------------

    async def _follow(self, nc: NatsClient) -> None:
        """Read the stream from the next expected sequence until a reset is needed."""
        if self._direct and time.monotonic() >= self._consumer_until:
            await self._follow_direct(nc)
        else:
            await self._follow_consumer(nc)

    async def _follow_direct(self, nc: NatsClient) -> None:
        """Read the stream with batched direct gets (no consumer), until a reset or a disconnect.

        A direct get batch (``$JS.API.DIRECT.GET.<stream>`` with ``seq`` and ``batch``) is
        answered by the nearest replica from its store: every message with its sequence,
        subject and timestamp in headers, then an end-of-batch status telling how many
        more it holds. Compared with a consumer per node, the servers keep no consumer
        state, wake no consumer on every stored message and send each batch in one
        burst. A batch is requested when the stream grew (this node's publish
        acknowledgements, the other nodes' ticks on ``didnode-tick.<stream>``), while
        the replica reports more, and at least every ``poll_interval_s`` (writes from
        publishers that send no ticks). A replica that lags behind the stream leader
        answers with a shorter prefix; the next read gets the rest.
        """
        assert self._reset_evt is not None and self._grew is not None
        self._reset_evt.clear()
        cfg = self.config
        prefix = nc.new_inbox()
        try:
            sub = await asyncio.wait_for(nc.subscribe(prefix + ".*", cb=self._on_direct), cfg.api_timeout_s)
            ticks = await asyncio.wait_for(nc.subscribe(self._tick_subject, cb=self._on_tick), cfg.api_timeout_s)
        except NATS_ERRORS as exc:
            raise ClusterUnavailable(f"cannot subscribe to direct get replies: {type(exc).__name__}") from None
        log.debug("following %s from %d with direct gets (connected to %s)", self.stream, self._next_seq, (getattr(nc, "_server_info", None) or {}).get("server_name", "?"))
        next_info = time.monotonic() + 5.0
        more = True
        progress_at, progress_seq = time.monotonic(), self._next_seq
        try:
            while nc.is_connected and not self._reset_evt.is_set():
                room = cfg.max_buffered - ((self._next_seq - 1) - self._applied_seq)
                if self._next_seq != progress_seq or self._stream_last < self._next_seq or room < cfg.max_buffered // 2:
                    progress_at, progress_seq = time.monotonic(), self._next_seq
                elif time.monotonic() - progress_at > cfg.catch_up_s:
                    # The stream holds more than the replica answering this node's direct gets
                    # (it lags, or is catching up): follow the stream with a consumer a while.
                    log.warning("direct gets stuck at %d (stream at %d); following with a consumer for a minute", self._next_seq, self._stream_last)
                    self._consumer_until = time.monotonic() + 60.0
                    return
                if time.monotonic() > next_info:
                    next_info = time.monotonic() + 5.0
                    await self._refresh_info(nc)
                    if not self._direct:
                        return  # the stream no longer allows direct gets: follow with a consumer
                if room < min(cfg.pull_batch, cfg.max_buffered // 2) or not more:
                    # Wait until the stream grew, the writer made room, or the poll interval passed.
                    self._grew.clear()
                    if room >= min(cfg.pull_batch, cfg.max_buffered // 2) and self._stream_last >= self._next_seq:
                        self._grew.set()
                    try:
                        await asyncio.wait_for(self._grew.wait(), cfg.poll_interval_s)
                    except asyncio.TimeoutError:
                        pass
                    more = True
                    continue
                # Pace reads under load: each one then carries more messages.
                pause = self._last_flush + cfg.flush_interval_s - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                fetch_id = os.urandom(6).hex()
                done: asyncio.Future[int] = self._loop.create_future()
                self._fetch_id, self._fetch_done = fetch_id, done
                start = self._next_seq
                req = {"seq": start, "batch": min(cfg.pull_batch, room), "max_bytes": cfg.pull_max_bytes}
                try:
                    await asyncio.wait_for(nc.publish(f"$JS.API.DIRECT.GET.{self.stream}", json.dumps(req).encode(), reply=f"{prefix}.{fetch_id}"), cfg.api_timeout_s)
                    pending = await asyncio.wait_for(done, cfg.api_timeout_s)
                except NATS_ERRORS as exc:
                    log.debug("direct get from %d: %s", req["seq"], type(exc).__name__)
                    pending = 0
                finally:
                    self._fetch_done = None
                more = pending > 0
                if self._next_seq == start:
                    # Nothing new on this replica (it may lag behind the leader that acknowledged
                    # what this node was told of): no faster than the flush pace.
                    await asyncio.sleep(cfg.flush_interval_s)
        finally:
            self._fetch_done = None
            for s_ in (sub, ticks):
                try:
                    await asyncio.wait_for(s_.unsubscribe(), cfg.api_timeout_s)
                except NATS_ERRORS as exc:
                    log.debug("unsubscribing: %s", exc)

    @property
    def _tick_subject(self) -> str:
        # Outside didnode.> so that no stream of the network's subjects can ever store a tick.
        return f"didnode-tick.{self.stream}"

    def _grown(self, seq: int) -> None:
        """The stream holds ``seq`` (an acknowledgement, a tick): read it if this node has not yet."""
        if seq > self._stream_last:
            self._stream_last = seq
        if seq >= self._next_seq and self._grew is not None:
            self._grew.set()

    def _announce(self, seq: int) -> None:
        """Tell the other nodes that the stream holds ``seq`` (best effort: they also poll)."""
        self._grown(seq)
        nc = self._nc
        if nc is not None and nc.is_connected and self._direct:
            self._spawn(self._send_tick(nc, seq))

    async def _send_tick(self, nc: NatsClient, seq: int) -> None:
        try:
            await asyncio.wait_for(nc.publish(self._tick_subject, str(seq).encode()), self.config.api_timeout_s)
        except NATS_ERRORS as exc:
            log.debug("tick: %s", exc)

    async def _on_tick(self, msg: Msg) -> None:
        try:
            self._grown(int(msg.data))
        except ValueError:
            pass

    async def _on_direct(self, msg: Msg) -> None:
        headers = msg.headers
        if not headers:
            return
        seq_text = headers.get("Nats-Sequence")
        if seq_text is None:
            # End of a batch (204, with what the replica holds beyond it), nothing at that
            # sequence yet (404), or an error: the read is over.
            done = self._fetch_done
            if done is not None and not done.done() and msg.subject.endswith(self._fetch_id):
                try:
                    pending = int(headers.get("Nats-Num-Pending", "0")) if headers.get("Status") == "204" else 0
                except ValueError:
                    pending = 0
                done.set_result(pending)
            return
        try:
            seq = int(seq_text)
            ts_ms = _rfc3339_ms(headers["Nats-Time-Stamp"])
            subject = headers["Nats-Subject"]
            pending = int(headers.get("Nats-Num-Pending", "0"))
        except (KeyError, ValueError) as exc:
            log.warning("ignoring a direct get reply without valid stream headers: %r", exc)
            return
        if seq != self._next_seq:
            if seq > self._next_seq:
                # Never on a stream that denies deletes; read again from the next expected one.
                log.warning("stream gap: expected %d, got %d; reading again from %d", self._next_seq, seq, self._next_seq)
            return  # below: a late reply to an earlier read
        self._next_seq = seq + 1
        if seq + pending > self._stream_last:
            self._stream_last = seq + pending
        self._deliver(_Raw(seq, ts_ms, subject, msg.data))

    def _deliver(self, raw: _Raw) -> None:
        self._incoming.append(raw)
        if not self._flush_scheduled:
            # Under load the stream trickles (its leader stores message by message): hand
            # messages over in small batches, not one by one (each hand-over wakes two threads).
            self._flush_scheduled = True
            delay = self._last_flush + self.config.flush_interval_s - time.monotonic()
            if delay > 0:
                self._loop.call_later(delay, self._flush)
            else:
                self._loop.call_soon(self._flush)

    async def _follow_consumer(self, nc: NatsClient) -> None:
        """Consume from the next expected sequence until a reset is needed (gap, stall, reconnect)."""
        assert self._reset_evt is not None
        self._reset_evt.clear()
        start = self._next_seq
        resp = await self._api(
            nc,
            f"CONSUMER.CREATE.{self.stream}",
            {
                "stream_name": self.stream,
                "config": {
                    "deliver_policy": "by_start_sequence",
                    "opt_start_seq": start,
                    "ack_policy": "none",
                    "replay_policy": "instant",
                    "inactive_threshold": int(30e9),
                    "mem_storage": True,
                    "num_replicas": 1,
                },
            },
        )
        if "error" in resp:
            raise ClusterUnavailable(f"cannot create a consumer on {self.stream}: {resp['error'].get('description')}")
        consumer = resp["name"]
        inbox = nc.new_inbox()
        try:
            sub = await asyncio.wait_for(nc.subscribe(inbox, cb=self._on_delivery), self.config.api_timeout_s)
        except NATS_ERRORS as exc:
            raise ClusterUnavailable(f"cannot subscribe to the consumer's inbox: {type(exc).__name__}") from None
        self._consumer, self._inbox, self._credit = consumer, inbox, 0
        self._last_activity = time.monotonic()
        log.debug(
            "following %s from %d (consumer %s on %s; connected to %s)",
            self.stream,
            start,
            consumer,
            resp.get("cluster", {}).get("leader", "?"),
            (getattr(nc, "_server_info", None) or {}).get("server_name", "?"),
        )
        next_info = time.monotonic() + 5.0
        try:
            await self._pull_more()
            while nc.is_connected:
                try:
                    await asyncio.wait_for(self._reset_evt.wait(), self.config.heartbeat_s)
                except asyncio.TimeoutError:
                    pass
                if self._reset_evt.is_set():
                    return
                # Pull requests carry idle heartbeats: silence while credit is out means the
                # consumer (or its server) is gone; recreate it from the next expected sequence.
                if self._credit > 0 and time.monotonic() - self._last_activity > 3 * self.config.heartbeat_s + 1.0:
                    log.warning("consumer %s went silent; recreating it from %d", consumer, self._next_seq)
                    return
                await self._pull_more()
                if time.monotonic() > next_info:
                    next_info = time.monotonic() + 5.0
                    await self._refresh_info(nc)
                    if self._direct and time.monotonic() >= self._consumer_until:
                        return  # the stream allows direct gets (again): read it with them
        finally:
            self._consumer = ""
            try:
                await asyncio.wait_for(sub.unsubscribe(), self.config.api_timeout_s)
                if nc.is_connected:
                    await asyncio.wait_for(nc.publish(f"$JS.API.CONSUMER.DELETE.{self.stream}.{consumer}", b""), self.config.api_timeout_s)
            except NATS_ERRORS as exc:
                log.debug("dropping consumer %s: %s", consumer, exc)

    async def _refresh_info(self, nc: NatsClient) -> None:
        """Stream's last sequence (for the lag figure) and atomic-batch support."""
        try:
            info = await self._api(nc, f"STREAM.INFO.{self.stream}")
        except ClusterUnavailable as exc:
            log.debug("stream info: %s", exc)
            return
        log.debug("applied %d messages in %d transactions; stream at %d", self.applied_msgs, self.batches, self._stream_last)
        if "error" not in info:
            self._stream_last = max(self._stream_last, int(info.get("state", {}).get("last_seq", 0)))
            self._atomic = bool(info.get("config", {}).get("allow_atomic", False))
            self._direct = bool(info.get("config", {}).get("allow_direct", False))

    async def _on_ack(self, msg: Msg) -> None:
        fut = self._acks.pop(msg.subject[len(self._ack_prefix) + 1 :], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def _on_delivery(self, msg: Msg) -> None:
        self._last_activity = time.monotonic()
        if not msg.reply:
            self._on_status(msg)
            return
        try:
            d = st.parse_ack_reply(msg.reply)
        except DidnodeError as exc:
            log.warning("ignoring a delivery: %s", exc)
            return
        self._credit -= 1
        if d.stream_seq < self._next_seq:
            return  # delivered again after a consumer reset
        if d.stream_seq > self._next_seq:
            log.warning("stream gap: expected %d, got %d; recreating the consumer", self._next_seq, d.stream_seq)
            assert self._reset_evt is not None
            self._reset_evt.set()
            return
        self._next_seq += 1
        self._stream_last = max(self._stream_last, d.stream_seq + d.pending)
        self._deliver(_Raw(d.stream_seq, d.timestamp_ns // 1_000_000, msg.subject, msg.data))

    def _on_status(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status", "")
        if status == "100":
            return  # idle heartbeat
        desc = str(headers.get("Description", ""))
        pending = headers.get("Nats-Pending-Messages")
        if status in ("408", "404") or (status == "409" and pending is not None and "Deleted" not in desc and "Leadership" not in desc):
            # A pull request ended; what it did not deliver is no longer owed.
            self._credit -= int(pending) if pending else 0
            self._kick()
            return
        log.info("consumer status %s %s; recreating the consumer", status, desc)
        assert self._reset_evt is not None
        self._reset_evt.set()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        if self._incoming:
            batch, self._incoming = self._incoming, []
            self._raw_q.put(batch)
        self._kick()

    def _kick(self) -> None:
        if self._grew is not None and self._stream_last >= self._next_seq:
            self._grew.set()  # the writer made room: read on
        if not self._pull_scheduled and self._consumer:
            self._pull_scheduled = True
            self._spawn(self._pull_more())

    async def _pull_more(self) -> None:
        """Keep about two pull requests outstanding while the local buffer has room (backpressure)."""
        try:
            nc, consumer = self._nc, self._consumer
            if nc is None or not consumer or not nc.is_connected:
                return
            cfg = self.config
            buffered = (self._next_seq - 1) - self._applied_seq
            while self._credit < cfg.pull_batch and buffered + self._credit + cfg.pull_batch <= cfg.max_buffered:
                req = {"batch": cfg.pull_batch, "expires": int(cfg.pull_expires_s * 1e9), "idle_heartbeat": int(cfg.heartbeat_s * 1e9)}
                self._credit += cfg.pull_batch
                subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{consumer}"
                await asyncio.wait_for(nc.publish(subject, json.dumps(req).encode(), reply=self._inbox), cfg.api_timeout_s)
        except NATS_ERRORS as exc:
            log.debug("pull request: %s", exc)
        finally:
            self._pull_scheduled = False

    # ------------------------------------------------------------------
    # Follower (thread didnode-follow): decode, parse, verify
    # ------------------------------------------------------------------

    def _prep_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._raw_q.get()
            if first is None:
                break
            msgs = list(first)
            while len(msgs) < self.max_batch:
                try:
                    nxt = self._raw_q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                msgs.extend(nxt)
            try:
                self._apply_q.put(self._prepare(msgs))
            except Exception:  # never lose the pipeline thread; the writer's gap check resyncs the consumer
                log.exception("preparing stream messages %d..%d failed", msgs[0].seq, msgs[-1].seq)
        self._apply_q.put(None)

    def _prepare(self, msgs: list[_Raw]) -> _Prepared:
        ops: list[Operation | DidnodeError | None] = [None] * len(msgs)
        hashes: list[bytes] = [b""] * len(msgs)
        items: list[tuple[bytes, tuple[Proof, ...]]] = []
        where: list[int] = []
        for k, m in enumerate(msgs):
            try:
                payload, proofs = st.decode_body(m.data)
            except DidnodeError as exc:
                ops[k] = exc
                continue
            h = hashlib.sha256(payload).digest()
            hashes[k] = h
            mine = self._local_ops.pop(h, None)
            if mine is not None and mine.proofs == proofs:
                ops[k] = mine
                continue
            items.append((payload, proofs))
            where.append(k)
        if items:
            for k, op in zip(where, prepare_many(items, self.network, self.tables, self.verifier)):
                ops[k] = op
        out: list[Operation | DidnodeError] = []
        for m, op in zip(msgs, ops):
            assert op is not None
            if isinstance(op, Operation) and st.subject_for(self.network, op.did) != m.subject:
                op = WrongSubject(f"stream message {m.seq} on subject {m.subject} carries an operation of {op.did}", did=op.did)
            out.append(op)
        return _Prepared(msgs, out, hashes)

    # ------------------------------------------------------------------
    # Writer (thread didnode-writer): apply, record the position, wake waiters
    # ------------------------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._apply_q.get()
            if first is None:
                break
            preps: list[_Prepared] = []
            tasks: list[_TaskReq] = []
            count = 0
            item: _Prepared | _TaskReq | None = first
            # Group commit, adaptive. Every commit costs an fsync and rewrites every
            # LMDB page it touched (the trees touch ~20 random pages per operation, the
            # upper ones shared within a commit), and under load the stream trickles
            # in (its leader stores message by message). So after a big commit (load)
            # the next one waits until `commit_interval_s` has passed, gathering what
            # arrives meanwhile; after a small one (a quiet stream) it goes at once.
            busy = self._last_commit_size >= self.config.busy_commit
            not_before = self._last_commit + self.config.commit_interval_s if busy else 0.0
            while True:
                if isinstance(item, _Prepared):
                    preps.append(item)
                    count += len(item.msgs)
                elif isinstance(item, _TaskReq):
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
            self._commit(preps, tasks)
            self._last_commit = time.monotonic()
            self._last_commit_size = count

    def _commit(self, preps: list[_Prepared], tasks: list[_TaskReq]) -> None:
        msgs = [m for p in preps for m in p.msgs]
        ops = [o for p in preps for o in p.ops]
        hashes = [h for p in preps for h in p.hashes]
        # Only the next sequences may be applied: drop redeliveries, refuse gaps.
        keep = [i for i, m in enumerate(msgs) if m.seq > self._applied_seq]
        if len(keep) != len(msgs):
            msgs, ops, hashes = [msgs[i] for i in keep], [ops[i] for i in keep], [hashes[i] for i in keep]
        if msgs and any(m.seq != self._applied_seq + 1 + i for i, m in enumerate(msgs)):
            log.error("stream messages out of order after %d; resyncing the consumer", self._applied_seq)
            msgs, ops, hashes = [], [], []
            self._loop.call_soon_threadsafe(self._resync)

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
                if self._closed:
                    err = NodeUnavailable("the node is shutting down")
                    for r in tasks:
                        r.done(err)
                    return
                time.sleep(1.0)
        self.batches += 1
        self.applied_msgs += len(msgs)
        ready: list[tuple[_Waiter, tuple[bytes, Outcome], int]] = []
        if msgs:
            with self._lock:
                self._applied_seq = msgs[-1].seq
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
        if msgs and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._after_apply, ready)
            except RuntimeError:
                pass  # the loop closed while stopping; nobody waits any more

    def _resync(self) -> None:
        self._next_seq = self._applied_seq + 1
        self._incoming.clear()
        if self._reset_evt is not None:
            self._reset_evt.set()

    def _after_apply(self, ready: list[tuple[_Waiter, tuple[bytes, Outcome], int]]) -> None:
        for w, entry, seq in ready:
            if not w.future.done():
                w.future.set_result(self._matched(entry, w.op, seq))
        self._kick()

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

    def _waiter(self, seq: int, op: Operation | None) -> "asyncio.Future[Outcome | None]":
        fut: asyncio.Future[Outcome | None] = self._loop.create_future()
        with self._lock:
            if seq > self._applied_seq:
                self._waiters.setdefault(seq, []).append(_Waiter(op, fut))
                return fut
            entry = self._recent.get(seq)
        fut.set_result(self._matched(entry, op, seq) if entry is not None else self._from_store(op))
        return fut

    def _from_store(self, op: Operation | None) -> Outcome | None:
        """The outcome of an operation applied too long ago to be in memory (a late duplicate ack)."""
        if op is None:
            return None
        with self.tables.store.read() as txn:
            if not self.tables.has_operation(txn, op.hash):
                return DuplicateOperation(f"operation {op.hash.hex()} was ordered long ago and rejected when applied; resubmit to see why")
            e = entry_codec.decode(self.tables.entry(txn, self.tables.position_of(txn, op.hash)))
        return Accepted(e.position, e.time, op.hash, op.did, op.type, op.seq)

    def _forget_waiters(self, items: list[tuple[int, "asyncio.Future[Outcome | None]"]]) -> None:
        with self._lock:
            for seq, fut in items:
                ws = self._waiters.get(seq)
                if ws:
                    ws[:] = [w for w in ws if w.future is not fut]
                    if not ws:
                        del self._waiters[seq]

    async def _outcomes_at(self, items: list[tuple[Operation, int]], deadline: float) -> list[Outcome]:
        futs = [self._waiter(seq, op) for op, seq in items]
        pending = [f for f in futs if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - self._loop.time()))
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
                        f"(applied {self._applied_seq}); it will be applied: resolve it shortly",
                        stream_seq=seq,
                    )
                )
        self._forget_waiters(late)
        return out

    async def _wait_applied(self, seq: int, deadline: float) -> None:
        fut = self._waiter(seq, None)
        if not fut.done():
            try:
                await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - self._loop.time()))
            except asyncio.TimeoutError:
                self._forget_waiters([(seq, fut)])

    # ------------------------------------------------------------------
    # Publisher: groups, rounds, the dry run, publishing
    # ------------------------------------------------------------------

    def _start_group(self, ops: list[Operation | DidnodeError], done: Callback) -> None:
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
        self._spawn(self._run_group(group))

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
        deadline = self._loop.time() + self.config.submit_deadline_s
        try:
            while pending:
                ready = [i for i in pending if all(e.is_set() for e in group.deps[i])]
                if not ready:
                    blocker = next(e for i in pending for e in group.deps[i] if not e.is_set())
                    try:
                        await asyncio.wait_for(blocker.wait(), max(0.0, deadline - self._loop.time()))
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
                    self._local_ops.pop(op.hash, None)
            with self._lock:
                self._pending -= len(ops)
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
            checks = await self._loop.run_in_executor(self._dry_pool, self._dry_run, [ops[i] for i in todo])
            stale = [k for k, c in enumerate(checks) if _may_be_stale(c)]
            if cas_round == 0 and stale and await self._catch_up(deadline):
                # This node was behind the stream (a client that just wrote through another
                # node, say): judge those operations again on the state it has caught up to.
                again = await self._loop.run_in_executor(self._dry_pool, self._dry_run, [ops[todo[k]] for k in stale])
                for k, c in zip(stale, again):
                    checks[k] = c
            pub: list[tuple[int, int]] = []
            for i, c in zip(todo, checks):
                if isinstance(c, DuplicateOperation) and i in published:
                    out[i] = self._from_store(ops[i])  # our own earlier attempt was ordered after all
                elif isinstance(c, DidnodeError):
                    out[i] = c
                else:
                    pub.append((i, c))
            if not pub:
                break
            for i, _ in pub:
                self._local_ops[ops[i].hash] = ops[i]
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
                for (i, _), o in zip(acked, await self._outcomes_at([(ops[i], s) for i, s in acked], deadline)):
                    out[i] = o
            if not conflicts:
                break
            if cas_round == MAX_CAS_ROUNDS or self._loop.time() >= deadline:
                for i in conflicts:
                    out[i] = WriteConflict(f"{ops[i].did} kept changing under this {ops[i].type}; resubmit it on the new state", did=ops[i].did)
                break
            # Someone else wrote the DID: catch up to that write, then the dry run tells whether ours still holds.
            await self._wait_applied(need or self._stream_last, deadline)
            todo = conflicts
        return [o if o is not None else Internal("operation left without an outcome") for o in out]

    async def _catch_up(self, deadline: float) -> bool:
        """Wait (bounded) until this node applied everything the stream holds now; False if it was not behind."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        try:
            info = await self._api(nc, f"STREAM.INFO.{self.stream}")
        except ClusterUnavailable:
            return False
        last = int(info.get("state", {}).get("last_seq", 0)) if "error" not in info else 0
        self._stream_last = max(self._stream_last, last)
        if last <= self._applied_seq:
            return False
        await self._wait_applied(last, min(deadline, self._loop.time() + self.config.catch_up_s))
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

            for op in ops:
                try:
                    if tables.has_operation(txn, op.hash):
                        at = tables.position_of(txn, op.hash)
                        raise DuplicateOperation(f"operation {op.hash.hex()} is already on the ledger at position {at}", position=at)
                    apply(tables.state_if_exists(txn, op.did), op, ApplyContext(position, now, resolve))
                    out.append(self.cluster.subject_seq(txn, op.did))
                except DidnodeError as exc:
                    out.append(exc)
        return out

    async def _publish(self, items: list[tuple[Operation, int]], deadline: float) -> list[int | _WrongLast | DidnodeError]:
        """Publish (op, expected subject sequence) pairs; per item its stream sequence or why not."""
        res: list[int | _WrongLast | DidnodeError | None] = [None] * len(items)
        if len(items) > 1 and self._atomic:
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
        slots = self._batch_slots
        assert slots is not None
        async with slots:
            while True:
                nc = self._nc
                timeout = min(self.config.batch_timeout_s, deadline - self._loop.time())
                if nc is None or not nc.is_connected or timeout <= 0 or not self._ack_prefix:
                    return None
                batch_id = os.urandom(12).hex()
                ack: asyncio.Future[Msg] = self._loop.create_future()
                self._acks[batch_id] = ack
                reply = f"{self._ack_prefix}.{batch_id}"

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
                    await asyncio.sleep(0.2)  # no responders: no stream leader right now
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
        self._announce(seq)
        # An atomic batch is stored contiguously, ending at the acknowledged sequence
        # (each waiter still checks the operation hash at its sequence).
        return [seq - count + 1 + j for j in range(count)]

    async def _await_ack(self, ack: "asyncio.Future[Msg]", deadline: float) -> None:
        """Wait for a batch acknowledgement while the stream makes progress (see :meth:`_publish_atomic`)."""
        cfg = self.config
        give_up = min(deadline, self._loop.time() + max(cfg.batch_max_wait_s, cfg.batch_timeout_s))
        while not ack.done():
            mark = self._next_seq
            wait = min(cfg.batch_timeout_s, give_up - self._loop.time())
            if wait <= 0:
                return
            await asyncio.wait([ack], timeout=wait)
            if self._next_seq == mark:
                return  # nothing stored meanwhile: the stream (or this batch) is stuck

    async def _publish_one(self, op: Operation, expected: int, deadline: float) -> int | _WrongLast | DidnodeError:
        subject, body, headers = self._message(op, expected)
        last_error = "no acknowledgement"
        while True:
            nc = self._nc
            if nc is None or not nc.is_connected:
                return ClusterUnavailable(f"NATS became unreachable while ordering {op.hash.hex()[:16]}…; resubmit it (idempotent)")
            remaining = deadline - self._loop.time()
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
                self._announce(seq)
                return seq
            code, desc = err.get("err_code"), str(err.get("description", ""))
            if code == ERR_WRONG_LAST_SEQ:
                m = _TRAILING_INT.search(desc)
                return _WrongLast(int(m.group(1)) if m else 0)
            if code == ERR_MSG_TOO_LARGE:
                return TooLarge(f"the stream refuses a {len(body)}-byte message: {desc}", field="operation")
            last_error = desc or str(code)
            await asyncio.sleep(0.2)

    async def _genesis(self, payload: bytes, proofs: tuple[Proof, ...], did: str) -> None:
        """Publish the node's own create until the ledger has its DID."""
        while True:
            with self.tables.store.read() as txn:
                if self.tables.state_if_exists(txn, did) is not None:
                    return
            if not self._writable:
                await self._sleep_or_wake(0.5)
                continue
            ops = await self._loop.run_in_executor(self._dry_pool, prepare_many, [(payload, proofs)], self.network, self.tables)
            fut: asyncio.Future[list[Outcome]] = self._loop.create_future()
            with self._lock:
                self._pending += 1
            self._start_group(ops, lambda outcomes: _settle(fut, outcomes))
            outcome = (await fut)[0]
            if isinstance(outcome, (Accepted, DidAlreadyExists, DuplicateOperation)):
                log.info("node DID %s is on the ledger", did)
                return
            log.warning("publishing the node's DID %s: %s; retrying", did, outcome)
            await asyncio.sleep(1.0)


def _may_be_stale(check: DidnodeError | int) -> bool:
    """A dry-run rejection that a node lagging behind the stream could get wrong (state-dependent)."""
    return isinstance(check, (NotFound, Conflict, Unauthorized)) and not isinstance(
        check, (DuplicateOperation, DidAlreadyExists, InvalidSignature)
    )


def _settle(fut: "asyncio.Future[Any]", result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


_EPOCH_CACHE: dict[str, int] = {}


def _rfc3339_ms(text: str) -> int:
    """Milliseconds since the epoch of a NATS RFC 3339 timestamp (``2026-11-25T04:17:58.8004429Z``),
    rounded down: the same as the stream's nanosecond timestamp // 1,000,000."""
    base = text[:19]
    secs = _EPOCH_CACHE.get(base)
    if secs is None:
        if len(_EPOCH_CACHE) > 64:
            _EPOCH_CACHE.clear()
        secs = int(datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp())
        _EPOCH_CACHE[base] = secs
    rest = text[19:]
    if rest == "Z":
        return secs * 1000
    if rest[:1] == "." and rest[-1:] == "Z" and rest[1:-1].isdigit():
        return secs * 1000 + int((rest[1:-1] + "00")[:3])
    # Not UTC: let datetime handle the offset (microseconds at most, enough for ms).
    frac, tz = "", rest
    if rest[:1] == ".":
        digits = len(rest) - len(rest[1:].lstrip("0123456789"))
        frac, tz = rest[1:digits], rest[digits:]
    when = datetime.datetime.fromisoformat(base + ("." + (frac + "000000")[:6] if frac else "") + tz.replace("Z", "+00:00"))
    return int(when.timestamp()) * 1000 + (int((frac + "000")[:3]) if frac else 0)
