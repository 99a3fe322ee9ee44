"""A key revoked *during* a handshake does not complete it (issue #14): each side re-reads the peer's
key state after the peer's last message, before it declares the session established (and, on a node,
before it issues a session credential).

Over gRPC on loopback against real nodes: a handshake paused between challenge and response (the
initiator is driven by hand, or the SDK's driver over a send that pauses), the key revoked in between
by a real revoke operation. In memory, over the drivers: the same for both roles, and what the cheap
paths skip (no re-read while the ledger has not moved, or within a source's own staleness bound).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import grpc
import pytest

from didnode import errors
from didnode.auth import Authenticator
from didnode.auth import initiator as sdk_initiator
from didnode.auth.driver import HandshakeInitiator, HandshakeResponder, ResponderSetup
from didnode.auth.peers import CachedKeyStates, ClientKeyStates
from didnode.client import AsyncClient, Client
from didnode.clock import wall_ms
from didnode.core.handshake import Established, Fresh, Initiator, MemoryNonceStore
from didnode.core.handshake.messages import Message, Response, Session
from didnode.core.keystate import DidState
from didnode.wire.handshake import METHOD, SESSION_IN_TRAILER, SESSION_TRAILER_KEY, decode, encode
from tests.auth.test_auth_grpc import client, make, me, revoke, status_reason, trust_of, with_device  # noqa: F401  (client is a fixture)
from tests.auth.test_policy_and_driver import Setup, exchange
from tests.auth.world import NOW
from tests.conftest import RunningNode

# --------------------------------------------------------------------------
# A real node as responder
# --------------------------------------------------------------------------


def test_node_refuses_an_initiator_whose_key_is_revoked_between_challenge_and_response(shared_node: RunningNode, client: Client) -> None:  # noqa: F811
    """The node read the device's key at the hello; the key is revoked before the response arrives: the node
    refuses with PEER_KEY_REVOKED and sends no session message (so no session credential) at all."""
    admin = make(client)
    dev = make(client, (admin,))

    async def run() -> None:
        async with AsyncClient(shared_node.address) as nc:
            node_state = (await nc.key_state((await nc.node_info()).node_did)).state
        i = Initiator(me(dev), "local", Fresh.draw(os.urandom), MemoryNonceStore(), session_credential=True)
        async with grpc.aio.insecure_channel(shared_node.address) as ch:
            call = ch.stream_stream(METHOD)(timeout=10, metadata=(SESSION_IN_TRAILER,))
            await call.write(encode(i.hello(wall_ms())))
            i.check_challenge(decode(await call.read()), wall_ms())
            i.verify_challenge(node_state)
            # Paused between challenge and response: the device's key is revoked on the ledger.
            await asyncio.to_thread(revoke, client, dev, admin)
            await call.write(encode(i.response()))
            got: list[bytes] = []
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                while (raw := await call.read()) is not grpc.aio.EOF:
                    got.append(raw)
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED and status_reason(exc.value) == "PEER_KEY_REVOKED"
            assert not got, "no session message (and so no session credential) on the stream"
            assert (exc.value.trailing_metadata() or {}).get(SESSION_TRAILER_KEY) is None, "nor in the trailer"  # type: ignore[union-attr]

    asyncio.run(run())


def test_node_completes_when_the_initiator_did_changed_mid_handshake_but_its_key_did_not(shared_node: RunningNode, client: Client) -> None:  # noqa: F811
    """The re-check is about the key, not about any change: an update of the DID during the pause changes nothing."""
    from didnode.core import builder

    dev = make(client)

    async def run() -> None:
        async with AsyncClient(shared_node.address) as nc:
            node_state = (await nc.key_state((await nc.node_info()).node_did)).state
        i = Initiator(me(dev), "local", Fresh.draw(os.urandom), MemoryNonceStore(), session_credential=True)
        async with grpc.aio.insecure_channel(shared_node.address) as ch:
            call = ch.stream_stream(METHOD)(timeout=10, metadata=(SESSION_IN_TRAILER,))
            await call.write(encode(i.hello(wall_ms())))
            i.check_challenge(decode(await call.read()), wall_ms())
            i.verify_challenge(node_state)
            st = await asyncio.to_thread(client.state, dev.did)
            op = builder.sign(builder.update("local", dev.did, st.seq + 1, st.last, [builder.service("s1", "X", "https://x.example")], None), [(dev.kid, dev.key)])
            await asyncio.to_thread(client.submit, op)
            await call.write(encode(i.response()))
            raw = await call.read()
            session = raw if raw is not grpc.aio.EOF else (await call.trailing_metadata()).get(SESSION_TRAILER_KEY)
            assert isinstance(session, bytes)
            i.finish(decode(session))
            assert i.recheck(node_state).credential

    asyncio.run(run())


# --------------------------------------------------------------------------
# A device responder, and the SDK's initiator re-checking it
# --------------------------------------------------------------------------


def _recheck_bound_ms() -> int:
    """How stale a device's first read of a peer's key may be at the end of a handshake without a re-read."""
    return int(getattr(ClientKeyStates, "RECHECK_AFTER_MS", 0))


def test_initiator_refuses_a_responder_whose_key_is_revoked_during_the_handshake(shared_node: RunningNode, client: Client, tmp_path: Path) -> None:  # noqa: F811
    """The SDK initiator read the device responder's key at the challenge; the key is revoked (on the
    ledger) before the session arrives, and the handshake lasted longer than the initiator's re-read
    bound: the initiator does not declare the session established (PEER_KEY_REVOKED, its own verdict)."""
    admin = make(client)
    a, b = make(client, (admin,)), make(client)

    async def body(address: str) -> None:
        async with AsyncClient(shared_node.address) as nc:
            auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node)))
            stream = sdk_initiator._Stream(auth._route(address), address, 12.0, True)

            async def send(msg: Message) -> None:
                if isinstance(msg, Response):
                    await asyncio.to_thread(revoke, client, a, admin)
                    await asyncio.sleep(_recheck_bound_ms() / 1000 + 0.05)
                await stream.send(msg)

            with pytest.raises(errors.PeerKeyRevoked) as exc:
                await auth.driver.initiate(stream.recv, send, expect_peer=a.did)
            assert exc.value.reason == "PEER_KEY_REVOKED" and "by" not in exc.value.details
            await auth.close()

    asyncio.run(with_device(shared_node, a, tmp_path, body))


def test_device_responder_refuses_an_initiator_whose_key_is_revoked_during_the_handshake(
    shared_node: RunningNode, client: Client, tmp_path: Path  # noqa: F811
) -> None:
    admin = make(client)
    a, b = make(client), make(client, (admin,))

    async def body(address: str) -> None:
        async with AsyncClient(shared_node.address) as nc:
            auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node)))
            stream = sdk_initiator._Stream(auth._route(address), address, 12.0, True)

            async def send(msg: Message) -> None:
                if isinstance(msg, Response):
                    await asyncio.to_thread(revoke, client, b, admin)
                    await asyncio.sleep(_recheck_bound_ms() / 1000 + 0.05)
                await stream.send(msg)

            with pytest.raises(errors.KeyRevoked) as exc:
                await auth.driver.initiate(stream.recv, send, expect_peer=a.did)
            assert exc.value.reason == "PEER_KEY_REVOKED" and exc.value.details["by"] == "responder"
            await auth.close()

    asyncio.run(with_device(shared_node, a, tmp_path, body))


# --------------------------------------------------------------------------
# The drivers in memory: both roles, and the cheap paths
# --------------------------------------------------------------------------


class Counting:
    """A key-state source over the world's ledger that counts its reads (no recheck of its own: always re-read)."""

    def __init__(self, s: Setup) -> None:
        self.s = s
        self.reads = 0

    async def key_state(self, did: str) -> DidState:
        self.reads += 1
        return self.s.w.led.resolve(did)


