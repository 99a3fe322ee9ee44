"""How handshake messages ride on gRPC (two carriages, negotiated) and the drivers' time limits.

* Classic carriage (``Handshake``): an initiator that asks for it (request
  metadata ``didnode-auth-session: trailer``) gets the session message in the
  OK status's trailing metadata; one that does not (an older initiator) gets
  it as a stream message.
* Header carriage (``HandshakeInHeaders``, what the SDK uses): hello in the
  request headers, challenge in the response headers, session in the
  trailer; a challenge or session too large for a header is a stream
  message. Against a responder without the method (an older one) the SDK
  falls back to ``Handshake`` and remembers it. A missing, garbage or
  misplaced hello header, a replayed one and a forged challenge header all
  fail with their own reasons. The bytes are the same ``AuthMessage`` in
  every carriage, decoded strictly and checked by the core.
* Time limits: :class:`didnode.service.auth.Deadlines` behaves like
  ``asyncio.timeout`` (expiry -> ``TimeoutError``, an outside cancellation
  stays a cancellation) with one loop timer for many handshakes; a responder
  bounds half-open handshakes by itself, whatever deadline (none here) the
  initiator's call carries, and frees their slots.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

import didnode.auth as sdk
from didnode import errors
from didnode.auth import Authenticator
from didnode.core.handshake import Fresh, HandshakeLimits, Initiator, MemoryNonceStore
from didnode.core.handshake.messages import Session
from didnode.auth.driver import Deadlines
from didnode.auth.peers import ClientKeyStates
from didnode.clock import wall_ms
from didnode.auth import responder as auth_responder
from didnode.wire.handshake import (
    CHALLENGE_HEADER_KEY,
    HELLO_HEADER_KEY,
    METHOD,
    METHOD_IN_HEADERS,
    SESSION_IN_TRAILER,
    SESSION_TRAILER_KEY,
)
from didnode.wire.handshake import decode, encode
from didnode.client import AsyncClient, Client
from tests.auth.test_auth_grpc import client, make, me, status_reason, trust_of, with_device  # noqa: F401  (client is a fixture)
from tests.conftest import RunningNode
from tests.factory import Identity

# --------------------------------------------------------------------------
# Carriage of the session message
# --------------------------------------------------------------------------


async def _raw_handshake(address: str, ident: Identity, node_state: Any, metadata: tuple[tuple[str, str], ...] | None) -> tuple[bytes | None, bytes | None]:
    """A full handshake by hand on one stream: (session message bytes read from the stream, from the trailer)."""
    i = Initiator(me(ident), "local", Fresh.draw(os.urandom), MemoryNonceStore())
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.stream_stream(METHOD)(timeout=10, metadata=metadata)
        await call.write(encode(i.hello(wall_ms())))
        c = i.check_challenge(decode(await call.read()), wall_ms())
        i.verify_challenge(node_state)
        await call.write(encode(i.response()))
        raw = await call.read()
        as_message = None if raw is grpc.aio.EOF else raw
        while raw is not grpc.aio.EOF:
            raw = await call.read()
        assert await call.code() == grpc.StatusCode.OK
        trailer = (await call.trailing_metadata()).get(SESSION_TRAILER_KEY)
        session = as_message if as_message is not None else trailer
        assert session is not None, "no session message at all"
        i.finish(decode(session))
        est = i.recheck(node_state)
        assert est.peer_did == c.responder_did
        return as_message, trailer


def test_session_rides_in_the_trailer_only_when_asked(shared_node: RunningNode, client: Client) -> None:  # noqa: F811
    dev = make(client)

    async def run() -> None:
        async with AsyncClient(shared_node.address) as nc:
            node_did = (await nc.node_info()).node_did
            node_state = await ClientKeyStates(nc, trust_of(shared_node)).key_state(node_did)
        # An initiator that does not ask (an older one): the session is the last stream message.
        as_message, trailer = await _raw_handshake(shared_node.address, dev, node_state, None)
        assert as_message is not None and trailer is None
        # One that asks: no fourth stream message, the same bytes in the OK status's trailer.
        as_message, trailer = await _raw_handshake(shared_node.address, dev, node_state, (SESSION_IN_TRAILER,))
        assert as_message is None and trailer is not None
        assert decode(trailer).__class__.__name__ == "Session"

    asyncio.run(run())


class _Recording(grpc.GenericRpcHandler):
    """Wraps the responder's handler: records each method asked for; ``hide`` ones answer UNIMPLEMENTED."""

    def __init__(self, inner: grpc.GenericRpcHandler, calls: list[str], hide: tuple[str, ...]) -> None:
        self.inner, self.calls, self.hide = inner, calls, hide

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        self.calls.append(details.method)
        return None if details.method in self.hide else self.inner.service(details)


