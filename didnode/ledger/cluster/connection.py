"""The link to NATS: connecting, JetStream API requests, creating and checking the stream.

:class:`Connection` owns the NATS client (``nc``) and says whether this node
can order writes (``writable``, with the reason when it cannot; listeners hear
every change). A store that never followed a stream creates it when it is
absent; a store bound to a stream (name and creation time, in LMDB) never
does: a missing stream is :class:`~didnode.errors.StreamMissing`, one of
another creation time (deleted and recreated) or that ends before what the
store applied is :class:`~didnode.errors.StreamMismatch`, and the node refuses
writes with that error (``refusal``) until the stream it follows is back. It
learns what the stream allows (atomic batches, direct gets). Runs on the NATS
loop only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from didnode.errors import ClusterUnavailable, StreamMismatch, StreamMissing
from didnode.ledger import stream as st
from didnode.ledger.cluster.shared import Shared
from didnode.ledger.orderer import Task

log = logging.getLogger("didnode.cluster")

# Everything nats-py raises for a failed network operation.
NATS_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, asyncio.TimeoutError, OSError)
ERR_STREAM_NOT_FOUND = 10059
ERR_STREAM_NAME_IN_USE = 10058


def _without_credentials(url: str) -> str:
    """``url`` without the ``user:password@`` part (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2] if sep else url.rpartition("@")[2]


