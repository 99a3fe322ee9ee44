"""The cluster orderer: :class:`JetStreamOrderer` owns the three stages and the NATS loop.

It builds the :class:`~didnode.ledger.cluster.connection.Connection`, the
:class:`~didnode.ledger.cluster.follower.Follower`, the
:class:`~didnode.ledger.cluster.writer.Writer` and the
:class:`~didnode.ledger.cluster.publisher.Publisher` on one
:class:`~didnode.ledger.cluster.shared.Shared` state, runs their threads, and
supervises the connection: connect, check the stream, follow it, again after
every failure. The package docstring (``didnode.ledger.cluster``) tells the
whole design.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from typing import Any, Callable, Sequence

from didnode.core.operations import Operation, Proof
from didnode.errors import ClusterUnavailable, DidnodeError, NodeUnavailable, Overloaded, StreamMismatch, StreamMissing
from didnode.ledger.batch import BatchHook
from didnode.ledger.cluster.config import ClusterConfig, ClusterStatus
from didnode.ledger.cluster.connection import NATS_ERRORS, Connection
from didnode.ledger.cluster.follower import Follower
from didnode.ledger.cluster.genesis import GenesisItem, ensure_genesis
from didnode.ledger.cluster.publisher import Publisher
from didnode.ledger.cluster.shared import Prepared, Shared
from didnode.ledger.cluster.writer import Writer
from didnode.ledger.orderer import Callback, Task, TaskRequest, settle
from didnode.ledger.verifier import InlineVerifier, Verifier
from didnode.store.ledger_tables import LedgerTables

log = logging.getLogger("didnode.cluster")


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
        self.shared = Shared(tables, config, max_batch)
        self.tables = tables
        self.cluster = self.shared.cluster
        self.config = config
        self.network = config.network
        self.stream = config.stream_name
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._loop = self.shared.loop
        self._stop_evt: asyncio.Event | None = None
        # -- pipeline queues and threads
        self._apply_q: queue.SimpleQueue[Prepared | TaskRequest | None] = queue.SimpleQueue()
        self._dry_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="didnode-dryrun")
        self._threads: list[threading.Thread] = []
        # -- the stages, each knowing only those before it
        self.conn = Connection(self.shared, self._in_writer)
        self.follower = Follower(self.shared, self.conn, verifier if verifier is not None else InlineVerifier(), self._apply_q)
        self.writer = Writer(self.shared, self.follower, hooks, self._apply_q)
        self.publisher = Publisher(self.shared, self.conn, self.follower, self.writer, self._dry_pool)

    @property
    def batches(self) -> int:
        """LMDB transactions of the follower (for logs and benchmarks)."""
        return self.shared.batches

    @property
    def applied_msgs(self) -> int:
        return self.shared.applied_msgs

    @property
    def pending(self) -> int:
        """Operations submitted through this node and not yet answered (the queue depth)."""
        return self.shared.pending

    # ------------------------------------------------------------------
    # Public interface (any thread)
    # ------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer, the follower and the NATS connection (which retries until it succeeds)."""
        for target, name in ((self.writer.write_loop, "didnode-writer"), (self.follower.prep_loop, "didnode-follow"), (self._run_loop, "didnode-nats")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, ops: Sequence[Operation | DidnodeError], done: Callback) -> None:
        """Publish ``ops`` (one group, in order); ``done(outcomes)`` runs once this node applied them.

        Raises :class:`ClusterUnavailable` at once when NATS is unreachable
        (fail fast; reads keep working), :class:`StreamMissing` or
        :class:`StreamMismatch` when the stream this store follows was deleted
        or replaced, :class:`Overloaded` beyond
        ``max_pending`` waiting operations, :class:`NodeUnavailable` when stopping.
        """
        with self.shared.lock:
            if self.shared.closed:
                raise NodeUnavailable("the node is shutting down")
            if not self.conn.writable:
                refusal = self.conn.refused()
                if refusal is not None:
                    raise refusal
                raise ClusterUnavailable(f"this node cannot order writes now: {self.conn.why}; reads still work", stream=self.stream)
            if self.shared.pending + len(ops) > self.max_pending:
                raise Overloaded(f"{self.shared.pending} operations are waiting to be ordered; retry shortly")
            self.shared.pending += len(ops)
        try:
            self._loop.call_soon_threadsafe(self.publisher.start_group, list(ops), done)
        except RuntimeError:  # the loop closed: stop() ran since the check above
            with self.shared.lock:
                self.shared.pending -= len(ops)
            raise NodeUnavailable("the node is shutting down") from None

    def submit_task(self, task: Task, done: Callable[[Any], None]) -> None:
        """Run ``task(txn)`` in the writer's next transaction (see ``LocalOrderer.submit_task``)."""
        with self.shared.lock:
            if self.shared.closed:
                raise NodeUnavailable("the node is shutting down")
        self._apply_q.put(TaskRequest(task, done))

    def publish_genesis(self, payload: bytes, proofs: Sequence[Proof], did: str) -> None:
        """Make sure the node's own DID create is on the ledger: publish it (in the
        background, retrying while NATS is away) unless the ledger already has ``did``."""
        self._loop.call_soon_threadsafe(self.shared.spawn, self.publisher.genesis(payload, tuple(proofs), did))

    def ensure_genesis(self, items: Sequence[GenesisItem], timeout_s: float) -> int:
        """Make the stream begin with a governed network's genesis ``items`` and wait until this node applied them.

        Blocks the calling thread (node start, after :meth:`start`); returns
        how many messages this node published (0 when another node, or an
        earlier start, did). Raises :class:`~didnode.errors.GenesisConflict`
        when the stream begins otherwise (see :mod:`.genesis`),
        :class:`ClusterUnavailable` after ``timeout_s``.
        """
        fut = asyncio.run_coroutine_threadsafe(self._ensure_genesis(items, timeout_s), self._loop)
        try:
            return fut.result(timeout_s + 5)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise ClusterUnavailable(f"the genesis was not on stream {self.stream} within {timeout_s:.0f}s") from None

    async def _ensure_genesis(self, items: Sequence[GenesisItem], timeout_s: float) -> int:
        deadline = self._loop.time() + timeout_s
        published = await ensure_genesis(self.shared, self.conn, items, deadline)
        while self.shared.applied_seq < len(items):  # the governance line at start reports what applies
            if self._loop.time() > deadline:
                raise ClusterUnavailable(f"the genesis is on stream {self.stream} but this node did not apply it within {timeout_s:.0f}s")
            await asyncio.sleep(0.05)
        return published

    @property
    def own_create_refused(self) -> DidnodeError | None:
        """The governance's rejection of this node's own DID create (NOT_A_REGISTRAR, ...), or None."""
        return self.shared.own_create_refused

    def add_listener(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(writable)`` now and on every change (from the NATS thread)."""
        self.conn.listeners.append(fn)
        fn(self.conn.writable)

    def status(self) -> ClusterStatus:
        applied = self.shared.applied_seq
        last = max(self.shared.stream_last, applied)
        return ClusterStatus(self.stream, self.conn.writable, applied, last, last - applied, "" if self.conn.writable else self.conn.why)

    def stop(self) -> None:
        """Stop publishing and following, finish the batch being applied, stop the threads."""
        with self.shared.lock:
            if self.shared.closed:
                return
            self.shared.closed = True
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(timeout=15)
            except (concurrent.futures.TimeoutError, RuntimeError) as exc:
                log.warning("NATS side did not stop cleanly: %s", exc)
        self.follower.raw_q.put(None)
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


    async def _main(self) -> None:
        self._stop_evt = asyncio.Event()
        self.conn.wake_evt = asyncio.Event()
        self.shared.reset_evt = asyncio.Event()
        self.publisher.batch_slots = asyncio.Semaphore(max(1, self.config.max_inflight_batches))
        self.follower.grew = asyncio.Event()
        self.shared.spawn(self._supervise())
        await self._stop_evt.wait()

    async def _shutdown(self) -> None:
        self.conn.set_state(False, "the node is shutting down")
        for task in list(self.shared.tasks):
            task.cancel()
        if self.shared.tasks:
            await asyncio.wait(list(self.shared.tasks), timeout=5)
        nc = self.conn.nc
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), 5)
            except NATS_ERRORS as exc:
                log.debug("closing the NATS connection: %s", exc)
        assert self._stop_evt is not None
        self._stop_evt.set()

    async def _supervise(self) -> None:
        """Connect; then keep the stream checked and the follower running, for the node's life."""
        nc = await self.conn.connect()
        # nats-py subscribes again by itself after a reconnect.
        prefix = nc.new_inbox()
        await nc.subscribe(prefix + ".*", cb=self.publisher.on_ack)
        self.publisher.ack_prefix = prefix
        self.conn.nc = nc
        url = nc.connected_url
        log.info("connected to NATS at %s:%s", url.hostname if url else "?", url.port if url else "?")  # never the credentials
        # The servers announce a deletion or creation of the stream at once (also an
        # administrator's); the periodic checks of the follower are the backstop.
        advisories = "$JS.EVENT.ADVISORY.STREAM.{}." + self.stream
        for event in ("DELETED", "CREATED", "UPDATED"):
            await nc.subscribe(advisories.format(event), cb=self._on_stream_advisory)
        checked = False  # the stream was found and matched this store at least once
        refused = ""
        while True:
            if not nc.is_connected:
                self.conn.set_state(False, "disconnected from NATS; reconnecting")
                await self.conn.sleep_or_wake(0.5)
                continue
            try:
                await self.conn.ensure_stream(nc)
                checked = True
                refused = ""
            except (StreamMissing, StreamMismatch) as exc:
                refused = self._refuse(exc, refused)
                await self.conn.sleep_or_wake(2.0)
                continue
            except ClusterUnavailable as exc:
                # Connected, but the stream does not answer (a leader election, most
                # likely): once the stream was seen, that is a stall, not unavailability;
                # in-flight publishes retry through it. Before, the node cannot write.
                if not checked:
                    self.conn.set_state(False, str(exc))
                    await self.conn.sleep_or_wake(1.0)
                    continue
                log.info("stream %s does not answer (%s); following again", self.stream, exc)
            self.conn.set_state(True, "")
            try:
                await self.follower.follow(nc)
            except (StreamMissing, StreamMismatch) as exc:
                refused = self._refuse(exc, refused)
            except ClusterUnavailable as exc:
                log.warning("follower: %s; restarting it", exc)
                await self.conn.sleep_or_wake(0.5)

    def _refuse(self, exc: StreamMissing | StreamMismatch, told: str) -> str:
        """Stop accepting writes because of the stream itself; fail those waiting for their
        operations to be applied (the stream that acknowledged them is gone). Logs each new reason once."""
        why = f"{exc.reason}: {exc}"
        was = self.conn.writable
        self.conn.set_state(False, why, exc)  # logs it when the node was writable until now
        self.writer.fail_waiters(exc)
        if not was and why != told:
            log.error("not accepting writes: %s", why)
        return why

    async def _on_stream_advisory(self, msg: Any) -> None:
        event = msg.subject.split(".")[-2].lower()
        (log.warning if event == "deleted" else log.info)("stream %s: %s (advisory)", self.stream, event)
        self.conn.request_check(force=True)

    async def _in_writer(self, task: Task) -> Any:
        fut: asyncio.Future[Any] = self._loop.create_future()

        def done(result: Any) -> None:
            self._loop.call_soon_threadsafe(settle, fut, result)

        self.submit_task(task, done)
        result = await fut
        if isinstance(result, DidnodeError):
            raise result
        return result