def _record_responder_methods(monkeypatch: pytest.MonkeyPatch, hide: tuple[str, ...] = ()) -> list[str]:
    """Make add_auth_responder mount a recording handler; return the list it fills."""
    calls: list[str] = []
    real = auth_responder.generic_handler
    monkeypatch.setattr(auth_responder, "generic_handler", lambda service, servicer: _Recording(real(service, servicer), calls, hide))
    return calls


def test_sdk_uses_the_header_carriage(shared_node: RunningNode, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    a, b = make(client), make(client)
    calls = _record_responder_methods(monkeypatch)

    async def body(address: str) -> None:
        async with AsyncClient(shared_node.address) as nc:
            auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node)))
            for _ in range(3):
                assert (await auth.authenticate(address, expect_peer=a.did)).peer_did == a.did
            await auth.close()

    asyncio.run(with_device(shared_node, a, tmp_path, body))
    assert calls == [METHOD_IN_HEADERS] * 3


def test_sdk_falls_back_to_the_classic_carriage_against_an_older_responder(
    shared_node: RunningNode, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """An older responder: no HandshakeInHeaders, and the session as a stream message whatever was asked.

    The SDK learns it once (UNIMPLEMENTED), then uses Handshake for that peer.
    """
    a, b = make(client), make(client)
    calls = _record_responder_methods(monkeypatch, hide=(METHOD_IN_HEADERS,))
    monkeypatch.setattr(auth_responder, "_wants_session_trailer", lambda metadata: False)

    async def body(address: str) -> None:
        async with AsyncClient(shared_node.address) as nc:
            auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node)))
            for _ in range(3):
                est = await auth.authenticate(address, expect_peer=a.did)
                assert est.peer_did == a.did
            assert auth.party.stats["OK"] == 3 and sum(auth.party.stats.values()) == 3  # the probe is no failure
            await auth.close()

    asyncio.run(with_device(shared_node, a, tmp_path, body))
    assert calls == [METHOD_IN_HEADERS, METHOD, METHOD, METHOD]


@pytest.mark.parametrize("carriage", ["in headers", "classic"])
def test_messages_too_large_for_a_header_are_stream_messages(
    carriage: str, shared_node: RunningNode, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    a, b = make(client), make(client)
    monkeypatch.setattr(auth_responder, "MAX_HEADER_MESSAGE_BYTES", 10)
    _record_responder_methods(monkeypatch, hide=(METHOD_IN_HEADERS,) if carriage == "classic" else ())

    async def body(address: str) -> None:
        async with AsyncClient(shared_node.address) as nc:
            auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node)))
            est = await auth.authenticate(address, expect_peer=a.did)
            assert est.peer_did == a.did
            await auth.close()

    asyncio.run(with_device(shared_node, a, tmp_path, body))


