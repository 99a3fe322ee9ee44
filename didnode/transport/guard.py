"""The node's per-peer limits, around every method of its server (docs/security.md, "Limits").

:class:`NodeGuard` is the :class:`didnode.wire.handlers.CallGuard` of a node's
server: every method of every service it serves (didnode's, health,
reflection) runs inside it. On each call it

* counts the calls open from the peer's address (:func:`peer_key`), refusing
  more than ``max_calls_per_peer`` (``TOO_MANY_CALLS``);
* charges a unary ``Submit`` refused as invalid (:data:`INVALID_WORK`)
  ``invalid_submit_cost`` more tokens after the fact, so a peer pays for the
  forged work it sends;
* holds a refused call before sending its refusal, still counted in the
  peer's calls: ``RATE_LIMITED`` until the peer's tokens are back, at most
  ``refusal_hold_ms``; the whole ``refusal_hold_ms`` while the peer is in
  debt (an invalid ``Submit`` that leaves its peer in debt, and the peer's
  ``RATE_LIMITED`` calls until the debt is paid), so a refused peer makes at most
  ``max_calls_per_peer`` calls per hold instead of one per refusal;
* charges the peer's token bucket of the method's class (:data:`RATE_CLASSES`):
  a submission costs one token per operation, a handshake or session
  credential one; a unary call or a handshake over the rate is refused with
  ``RATE_LIMITED`` and a retry hint, a batch chunk over it waits for its
  tokens (flow control slows the client) for at most ``max_pace_ms``, then is
  refused the same way;
* reads a ``SubmitBatch`` chunk only within a budget of ``max_batch_chunks``
  chunks read and not yet answered (all streams together; one unit is taken
  before each read, since grpc buffers a message as soon as a read is
  outstanding) and ``max_batch_chunks_per_peer`` per peer address: memory for
  batches is bounded by that budget, and a stream waiting for room is slowed by
  flow control, never refused;
* closes a request stream (``SubmitBatch``, reflection) that sent nothing for
  ``stream_idle_s`` while none of its requests was pending (``IDLE_TIMEOUT``),
  and a batch stream that waits that way (holding a budget unit) for
  ``contended_idle_s`` while other streams wait for the budget; a call of a
  one-request method whose request has not arrived within ``stream_idle_s``
  is ended the same way (the guard admits such a call before its request is
  read: :mod:`didnode.wire.handlers` registers it as a request stream).

Everything runs on the server's one event loop: no locks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import grpc

from didnode.core.ratelimit import PeerBuckets
from didnode.errors import DidnodeError, IdleTimeout, RateLimited, TooManyCalls
from didnode.transport.limits import Limits, peer_key
from didnode.wire.handlers import Malformed
from didnode.wire.limits import AUTH, LEDGER
from didnode.wire.status import to_status

log = logging.getLogger("didnode.transport")

SUBMIT, HANDSHAKE = "submit", "handshake"
BATCH = LEDGER + "SubmitBatch"
SUBMIT_METHOD = LEDGER + "Submit"
# How a Submit ends when its operation was worthless: a signature or signer that does not verify, or malformed.
INVALID_WORK = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT)


@dataclass(frozen=True, slots=True)
class RateClass:
    """Which bucket a method charges, and how much: per call, or per request message (``per_message(msg)``)."""

    bucket: str
    per_call: int = 1
    per_message: Callable[[Any], int] | None = None


def _operations(msg: Any) -> int:
    return 0 if isinstance(msg, Malformed) else len(msg.operations)


RATE_CLASSES: dict[str, RateClass] = {
    LEDGER + "Submit": RateClass(SUBMIT),
    BATCH: RateClass(SUBMIT, per_call=0, per_message=_operations),
    AUTH + "Handshake": RateClass(HANDSHAKE),
    AUTH + "HandshakeInHeaders": RateClass(HANDSHAKE),
    "/didnode.v1.CredentialService/IssueSessionCredential": RateClass(HANDSHAKE),
}
# Request streams that answer each request with exactly one reply, in order: closed when idle.
IDLE_BOUND_STREAMS = (BATCH, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class ChunkBudget:
    """At most ``total`` units held at once, and at most ``per_peer`` by one peer; :meth:`acquire` waits for room."""

    def __init__(self, total: int, per_peer: int) -> None:
        self.total = total
        self.per_peer = per_peer
        self.used = 0
        self.by_peer: dict[str, int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def contended(self) -> bool:
        """Whether a stream is waiting for room right now."""
        return bool(self._waiters)

    def _room(self, peer: str) -> bool:
        return self.used < self.total and self.by_peer.get(peer, 0) < self.per_peer

    async def acquire(self, peer: str) -> None:
        while not self._room(peer):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += 1
        self.by_peer[peer] = self.by_peer.get(peer, 0) + 1

    def release(self, peer: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.used -= n
        left = self.by_peer.get(peer, 0) - n
        if left > 0:
            self.by_peer[peer] = left
        else:
            self.by_peer.pop(peer, None)
        waiters, self._waiters = self._waiters, []
        for w in waiters:  # each looks again (few: one per stream waiting)
            if not w.done():
                w.set_result(None)


class _Stream:
    """One open request stream: requests read and replies sent (one per request), when it last moved."""

    __slots__ = ("reads", "replies", "last")

    def __init__(self, now_ms: int) -> None:
        self.reads = 0
        self.replies = 0
        self.last = now_ms

    @property
    def pending(self) -> int:
        return self.reads - self.replies


class NodeGuard:
    """The per-peer limits of one server (see the module doc)."""

    def __init__(self, limits: Limits, clock_ms: Callable[[], int] = monotonic_ms) -> None:
        self.limits = limits
        self.clock_ms = clock_ms
        self.open_by_peer: dict[str, int] = {}
        self.chunks = ChunkBudget(limits.max_batch_chunks, limits.max_batch_chunks_per_peer)
        self.buckets = {SUBMIT: PeerBuckets(limits.submit_rate, limits.max_peers), HANDSHAKE: PeerBuckets(limits.handshake_rate, limits.max_peers)}
        self.held = 0  # refused calls being held (see _hold)
        # Told (method, seconds) when a call of a one-reply method ends, however it ended (e.g. the
        # node's metrics: RPC latency by method); read at each call's end, so it may be set at any time.
        self.on_call: Callable[[str, float], None] | None = None

    # -- admission -------------------------------------------------------------

    def _admit(self, method: str, peer: str) -> DidnodeError | None:
        """Count the call in (None) or say why it is refused."""
        open_calls = self.open_by_peer.get(peer, 0)
        if open_calls >= self.limits.max_calls_per_peer:
            return TooManyCalls(
                f"{peer} has {open_calls} calls open; the limit per peer address is {self.limits.max_calls_per_peer}",
                peer=peer, limit=self.limits.max_calls_per_peer,
            )
        rate = RATE_CLASSES.get(method)
        if rate is not None and rate.per_call:
            wait = self.buckets[rate.bucket].take(peer, rate.per_call, self.clock_ms())
            if wait:
                return self._rate_limited(rate.bucket, peer, wait)
        self.open_by_peer[peer] = open_calls + 1
        return None

    def _leave(self, peer: str) -> None:
        n = self.open_by_peer.get(peer, 0) - 1
        if n > 0:
            self.open_by_peer[peer] = n
        else:
            self.open_by_peer.pop(peer, None)

    async def _hold(self, peer: str, wait_ms: int) -> None:
        """Keep a refused call open for ``wait_ms``, at most ``refusal_hold_ms``, before its refusal is sent;
        counted in the peer's calls meanwhile.

        A refusal costs the node little, but answering it at once frees the peer to send the next
        call at once: held, a refused peer makes at most ``max_calls_per_peer`` calls per hold.
        A peer over its rate is held until its tokens are back (a client a little over its rate is
        barely slowed); a peer in debt (it sent forged work: :meth:`_charge_invalid`) the whole
        ``refusal_hold_ms``.
        """
        hold_ms = min(wait_ms, self.limits.refusal_hold_ms)
        if hold_ms <= 0:
            return
        self.open_by_peer[peer] = self.open_by_peer.get(peer, 0) + 1
        self.held += 1
        try:
            await asyncio.sleep(hold_ms / 1000)
        finally:
            self.held -= 1
            self._leave(peer)

    def _charge_invalid(self, peer: str) -> bool:
        """Charge ``peer`` for a Submit refused as invalid; whether it is now in debt (then its refusal is held)."""
        return self.buckets[SUBMIT].charge(peer, self.limits.invalid_submit_cost, self.clock_ms()) > 0

    def _rate_limited(self, bucket: str, peer: str, wait_ms: int) -> RateLimited:
        rate = self.buckets[bucket].rate
        return RateLimited(
            f"{peer} is over its {bucket} rate ({rate.per_second}/s, burst {rate.burst}); retry in {wait_ms} ms",
            peer=peer, limit=f"{rate.per_second}/s", retry_after_ms=wait_ms,
        )

    async def _charge_message(self, rate: RateClass, peer: str, msg: Any) -> None:
        """Charge one request message of a stream; wait (at most ``max_pace_ms``) for its tokens, else raise RATE_LIMITED."""
        assert rate.per_message is not None
        cost = rate.per_message(msg)
        waited = 0
        while wait := self.buckets[rate.bucket].take(peer, cost, self.clock_ms()):
            if waited + wait > self.limits.max_pace_ms:
                raise self._rate_limited(rate.bucket, peer, wait)
            await asyncio.sleep(wait / 1000)
            waited += wait

    # -- wrapping --------------------------------------------------------------

    def wrap(
        self, method: str, behavior: Callable[..., Any], request_streaming: bool, response_streaming: bool, single_request: bool = False
    ) -> Callable[..., Any]:
        """``behavior`` inside the limits (a plain function, e.g. an unimplemented stub, is left alone)."""
        rate = RATE_CLASSES.get(method)
        per_message = rate if rate is not None and rate.per_message is not None else None
        one_reply_each = method in IDLE_BOUND_STREAMS
        timed = request_streaming and (one_reply_each or single_request)
        budget = self.chunks if method == BATCH else None

        def requests_of(arg: Any, peer: str) -> tuple[Any, _Stream | None]:
            if not request_streaming or not (timed or per_message is not None):
                return arg, None
            stream = _Stream(self.clock_ms()) if timed else None
            return self._guarded_requests(method, arg, peer, per_message, stream, budget), stream

        async def enter(context: grpc.aio.ServicerContext) -> str:
            peer = peer_key(context.peer())
            refused = self._admit(method, peer)
            if refused is not None:
                log.debug("refused %s from %s: %s [%s]", method, peer, refused, refused.reason)
                if isinstance(refused, RateLimited) and refused.retry_after_ms:
                    in_debt = self.buckets[RATE_CLASSES[method].bucket].in_debt(peer, self.clock_ms())
                    await self._hold(peer, self.limits.refusal_hold_ms if in_debt else refused.retry_after_ms)
                await context.abort_with_status(to_status(refused))
            return peer

        if inspect.isasyncgenfunction(behavior):

            async def wrapped_gen(arg: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                peer = await enter(context)
                arg, stream = requests_of(arg, peer)
                try:
                    async for reply in behavior(arg, context):
                        if stream is not None and one_reply_each:
                            stream.replies += 1
                            stream.last = self.clock_ms()
                            if budget is not None:
                                budget.release(peer)
                        yield reply
                except DidnodeError as err:
                    await context.abort_with_status(to_status(err))
                finally:
                    if budget is not None and stream is not None:
                        budget.release(peer, stream.pending)
                    self._leave(peer)

            return wrapped_gen

        if inspect.iscoroutinefunction(behavior):
            penalized = method == SUBMIT_METHOD and self.limits.invalid_submit_cost > 0

            async def wrapped(arg: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                peer = await enter(context)
                arg, _ = requests_of(arg, peer)
                ctx: Any = _ChargingContext(self, context, peer) if penalized else context
                try:
                    return await behavior(arg, ctx)
                except DidnodeError as err:
                    await ctx.abort_with_status(to_status(err))
                finally:
                    if penalized and not ctx.charged and context.code() in INVALID_WORK:
                        self._charge_invalid(peer)
                    self._leave(peer)
                    if self.on_call is not None:
                        self.on_call(method, time.perf_counter() - started)

            return wrapped

        return behavior

    async def _guarded_requests(
        self, method: str, requests: Any, peer: str, rate: RateClass | None, stream: _Stream | None, budget: ChunkBudget | None
    ) -> AsyncIterator[Any]:
        """The request stream: read within the budget, charged per message, closed when idle."""
        it = requests.__aiter__()
        while True:
            if budget is not None:
                await budget.acquire(peer)
            try:
                if stream is None:
                    got, msg = await _anext(it)
                else:
                    got, msg = await self._next_or_idle(method, it, stream, budget)
            except BaseException:
                if budget is not None:
                    budget.release(peer)
                raise
            if not got:
                if budget is not None:
                    budget.release(peer)
                return
            if stream is not None:
                stream.reads += 1  # the budget unit now belongs to this request until its reply
                stream.last = self.clock_ms()
            if rate is not None:
                await self._charge_message(rate, peer, msg)
            yield msg

    async def _next_or_idle(self, method: str, it: Any, stream: _Stream, budget: ChunkBudget | None) -> tuple[bool, Any]:
        """The next request, or IdleTimeout once the stream has had nothing pending and sent nothing for ``stream_idle_s``
        (``contended_idle_s`` while others wait for the batch budget this stream holds a unit of)."""
        quiet_ms = int(self.limits.stream_idle_s * 1000)
        busy_ms = min(quiet_ms, int(self.limits.contended_idle_s * 1000))
        nxt = asyncio.ensure_future(_anext(it))
        try:
            while True:
                if stream.pending:
                    timeout_ms = min(quiet_ms, 1000)  # the node owes a reply: not idle; look again shortly
                else:
                    bound_ms = busy_ms if budget is not None and budget.contended else quiet_ms
                    idle_ms = self.clock_ms() - stream.last
                    if idle_ms >= bound_ms:
                        raise IdleTimeout(
                            f"the {method} stream sent nothing for {idle_ms / 1000:g} s with nothing pending"
                            f"{' while others waited for the batch budget' if bound_ms < quiet_ms else ''}; closed",
                            method=method, idle_s=f"{bound_ms / 1000:g}",
                        )
                    timeout_ms = min(bound_ms - idle_ms, 1000) if budget is not None else bound_ms - idle_ms
                done, _ = await asyncio.wait((nxt,), timeout=timeout_ms / 1000)
                if done:
                    return nxt.result()
        finally:
            if not nxt.done():
                nxt.cancel()


class _ChargingContext:
    """A unary ``Submit``'s context: its refusal as invalid charges the peer, and is held while the peer is in debt.

    The refusal must be held before grpc sends it (``abort_with_status`` sends the status at once).
    """

    __slots__ = ("_guard", "_context", "_peer", "charged")

    def __init__(self, guard: NodeGuard, context: grpc.aio.ServicerContext, peer: str) -> None:
        self._guard = guard
        self._context = context
        self._peer = peer
        self.charged = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort_with_status(self, status: grpc.Status) -> None:
        if status.code in INVALID_WORK and not self.charged:
            self.charged = True
            if self._guard._charge_invalid(self._peer):
                await self._guard._hold(self._peer, self._guard.limits.refusal_hold_ms)
        await self._context.abort_with_status(status)


async def _anext(it: Any) -> tuple[bool, Any]:
    try:
        return True, await it.__anext__()
    except StopAsyncIteration:
        return False, None