class RevokeBefore:
    """Revokes ``who``'s key (signed by ``by``) just before the side using this sends or receives the message of type ``kind``."""

    def __init__(self, s: Setup, who: Any, by: Any) -> None:
        self.s, self.who, self.by = s, who, by

    def now(self) -> None:
        self.s.w.revoke(self.who, "key-1", self.by)


def test_driver_responder_rechecks_after_the_response_and_issues_nothing() -> None:
    s = Setup()
    node = s.w.identity()
    issued: list[str] = []

    class Sessions:
        async def refresh(self) -> None:
            return None

        def issue(self, subject: str, session_id: bytes, now_ms: int) -> tuple[str, int]:
            issued.append(subject)
            return "x.y.z", now_ms + 1000

    responder = HandshakeResponder(ResponderSetup(s.party(node), sessions=Sessions()))
    initiator = HandshakeInitiator(s.party(s.a))
    revoke_a = RevokeBefore(s, s.a, s.admin)
    orig_respond = responder.respond

    async def respond(recv: Any, send: Any, peer: str) -> Established:
        async def recv2() -> Message:
            m = await recv()
            if isinstance(m, Response):
                revoke_a.now()  # revoked after the responder read A's key at the hello
            return m

        return await orig_respond(recv2, send, peer)

    responder.respond = respond  # type: ignore[method-assign]
    ini, rsp = asyncio.run(exchange(initiator, responder, session_credential=True))
    assert isinstance(rsp, errors.PeerKeyRevoked), rsp
    assert isinstance(ini, errors.KeyRevoked) and ini.details["by"] == "responder"
    assert not issued, "no session credential was issued"