class Connection:
    """The NATS connection and the stream as this node sees it.

    ``in_writer(task)`` runs a task in the writer's next transaction (binding
    the store to the stream is written there, as every other write).
    """

    def __init__(self, shared: Shared, in_writer: Callable[[Task], Awaitable[Any]]) -> None:
        self.shared = shared
        self.config = shared.config
        self.stream = shared.stream
        self.network = shared.network
        self.tables = shared.tables
        self.cluster = shared.cluster
        self.in_writer = in_writer
        self.nc: NatsClient | None = None
        # Written under shared.lock: submit() reads them on any thread.
        self.writable = False
        self.why = "not connected to NATS yet"
        # Set while the node refuses the stream (StreamMissing, StreamMismatch):
        # submissions fail with that error, not with a plain ClusterUnavailable.
        self.refusal: ClusterUnavailable | StreamMismatch | None = None
        self._check_requested = 0.0
        self._short_since = 0.0  # since when the stream has looked shorter than what this node applied
        self.listeners: list[Callable[[bool], None]] = []
        # What the stream allows, as last seen (STREAM.INFO).
        self.atomic = False
        self.direct = False  # the stream allows direct gets: read it with them, not with a consumer
        self.wake_evt: asyncio.Event | None = None

    def set_state(self, writable: bool, why: str, refusal: ClusterUnavailable | StreamMismatch | None = None) -> None:
        """Accept writes or not (``why``); ``refusal``: the stream itself is refused (missing, replaced)."""
        changed = writable != self.writable
        with self.shared.lock:
            self.writable = writable
            self.why = why
            self.refusal = None if writable else refusal
        if changed:
            if writable:
                log.info("cluster stream %s reachable: accepting writes", self.stream)
            else:
                log.warning("not accepting writes: %s", why)
            for fn in self.listeners:
                try:
                    fn(writable)
                except Exception:  # a listener's bug must not stop the cluster loop
                    log.exception("writability listener failed")

    def request_check(self, force: bool = False) -> None:
        """Something suggests the stream is gone or another one (a stream advisory, no responders,
        an acknowledgement below what this node applied): stop following and check it now.

        Hints that a leader election also gives (no responders) ask at most once per
        ``stream_check_s``; ``force`` (an advisory, a definite sign) always does.
        """
        now = time.monotonic()
        if not force and now - self._check_requested < self.config.stream_check_s:
            return
        self._check_requested = now
        if self.shared.reset_evt is not None:
            self.shared.reset_evt.set()
        if self.wake_evt is not None:
            self.wake_evt.set()

    def refused(self) -> ClusterUnavailable | StreamMismatch | None:
        """A fresh copy of the error the node refuses writes with because of the stream itself, if any."""
        r = self.refusal
        if r is None:
            return None
        return type(r)(f"this node cannot order writes: {r.message}; reads still work", **r.details)

    async def sleep_or_wake(self, seconds: float) -> None:
        assert self.wake_evt is not None
        try:
            await asyncio.wait_for(self.wake_evt.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self.wake_evt.clear()

    async def connect(self) -> NatsClient:
        """Connect, retrying for ever (nats-py with ``max_reconnect_attempts=-1`` never gives up)."""

        told: set[str] = set()

        async def on_error(exc: Exception) -> None:
            text = str(exc) or type(exc).__name__
            if not self.writable:
                self.why = f"cannot reach NATS ({', '.join(_without_credentials(u) for u in self.config.servers)}): {text}"
            if ("authorization" in text.lower() or "permissions" in text.lower()) and text not in told and len(told) < 100:
                # Wrong credentials, or a user without a permission the node needs (docs/cluster.md):
                # an operator's problem, said once per distinct message.
                told.add(text)
                log.warning("NATS: %s", text)
            else:
                log.debug("NATS: %r", exc)

        async def on_disconnected() -> None:
            self.set_state(False, "disconnected from NATS; reconnecting")
            if self.shared.reset_evt is not None:
                self.shared.reset_evt.set()

        async def on_reconnected() -> None:
            log.info("reconnected to NATS")
            if self.wake_evt is not None:
                self.wake_evt.set()

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
            **self.config.auth.connect_options(),
        )

    async def api(self, nc: NatsClient, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
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

    async def ensure_stream(self, nc: NatsClient) -> None:
        """Create the stream if absent and this store never followed one; check it is the one this store follows.

        Raises :class:`StreamMissing` (the store's stream is gone: it is never
        recreated here, that would start another history under the same name),
        :class:`StreamMismatch` (another stream), :class:`ClusterUnavailable`.
        """
        info = await self.api(nc, f"STREAM.INFO.{self.stream}")
        err = info.get("error")
        if err and err.get("err_code") == ERR_STREAM_NOT_FOUND:
            with self.tables.store.read() as txn:
                bound = self.cluster.binding(txn)
            if bound is not None:
                raise self._missing(bound)
            await self._create_stream(nc)
            info = await self.api(nc, f"STREAM.INFO.{self.stream}")
            err = info.get("error")
        if err:
            raise ClusterUnavailable(f"stream {self.stream}: {err.get('description', err)}")
        cfg = self._check(info)
        with self.tables.store.read() as txn:
            bound = self.cluster.binding(txn)
        if bound is None:
            created = str(info.get("created", ""))
            await self.in_writer(lambda txn: self.cluster.bind(txn, self.stream, created))
        self.atomic = bool(cfg.get("allow_atomic", False))
        self.direct = bool(cfg.get("allow_direct", False))

    def _missing(self, bound: tuple[str, str]) -> StreamMissing:
        return StreamMissing(
            f"stream {self.stream} (created {bound[1] or '?'}), which this store follows, is not on the NATS cluster: it was deleted. "
            "The node does not recreate it (that would be another history) and refuses writes until an operator acts "
            "(docs/cluster.md, The stream disappears)",
            stream=self.stream,
        )

    def _check(self, info: dict[str, Any]) -> dict[str, Any]:
        """Refuse a STREAM.INFO answer that is not the stream this store follows; its config."""
        cfg, state = info.get("config", {}), info.get("state", {})
        if st.subject_filter(self.network) not in cfg.get("subjects", []):
            raise StreamMismatch(f"stream {self.stream} does not carry subjects {st.subject_filter(self.network)}; it is not this network's ledger")
        created = str(info.get("created", ""))
        with self.tables.store.read() as txn:
            bound = self.cluster.binding(txn)
        if bound is not None and (bound[0] != self.stream or (bound[1] and created and bound[1] != created)):
            raise StreamMismatch(
                f"this store follows stream {bound[0]} created {bound[1]}, not stream {self.stream} created {created} "
                "(a stream deleted and created again under its name is another history); "
                "use another --data directory (a node replays the stream from the start; docs/cluster.md, The stream disappears)",
                stream=self.stream,
            )
        last = int(state.get("last_seq", 0))
        if self.shared.applied_seq > last:
            # Under load an answer can describe an older state of the stream (seen in the
            # tests: 152 while 246 were applied): only a stream that stays short is refused.
            # (A recreated one has another creation time, refused above at once.)
            now = time.monotonic()
            self._short_since = self._short_since or now
            if now - self._short_since < self.config.short_stream_grace_s:
                log.info("stream %s reported ending at %d, before %d applied here; checking again", self.stream, last, self.shared.applied_seq)
                return cfg  # type: ignore[no-any-return]
            raise StreamMismatch(
                f"this store applied stream {self.stream} up to {self.shared.applied_seq} but the stream ends at {last}: "
                "the stream was recreated or lost messages",
                stream=self.stream,
            )
        self._short_since = 0.0
        self.shared.stream_last = max(self.shared.stream_last, last)
        return cfg  # type: ignore[no-any-return]

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
                resp = await self.api(nc, f"STREAM.CREATE.{self.stream}", cfg)
                err = resp.get("error")
                if err is None:
                    log.info("created stream %s (replicas %d, atomic batches %s)", self.stream, replicas, atomic)
                    return
                if err.get("err_code") == ERR_STREAM_NAME_IN_USE:
                    return  # another node created it first; INFO tells what it is
                last_error = str(err.get("description", err))
                log.debug("creating stream %s with replicas %d, atomic %s: %s", self.stream, replicas, atomic, last_error)
        raise ClusterUnavailable(f"cannot create stream {self.stream}: {last_error}")

    async def refresh_info(self, nc: NatsClient) -> None:
        """Check the stream is still the one this store follows; its last sequence (for the lag
        figure), atomic-batch and direct-get support. Raises :class:`StreamMissing`,
        :class:`StreamMismatch`; a stream that does not answer is left for the next time."""
        try:
            info = await self.api(nc, f"STREAM.INFO.{self.stream}")
        except ClusterUnavailable as exc:
            log.debug("stream info: %s", exc)
            return
        log.debug("applied %d messages in %d transactions; stream at %d", self.shared.applied_msgs, self.shared.batches, self.shared.stream_last)
        err = info.get("error")
        if err is None:
            cfg = self._check(info)
            self.atomic = bool(cfg.get("allow_atomic", False))
            self.direct = bool(cfg.get("allow_direct", False))
        elif err.get("err_code") == ERR_STREAM_NOT_FOUND:
            with self.tables.store.read() as txn:
                bound = self.cluster.binding(txn)
            raise self._missing(bound or (self.stream, ""))