@pytest.mark.parametrize("forged", ["Challenge", "Session"])
def test_a_forged_header_or_trailer_fails_key_confirmation(
    forged: str, shared_node: RunningNode, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """Carriage changes nothing about what is checked: an altered challenge header or session trailer is refused by its MAC."""
    a, b = make(client), make(client)
    real_encode = auth_responder.encode

    def tampered(msg: Any) -> bytes:
        raw = bytearray(real_encode(msg))
        if msg.__class__.__name__ == forged:
            raw[-1] ^= 1  # last byte of the MAC
        return bytes(raw)

    monkeypatch.setattr(auth_responder, "encode", tampered)
    calls = _record_responder_methods(monkeypatch)

    async def body(address: str) -> None:
        async with AsyncClient(shared_node.address) as nc:
            auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node)))
            with pytest.raises(errors.DidnodeError) as exc:
                await auth.authenticate(address, expect_peer=a.did)
            assert exc.value.reason == "KEY_CONFIRMATION_FAILED"
            await auth.close()

    asyncio.run(with_device(shared_node, a, tmp_path, body))
    assert calls == [METHOD_IN_HEADERS]


def _initiator(ident: Identity) -> tuple[Initiator, bytes]:
    """An initiator that has made its hello, and the hello's bytes."""
    i = Initiator(me(ident), "local", Fresh.draw(os.urandom), MemoryNonceStore())
    return i, encode(i.hello(wall_ms()))


async def _header_handshake(address: str, i: Initiator, hello: bytes, node_state: Any) -> tuple[Any, list[bytes], bytes | None]:
    """A header-carriage handshake by hand after ``i``'s ``hello``: (the challenge header, the stream messages received, the session trailer)."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.stream_stream(METHOD_IN_HEADERS)(timeout=10, metadata=((HELLO_HEADER_KEY, hello),))
        challenge = dict(await call.initial_metadata()).get(CHALLENGE_HEADER_KEY)
        assert isinstance(challenge, bytes), "no challenge header"
        c = i.check_challenge(decode(challenge), wall_ms())
        i.verify_challenge(node_state)
        await call.write(encode(i.response()))
        messages = []
        while (raw := await call.read()) is not grpc.aio.EOF:
            messages.append(raw)
        trailer = dict(await call.trailing_metadata()).get(SESSION_TRAILER_KEY)
        assert isinstance(trailer, bytes)
        i.finish(decode(trailer))
        assert i.recheck(node_state).peer_did == c.responder_did
        return challenge, messages, trailer


def test_header_carriage_by_hand_against_the_node(shared_node: RunningNode, client: Client) -> None:  # noqa: F811
    """The node serves HandshakeInHeaders: one stream message in all (the response), the rest in headers and trailer."""
    dev = make(client)

    async def run() -> None:
        async with AsyncClient(shared_node.address) as nc:
            node_state = await ClientKeyStates(nc, trust_of(shared_node)).key_state((await nc.node_info()).node_did)
        challenge, messages, trailer = await _header_handshake(shared_node.address, *_initiator(dev), node_state)
        assert messages == [] and challenge and trailer

    asyncio.run(run())


async def _hello_header_refused(address: str, header: tuple[tuple[str, Any], ...]) -> str:
    """Open HandshakeInHeaders with ``header`` as request metadata; the reason of the status it ends with."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.stream_stream(METHOD_IN_HEADERS)(timeout=10, metadata=header)
        assert CHALLENGE_HEADER_KEY not in dict(await call.initial_metadata())
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call.read()
        return status_reason(exc.value)