def test_driver_initiator_rechecks_after_the_session() -> None:
    s = Setup()
    src = Counting(s)
    responder = HandshakeResponder(ResponderSetup(s.party(s.b)))
    party = s.party(s.a)
    party.keys = src
    initiator = HandshakeInitiator(party)
    revoke_b = RevokeBefore(s, s.b, s.admin)
    orig_initiate = initiator.initiate

    async def initiate(recv: Any, send: Any, **kw: Any) -> Established:
        async def recv2() -> Message:
            m = await recv()
            if isinstance(m, Session):
                revoke_b.now()  # revoked after the initiator read B's key at the challenge
            return m

        return await orig_initiate(recv2, send, **kw)

    initiator.initiate = initiate  # type: ignore[method-assign]
    ini, _ = asyncio.run(exchange(initiator, responder))
    assert isinstance(ini, errors.PeerKeyRevoked) and "by" not in ini.details, ini
    assert src.reads == 2, "a source without a cheaper way is simply read again"


def test_an_unchanged_key_state_passes_the_recheck_and_it_is_listed() -> None:
    s = Setup()
    ini, rsp = asyncio.run(exchange(HandshakeInitiator(s.party(s.a)), HandshakeResponder(ResponderSetup(s.party(s.b)))))
    assert isinstance(ini, Established) and isinstance(rsp, Established)
    for est in (ini, rsp):
        assert any("still a current authentication key" in c for c in est.checks), est.checks


def test_client_key_states_re_read_only_past_their_bound() -> None:
    """A device's source re-reads a peer's state through the node only when its first read is older than
    its bound; a cached source answers from its cache within the cache's own staleness."""
    s = Setup()
    calls: list[str] = []
    clock = [NOW]

    class Node:
        async def key_state(self, did: str) -> Any:
            calls.append(did)

            class Reply:
                state = s.w.led.resolve(did)

            return Reply()

    src = ClientKeyStates(Node(), None, insecure_no_verify=True)
    bound = ClientKeyStates.RECHECK_AFTER_MS
    first = asyncio.run(src.key_state(s.a.did))
    assert asyncio.run(src.recheck(s.a.did, first, NOW, NOW + bound)) is first and len(calls) == 1
    s.w.revoke(s.a, "key-1", s.admin)
    again = asyncio.run(src.recheck(s.a.did, first, NOW, NOW + bound + 1))
    assert len(calls) == 2 and again.seq == first.seq + 1

    cached = CachedKeyStates(ClientKeyStates(Node(), None, insecure_no_verify=True), 5000, clock_ms=lambda: clock[0])
    calls.clear()
    st = asyncio.run(cached.key_state(s.b.did))
    clock[0] += 4000
    assert asyncio.run(cached.recheck(s.b.did, st, NOW, clock[0])) is st and len(calls) == 1
    clock[0] += 2000
    asyncio.run(cached.recheck(s.b.did, st, NOW, clock[0]))
    assert len(calls) == 2
