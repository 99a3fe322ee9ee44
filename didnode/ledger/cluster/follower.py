"""The follower: reads the stream in order and hands parsed, verified messages to the writer.

On the NATS loop, batched direct gets (answered by the nearest replica, no
consumer on the servers) read the stream in order from the last applied
sequence + 1, when the stream grew (acknowledgements, the other nodes' ticks)
and at least every ``poll_interval_s``; on a stream without ``allow_direct``
an ephemeral pull consumer (no acks, in memory) does. The loop checks that
sequences are dense and reads again (or recreates the consumer) on any gap,
stall or reconnect. No acknowledgement goes back: the position is the applied
stream sequence recorded in LMDB. The follow thread (``didnode-follow``)
decodes and parses messages and verifies their signatures in bulk (the node's
verifier process), reusing the already verified operation when the message is
one this node published.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
import queue
import time

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from didnode.core.operations import Operation, Proof
from didnode.errors import ClusterUnavailable, DidnodeError, WrongSubject
from didnode.ledger import stream as st
from didnode.ledger.cluster.connection import NATS_ERRORS, Connection
from didnode.ledger.cluster.shared import Prepared, Raw, Shared
from didnode.ledger.orderer import TaskRequest
from didnode.ledger.prepare import prepare_many
from didnode.ledger.verifier import Verifier

log = logging.getLogger("didnode.cluster")


class Follower:
    """Reads the stream (NATS loop) and prepares what it read (thread ``didnode-follow``).

    Prepared messages go to ``apply_q``, the writer's queue.
    """

    def __init__(
        self,
        shared: Shared,
        conn: Connection,
        verifier: Verifier,
        apply_q: "queue.SimpleQueue[Prepared | TaskRequest | None]",
    ) -> None:
        self.shared = shared
        self.conn = conn
        self.config = shared.config
        self.stream = shared.stream
        self.network = shared.network
        self.tables = shared.tables
        self.verifier = verifier
        self.max_batch = shared.max_batch
        self.loop = shared.loop
        self.grew: asyncio.Event | None = None  # the stream grew, or the buffer has room again
        self._fetch_id = ""
        self._fetch_done: asyncio.Future[int] | None = None
        self._no_responders = False  # the last direct get found no replica to answer it
        self._consumer_until = 0.0  # follow with a consumer until then (the nearest replica lags)
        self.next_seq = shared.applied_seq + 1
        self._consumer = ""
        self._inbox = ""
        self._credit = 0
        self._last_activity = 0.0
        self._pull_scheduled = False
        self._incoming: list[Raw] = []
        self._flush_scheduled = False
        self._last_flush = 0.0
        # -- pipeline queues: NATS loop -> follow thread -> writer
        self.raw_q: queue.SimpleQueue[list[Raw] | None] = queue.SimpleQueue()
        self._apply_q = apply_q

    # ------------------------------------------------------------------
    # NATS loop side: direct gets or an ephemeral pull consumer, checked for gaps
    # ------------------------------------------------------------------

    async def follow(self, nc: NatsClient) -> None:
        """Read the stream from the next expected sequence until a reset is needed."""
        if self.conn.direct and time.monotonic() >= self._consumer_until:
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
        assert self.shared.reset_evt is not None and self.grew is not None
        self.shared.reset_evt.clear()
        cfg = self.config
        prefix = nc.new_inbox()
        try:
            sub = await asyncio.wait_for(nc.subscribe(prefix + ".*", cb=self._on_direct), cfg.api_timeout_s)
            ticks = await asyncio.wait_for(nc.subscribe(self._tick_subject, cb=self._on_tick), cfg.api_timeout_s)
        except NATS_ERRORS as exc:
            raise ClusterUnavailable(f"cannot subscribe to direct get replies: {type(exc).__name__}") from None
        log.debug("following %s from %d with direct gets (connected to %s)", self.stream, self.next_seq, (getattr(nc, "_server_info", None) or {}).get("server_name", "?"))
        next_info = time.monotonic() + self.config.stream_check_s
        more = True
        progress_at, progress_seq = time.monotonic(), self.next_seq
        try:
            while nc.is_connected and not self.shared.reset_evt.is_set():
                room = cfg.max_buffered - ((self.next_seq - 1) - self.shared.applied_seq)
                if self.next_seq != progress_seq or self.shared.stream_last < self.next_seq or room < cfg.max_buffered // 2:
                    progress_at, progress_seq = time.monotonic(), self.next_seq
                elif time.monotonic() - progress_at > cfg.catch_up_s:
                    # The stream holds more than the replica answering this node's direct gets
                    # (it lags, or is catching up): follow the stream with a consumer a while.
                    log.warning("direct gets stuck at %d (stream at %d); following with a consumer for a minute", self.next_seq, self.shared.stream_last)
                    self._consumer_until = time.monotonic() + 60.0
                    return
                if time.monotonic() > next_info:
                    next_info = time.monotonic() + self.config.stream_check_s
                    await self.conn.refresh_info(nc)  # raises when the stream is gone or replaced
                    if not self.conn.direct:
                        return  # the stream no longer allows direct gets: follow with a consumer
                if room < min(cfg.pull_batch, cfg.max_buffered // 2) or not more:
                    # Wait until the stream grew, the writer made room, or the poll interval passed.
                    self.grew.clear()
                    if room >= min(cfg.pull_batch, cfg.max_buffered // 2) and self.shared.stream_last >= self.next_seq:
                        self.grew.set()
                    try:
                        await asyncio.wait_for(self.grew.wait(), cfg.poll_interval_s)
                    except asyncio.TimeoutError:
                        pass
                    more = True
                    continue
                # Pace reads under load: each one then carries more messages.
                pause = self._last_flush + cfg.flush_interval_s - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                fetch_id = os.urandom(6).hex()
                done: asyncio.Future[int] = self.loop.create_future()
                self._fetch_id, self._fetch_done = fetch_id, done
                start = self.next_seq
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
                if self._no_responders:
                    # Nobody serves the stream's direct gets: it may be gone (deleted).
                    self._no_responders = False
                    self.conn.request_check()
                if self.next_seq == start:
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
        if seq > self.shared.stream_last:
            self.shared.stream_last = seq
        if seq >= self.next_seq and self.grew is not None:
            self.grew.set()

    def announce(self, seq: int) -> None:
        """Tell the other nodes that the stream holds ``seq`` (best effort: they also poll)."""
        self._grown(seq)
        nc = self.conn.nc
        if nc is not None and nc.is_connected and self.conn.direct:
            self.shared.spawn(self._send_tick(nc, seq))

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
            # sequence yet (404), no responders (503), or an error: the read is over.
            done = self._fetch_done
            if done is not None and not done.done() and msg.subject.endswith(self._fetch_id):
                self._no_responders = headers.get("Status") == "503"
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
        if seq != self.next_seq:
            if seq > self.next_seq:
                # Never on a stream that denies deletes; read again from the next expected one.
                log.warning("stream gap: expected %d, got %d; reading again from %d", self.next_seq, seq, self.next_seq)
            return  # below: a late reply to an earlier read
        self.next_seq = seq + 1
        if seq + pending > self.shared.stream_last:
            self.shared.stream_last = seq + pending
        self._deliver(Raw(seq, ts_ms, subject, msg.data))

    def _deliver(self, raw: Raw) -> None:
        self._incoming.append(raw)
        if not self._flush_scheduled:
            # Under load the stream trickles (its leader stores message by message): hand
            # messages over in small batches, not one by one (each hand-over wakes two threads).
            self._flush_scheduled = True
            delay = self._last_flush + self.config.flush_interval_s - time.monotonic()
            if delay > 0:
                self.loop.call_later(delay, self._flush)
            else:
                self.loop.call_soon(self._flush)

    async def _follow_consumer(self, nc: NatsClient) -> None:
        """Consume from the next expected sequence until a reset is needed (gap, stall, reconnect)."""
        assert self.shared.reset_evt is not None
        self.shared.reset_evt.clear()
        start = self.next_seq
        resp = await self.conn.api(
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
        next_info = time.monotonic() + self.config.stream_check_s
        try:
            await self._pull_more()
            while nc.is_connected:
                try:
                    await asyncio.wait_for(self.shared.reset_evt.wait(), self.config.heartbeat_s)
                except asyncio.TimeoutError:
                    pass
                if self.shared.reset_evt.is_set():
                    return
                # Pull requests carry idle heartbeats: silence while credit is out means the
                # consumer (or its server) is gone; recreate it from the next expected sequence.
                if self._credit > 0 and time.monotonic() - self._last_activity > 3 * self.config.heartbeat_s + 1.0:
                    log.warning("consumer %s went silent; recreating it from %d", consumer, self.next_seq)
                    return
                await self._pull_more()
                if time.monotonic() > next_info:
                    next_info = time.monotonic() + self.config.stream_check_s
                    await self.conn.refresh_info(nc)  # raises when the stream is gone or replaced
                    if self.conn.direct and time.monotonic() >= self._consumer_until:
                        return  # the stream allows direct gets (again): read it with them
        finally:
            self._consumer = ""
            try:
                await asyncio.wait_for(sub.unsubscribe(), self.config.api_timeout_s)
                if nc.is_connected:
                    await asyncio.wait_for(nc.publish(f"$JS.API.CONSUMER.DELETE.{self.stream}.{consumer}", b""), self.config.api_timeout_s)
            except NATS_ERRORS as exc:
                log.debug("dropping consumer %s: %s", consumer, exc)

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
        if d.stream_seq < self.next_seq:
            return  # delivered again after a consumer reset
        if d.stream_seq > self.next_seq:
            log.warning("stream gap: expected %d, got %d; recreating the consumer", self.next_seq, d.stream_seq)
            assert self.shared.reset_evt is not None
            self.shared.reset_evt.set()
            return
        self.next_seq += 1
        self.shared.stream_last = max(self.shared.stream_last, d.stream_seq + d.pending)
        self._deliver(Raw(d.stream_seq, d.timestamp_ns // 1_000_000, msg.subject, msg.data))

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
            self.kick()
            return
        log.info("consumer status %s %s; recreating the consumer", status, desc)
        assert self.shared.reset_evt is not None
        self.shared.reset_evt.set()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        if self._incoming:
            batch, self._incoming = self._incoming, []
            self.raw_q.put(batch)
        self.kick()

    def kick(self) -> None:
        if self.grew is not None and self.shared.stream_last >= self.next_seq:
            self.grew.set()  # the writer made room: read on
        if not self._pull_scheduled and self._consumer:
            self._pull_scheduled = True
            self.shared.spawn(self._pull_more())

    async def _pull_more(self) -> None:
        """Keep about two pull requests outstanding while the local buffer has room (backpressure)."""
        try:
            nc, consumer = self.conn.nc, self._consumer
            if nc is None or not consumer or not nc.is_connected:
                return
            cfg = self.config
            buffered = (self.next_seq - 1) - self.shared.applied_seq
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
    # Thread didnode-follow: decode, parse, verify
    # ------------------------------------------------------------------

    def prep_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self.raw_q.get()
            if first is None:
                break
            msgs = list(first)
            while len(msgs) < self.max_batch:
                try:
                    nxt = self.raw_q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                msgs.extend(nxt)
            try:
                self._apply_q.put(self.prepare(msgs))
            except Exception:  # never lose the pipeline thread; the writer's gap check resyncs the consumer
                log.exception("preparing stream messages %d..%d failed", msgs[0].seq, msgs[-1].seq)
        self._apply_q.put(None)

    def prepare(self, msgs: list[Raw]) -> Prepared:
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
            mine = self.shared.local_ops.pop(h, None)
            if mine is not None and mine.proofs == proofs:
                ops[k] = mine
                continue
            items.append((payload, proofs))
            where.append(k)
        if items:
            for k, op in zip(where, prepare_many(items, self.network, self.tables, self.verifier, new=False)):
                ops[k] = op
        out: list[Operation | DidnodeError] = []
        for m, op in zip(msgs, ops):
            assert op is not None
            if isinstance(op, Operation) and st.subject_for(self.network, op.did) != m.subject:
                op = WrongSubject(f"stream message {m.seq} on subject {m.subject} carries an operation of {op.did}", did=op.did)
            out.append(op)
        return Prepared(msgs, out, hashes)

    def resync(self) -> None:
        self.next_seq = self.shared.applied_seq + 1
        self._incoming.clear()
        if self.shared.reset_evt is not None:
            self.shared.reset_evt.set()


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