def test_a_bad_hello_header_is_refused_with_its_reason(shared_node: RunningNode, client: Client) -> None:  # noqa: F811
    dev = make(client)
    i, hello = _initiator(dev)
    not_a_hello = encode(Session(b"\x01" * 16, "", 0, b"\x02" * 32))

    async def run() -> None:
        a = shared_node.address
        assert await _hello_header_refused(a, ()) == "HANDSHAKE_MALFORMED"  # no hello at all
        assert await _hello_header_refused(a, ((HELLO_HEADER_KEY, b"\xff\x00garbage"),)) == "HANDSHAKE_MALFORMED"
        assert await _hello_header_refused(a, ((HELLO_HEADER_KEY, hello[: len(hello) // 2]),)) == "HANDSHAKE_MALFORMED"  # truncated
        assert await _hello_header_refused(a, ((HELLO_HEADER_KEY, not_a_hello),)) == "OUT_OF_ORDER"
        async with AsyncClient(a) as nc:
            node_state = await ClientKeyStates(nc, trust_of(shared_node)).key_state((await nc.node_info()).node_did)
        # A replayed hello header: the first use completes, the second is a replay.
        await _header_handshake(a, i, hello, node_state)
        assert await _hello_header_refused(a, ((HELLO_HEADER_KEY, hello),)) == "REPLAY"

    asyncio.run(run())


# --------------------------------------------------------------------------
# Time limits
# --------------------------------------------------------------------------


def test_deadlines_time_out_like_asyncio_timeout() -> None:
    async def run() -> None:
        d = Deadlines()
        t = time.monotonic()
        with pytest.raises(TimeoutError):
            async with d.limit(0.05):
                await asyncio.sleep(5)
        assert 0.04 <= time.monotonic() - t < 1
        # A block that finishes in time is left alone, and nothing fires later.
        async with d.limit(0.05):
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)

        # A cancellation from outside stays a cancellation.
        async def victim() -> None:
            async with d.limit(5):
                await asyncio.sleep(5)

        task = asyncio.create_task(victim())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def test_many_handshakes_share_one_timer_and_each_gets_its_own_limit() -> None:
    async def run() -> None:
        d = Deadlines()
        outcomes: list[str] = []

        async def one(limit: float, work: float) -> None:
            try:
                async with d.limit(limit):
                    await asyncio.sleep(work)
                outcomes.append("done")
            except TimeoutError:
                outcomes.append("timeout")

        loop = asyncio.get_running_loop()
        t = time.monotonic()
        jobs = [one(0.1, 0.0) for _ in range(50)] + [one(0.1, 5) for _ in range(50)] + [one(0.3, 5) for _ in range(10)] + [one(0.3, 0.01) for _ in range(10)]
        timers_before = len(loop._scheduled)  # type: ignore[attr-defined]
        await asyncio.gather(*jobs)
        assert outcomes.count("done") == 60 and outcomes.count("timeout") == 60
        assert time.monotonic() - t < 2
        assert len(loop._scheduled) <= timers_before + 1  # type: ignore[attr-defined]
        assert not d._queues or all(not q for q in d._queues.values())  # everything released

    asyncio.run(run())


def test_responder_bounds_half_open_handshakes_without_any_call_deadline(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:  # noqa: F811
    """The responder's own limit ends a silent initiator's stream (no gRPC deadline on the call) and frees its slot."""
    a, b = make(client), make(client)
    limits = HandshakeLimits(timeout_ms=400, max_pending_per_peer=1, max_pending_total=10)

    async def body(address: str) -> None:
        async with grpc.aio.insecure_channel(address) as ch:
            # Silent after the hello: timed out, slot freed.
            call = ch.stream_stream(METHOD)()  # no deadline
            i = Initiator(me(b), "local", Fresh.draw(os.urandom), MemoryNonceStore())
            await call.write(encode(i.hello(wall_ms())))
            assert decode(await call.read()).__class__.__name__ == "Challenge"
            t = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call.read()
            assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and status_reason(exc.value) == "HANDSHAKE_TIMEOUT"
            assert time.monotonic() - t < 3
            # Silent from the start (no hello at all): the wait for the hello is bounded too.
            call = ch.stream_stream(METHOD)()
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call.read()
            assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and status_reason(exc.value) == "HANDSHAKE_TIMEOUT"
        # The per-address bound is 1: the slot is free again.
        async with AsyncClient(shared_node.address) as nc:
            auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node)))
            assert (await auth.authenticate(address, expect_peer=a.did)).peer_did == a.did
            await auth.close()

    asyncio.run(with_device(shared_node, a, tmp_path, body, limits))
