"""Hello floods from many addresses cannot lock a legitimate initiator out (issue #14).

Before: 20 addresses x 64 half-open handshakes filled the global bound (1,024) and every other
initiator got TOO_MANY_PENDING until the flood's challenges timed out (10 s), again and again.
Now (docs/authentication.md, "Floods"): past ``cookie_threshold`` half-open handshakes a hello
without a valid cookie gets a stateless Retry (an HMAC, no key read, no X25519, no write); only a
hello carrying its cookie opens a challenge, and when the table is full a new challenge takes the
place of the oldest one of the address holding the most.

In memory, over the responder driver with thousands of fake peer addresses; and once over gRPC on
loopback (the flood from 127.0.0.1, the legitimate initiator over a unix socket: another address).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from didnode import errors
from didnode.auth import Authenticator, add_auth_responder, device_responder
from didnode.auth.driver import HandshakeInitiator, HandshakeResponder, ResponderSetup
from didnode.auth.lmdb_nonces import LmdbNonceStore
from didnode.auth.peers import ClientKeyStates
from didnode.client import AsyncClient, Client
from didnode.clock import wall_ms
from didnode.core.handshake import Established, Fresh, HandshakeLimits, Hello, Initiator, LocalIdentity, MemoryNonceStore
from didnode.core.handshake.messages import Message
from didnode.wire import handshake as wire
from didnode.wire.handshake import METHOD, decode, encode
from tests.auth.test_auth_grpc import client, make, me, trust_of  # noqa: F401  (client is a fixture)
from tests.auth.test_policy_and_driver import Pipe, Setup
from tests.auth.world import NOW
from tests.conftest import RunningNode

LEGIT = "ipv4:198.51.100.7"


class Link:
    """An initiator's connection to a responder driver: every hello opens a new "call" (a responder
    task on a fresh pipe), as on gRPC, where a Retry ends the call and the hello comes again on a new one."""

    def __init__(self, responder: HandshakeResponder, peer: str) -> None:
        self.responder = responder
        self.peer = peer
        self.pipe: Pipe | None = None
        self.tasks: list[asyncio.Task[Any]] = []

    async def send(self, m: Message) -> None:
        if isinstance(m, Hello):
            self.pipe = Pipe()
            self.tasks.append(asyncio.create_task(self._serve(self.pipe)))
        assert self.pipe is not None
        self.pipe.to_r.put_nowait(m)

    async def recv(self) -> Message:
        assert self.pipe is not None
        m = await self.pipe.to_i.get()
        if isinstance(m, errors.DidnodeError):
            raise errors.error_for_reason(m.reason, m.message, {**m.details, "by": "responder"})
        return m

    async def _serve(self, pipe: Pipe) -> Any:
        try:
            return await self.responder.respond(pipe.r_recv, pipe.r_send, self.peer)
        except errors.DidnodeError as err:
            pipe.to_i.put_nowait(err)
            return err


async def follower(responder: HandshakeResponder, claim: LocalIdentity, peer: str, outcomes: list[str]) -> list[asyncio.Task[Any]]:
    """A flooder that does what the protocol asks (resends its hello with the cookie) and then never answers the challenge."""
    ini = Initiator(claim, "local", Fresh.draw(os.urandom), MemoryNonceStore())
    link = Link(responder, peer)
    try:
        await link.send(ini.hello(NOW))
        msg = await link.recv()
        if type(msg).__name__ == "Retry":
            await link.send(ini.retry(msg, NOW))  # type: ignore[attr-defined]
            msg = await link.recv()
        outcomes.append(type(msg).__name__)
    except errors.DidnodeError as err:
        outcomes.append(err.reason)
    return link.tasks


async def blind(responder: HandshakeResponder, claim: LocalIdentity, peer: str, outcomes: list[str]) -> list[asyncio.Task[Any]]:
    """A flooder that sends hellos and ignores whatever comes back (never follows a Retry)."""
    ini = Initiator(claim, "local", Fresh.draw(os.urandom), MemoryNonceStore())
    link = Link(responder, peer)
    try:
        await link.send(ini.hello(NOW))
        outcomes.append(type(await link.recv()).__name__)
    except errors.DidnodeError as err:
        outcomes.append(err.reason)
    return link.tasks


@pytest.mark.parametrize("addresses", [20, 400])
def test_a_flood_of_2000_hellos_from_many_addresses_does_not_lock_out_a_legitimate_initiator(addresses: int) -> None:
    s = Setup()
    attackers = [s.w.identity() for _ in range(3)]
    # Flooders claim attacker DIDs and the legitimate initiator's own DID (a hello proves nothing about
    # who sent it: a budget per claimed DID would let a flood lock that DID out).
    claims = [s.w.local(x) for x in attackers] + [s.w.local(s.a)]
    flood_peers = [f"ipv4:203.0.113.{k % 250}" if k < 250 else f"ipv4:192.0.2.{k % 250}" for k in range(addresses)]
    responder = HandshakeResponder(ResponderSetup(s.party(s.b)))
    store = responder.party.nonces
    limits = store.limits
    initiator = HandshakeInitiator(s.party(s.a))

    async def run() -> None:
        outcomes: list[str] = []
        flood: list[asyncio.Task[Any]] = []
        # Wave 1: 1,200 hellos that follow retries and then stay silent: more than the table holds.
        for k in range(1200):
            flood.append(asyncio.create_task(follower(responder, claims[k % 4], flood_peers[k % addresses], outcomes)))
        t = time.monotonic()
        while len(outcomes) < 1200 and time.monotonic() - t < 60:
            await asyncio.sleep(0.01)
        assert store.pending_count() == limits.max_pending_total, "the flood filled the half-open table"
        # Wave 2 (800 more, half of them blind) runs while the legitimate initiator authenticates.
        for k in range(800):
            fn = blind if k % 2 else follower
            flood.append(asyncio.create_task(fn(responder, claims[k % 4], flood_peers[k % addresses], outcomes)))
        started = time.monotonic()
        results: list[Established] = []
        for _ in range(3):
            link = Link(responder, LEGIT)
            results.append(await initiator.initiate(link.recv, link.send, expect_peer=s.b.did, timeout_ms=10_000))
        took = time.monotonic() - started
        while len(outcomes) < 2000 and time.monotonic() - t < 60:
            await asyncio.sleep(0.01)
        assert len(outcomes) == 2000
        print(addresses, "addresses:", Counter(outcomes), f"legitimate handshakes {took * 1000:.0f} ms")
        assert all(r.peer_did == s.b.did for r in results)
        assert took < 5.0, f"the legitimate handshakes took {took:.1f} s"
        # The bounds held throughout: never more than the table's worth of half-open handshakes,
        # never more than the per-address bound from one address, and blind hellos under load
        # cost no storage at all (two used-nonce rows per challenge issued, none per Retry).
        assert store.pending_count() <= limits.max_pending_total
        assert max(store.pending_count(p) for p in set(flood_peers)) <= limits.max_pending_per_peer
        challenges = outcomes.count("Challenge") + len(results)
        assert len(store) == 2 * challenges, (len(store), challenges)
        assert outcomes.count("Retry") == 400, "every blind hello under load got a Retry, and nothing else"
        served = [t for f in flood for t in f.result()]
        live = [t for t in served if not t.done()]
        assert len(live) <= limits.max_pending_total, "challenges that lost their place ended at once"
        for task in live:
            task.cancel()
        await asyncio.gather(*live, return_exceptions=True)

    asyncio.run(run())


# --------------------------------------------------------------------------
# Over gRPC on loopback
# --------------------------------------------------------------------------


async def _hold(address: str, ident: Any, calls: list[Any], outcomes: list[str]) -> None:
    """A flooding task: opens half-open handshakes on one channel (following retries) and holds them."""
    async with grpc.aio.insecure_channel(address) as ch:
        for _ in range(10):
            ini = Initiator(me(ident), "local", Fresh.draw(os.urandom), MemoryNonceStore())
            hello = ini.hello(wall_ms())
            for _attempt in range(2):
                call = ch.stream_stream(METHOD)(timeout=30)
                calls.append(call)
                await call.write(encode(hello))
                try:
                    outcomes.append(type(decode(await call.read())).__name__)
                    break
                except grpc.aio.AioRpcError as err:
                    raw = (err.trailing_metadata() or {}).get(getattr(wire, "RETRY_TRAILER_KEY", "-"))  # type: ignore[union-attr]
                    if raw is None:
                        outcomes.append(err.code().name)
                        break
                    hello = ini.retry(decode(raw), wall_ms())  # type: ignore[attr-defined]
        await asyncio.sleep(30)  # hold everything open (cancelled by the test)


def test_a_loopback_flood_from_several_tasks_does_not_lock_out_a_legitimate_initiator(
    shared_node: RunningNode, client: Client, tmp_path: Path  # noqa: F811
) -> None:
    a, b = make(client), make(client)
    flooders = [make(client) for _ in range(6)]
    limits = HandshakeLimits(max_pending_total=48)
    sock_dir = tempfile.mkdtemp(prefix="dn", dir="/tmp")

    async def run() -> None:
        store = LmdbNonceStore(tmp_path / "dev", wall_ms(), limits)
        async with AsyncClient(shared_node.address) as nc:
            responder = await device_responder(me(a), nc, nonces=store, trust=trust_of(shared_node))
            server = grpc.aio.server()
            add_auth_responder(server, responder)
            port = server.add_insecure_port("127.0.0.1:0")
            server.add_insecure_port(f"unix:{sock_dir}/s")
            await server.start()
            holders: list[asyncio.Task[None]] = []
            calls: list[Any] = []
            outcomes: list[str] = []
            try:
                for f in flooders:  # 6 tasks x 10 half-open handshakes from 127.0.0.1: more than the table holds
                    holders.append(asyncio.create_task(_hold(f"127.0.0.1:{port}", f, calls, outcomes)))
                t = time.monotonic()
                while len(outcomes) < 60 and time.monotonic() - t < 20:
                    await asyncio.sleep(0.02)
                assert store.pending_count() == limits.max_pending_total
                auth = Authenticator(me(b), "local", ClientKeyStates(nc, trust_of(shared_node)))
                started = time.monotonic()
                for _ in range(3):
                    est = await auth.authenticate(f"unix:{sock_dir}/s", expect_peer=a.did, timeout=10)
                    assert est.peer_did == a.did
                assert time.monotonic() - started < 5.0
                await auth.close()
                assert store.pending_count() <= limits.max_pending_total
            finally:
                for h in holders:
                    h.cancel()
                await asyncio.gather(*holders, return_exceptions=True)
                await server.stop(0)
                store.close()
                shutil.rmtree(sock_dir, ignore_errors=True)

    asyncio.run(asyncio.wait_for(run(), 60))


def test_retries_to_an_address_of_blind_hellos_are_held_and_an_initiator_is_answered_at_once() -> None:
    """An address that keeps sending hellos without bringing their cookies back gets its Retry only after
    ``retry_hold_ms`` (its call stays open, so it cannot send the next hello at once); an initiator, which
    resends each hello with its cookie at once, is never held, however many handshakes it makes."""
    s = Setup()
    party = dataclasses.replace(s.party(s.b), nonces=MemoryNonceStore(HandshakeLimits(cookie_threshold=0)))  # always under load
    responder = HandshakeResponder(ResponderSetup(party, retry_hold_ms=400))
    threshold = int(responder.blind.threshold)
    initiator = HandshakeInitiator(s.party(s.a))
    claim = s.w.local(s.a)
    flooder = "ipv4:203.0.113.50"

    async def handshake() -> float:
        t = time.monotonic()
        link = Link(responder, LEGIT)
        est = await initiator.initiate(link.recv, link.send, expect_peer=s.b.did, timeout_ms=10_000)
        assert est.peer_did == s.b.did
        return time.monotonic() - t

    async def run() -> None:
        outcomes: list[str] = []
        took = [await handshake() for _ in range(threshold + 4)]  # each one through a Retry and its cookie
        assert responder.party.stats["RETRY_HELD"] == 0 and max(took) < 0.4, took
        for _ in range(threshold):  # the first blind hellos of an address: answered at once
            t = time.monotonic()
            await blind(responder, claim, flooder, outcomes)
            assert time.monotonic() - t < 0.4
        assert responder.party.stats["RETRY_HELD"] == 0
        t = time.monotonic()
        await blind(responder, claim, flooder, outcomes)  # over the threshold: held
        assert time.monotonic() - t >= 0.39 and responder.party.stats["RETRY_HELD"] == 1
        assert outcomes == ["Retry"] * (threshold + 1)
        # The flooding address is held; the initiator's address is still answered at once.
        assert await handshake() < 0.4 and responder.party.stats["RETRY_HELD"] == 1

    asyncio.run(run())
