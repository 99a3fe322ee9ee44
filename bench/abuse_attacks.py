"""The attacker of bench/abuse.py: one process running one flood against a node on loopback, bounded in count and time.

Run as ``python bench/abuse_attacks.py KIND ADDRESS --seconds S``; it prints
one JSON line of what it did (calls sent, refused, held) and exits by itself
after ``--seconds`` (or on SIGTERM). Every flood comes from its own source
addresses in 127.0.0.0/8 (127.0.0.10 and up), so that a node that keeps
per-peer bounds can tell the attacker from the legitimate clients on
127.0.0.1: a grpc channel cannot choose its source address, so gRPC floods go
through a small relay in this process that binds its upstream sockets to
them.

Kinds:

* ``submit-flood``: as many concurrent ``Submit`` calls as 64 callers make,
  each a well-formed create with a wrong signature (the node parses and
  verifies it, then refuses it);
* ``large-submits``: 160 concurrent ``Submit`` calls of 15 MiB each, again and
  again (the node must refuse them without holding them in memory);
* ``idle-connections``: up to ``--connections`` TCP connections that send
  nothing, held open;
* ``idle-streams``: ``SubmitBatch`` streams that send nothing, 200 per
  channel over 10 channels;
* ``hello-flood``: half-open handshakes: valid hellos from a real DID, whose
  challenge is read and never answered, from 20 source addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys
import time
from typing import Any, Awaitable, Callable

import grpc
from nacl.signing import SigningKey

from didnode.api.v1 import ledger_pb2 as pb
from didnode.api.v1 import ledger_pb2_grpc
from didnode.client import Client
from didnode.core import builder
from didnode.core.handshake.machine import Fresh, Initiator, LocalIdentity
from didnode.core.handshake.nonces import MemoryNonceStore
from didnode.wire.handshake import METHOD, decode, encode

FIRST_SOURCE = 10  # 127.0.0.10 and up: never the legitimate clients' 127.0.0.1
MAX_MESSAGE = 32 * 1024 * 1024


class Relay:
    """A TCP relay on 127.0.0.1:<port> whose upstream connections to the node come from ``source``."""

    def __init__(self, upstream: tuple[str, int], source: str) -> None:
        self.upstream = upstream
        self.source = source
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> "Relay":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream, local_addr=(self.source, 0))
        except OSError:
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(1 << 20):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the flood is over: its loop is closing

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def source(i: int) -> str:
    return f"127.0.0.{FIRST_SOURCE + i}"


async def relays(address: str, n: int) -> list[Relay]:
    host, _, port = address.rpartition(":")
    return [await Relay((host, int(port)), source(i)).start() for i in range(n)]


def channel(relay: Relay) -> grpc.aio.Channel:
    opts = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
    return grpc.aio.insecure_channel(f"127.0.0.1:{relay.port}", options=opts)


def forged_create() -> bytes:
    """A well-formed create whose proof does not verify: costs the node a parse and a signature check."""
    key = SigningKey.generate()
    unsigned = builder.create("local", [builder.NewKey("key-1", bytes(key.verify_key))], bytes(SigningKey.generate().verify_key))
    op = builder.sign(unsigned, [(f"{unsigned.did}#key-1", key)])
    bad = bytes(op.proofs[0].signature[:-1]) + bytes([op.proofs[0].signature[-1] ^ 1])
    return pb.SubmitRequest(operation=pb.Operation(payload=op.payload, proofs=[pb.Proof(kid=op.proofs[0].kid, signature=bad)])).SerializeToString()


class Counts:
    """What the flood did: calls sent, refused by the node (any status), held open at most at once."""

    def __init__(self) -> None:
        self.sent = 0
        self.refused = 0
        self.codes: dict[str, int] = {}
        self.held = 0
        self.max_held = 0

    def refuse(self, code: str) -> None:
        self.refused += 1
        self.codes[code] = self.codes.get(code, 0) + 1

    def hold(self, delta: int) -> None:
        self.held += delta
        self.max_held = max(self.max_held, self.held)


async def run_callers(n: int, stop_at: float, one: Callable[[int], Awaitable[None]]) -> None:
    async def caller(i: int) -> None:
        while time.monotonic() < stop_at:
            await one(i)

    await asyncio.gather(*(caller(i) for i in range(n)))


async def submit_flood(address: str, stop_at: float, counts: Counts, callers: int = 64, size: int = 0) -> None:
    rs = await relays(address, 4)
    chans = [channel(r) for r in rs]
    calls = [c.unary_unary("/didnode.v1.LedgerService/Submit") for c in chans]
    if size:  # one large body, sent again and again: the node must not hold many copies of it
        bodies = [pb.SubmitRequest(operation=pb.Operation(payload=b"x" * size)).SerializeToString()]
    else:
        bodies = [forged_create() for _ in range(64)]

    async def one(i: int) -> None:
        counts.sent += 1
        try:
            await calls[i % len(calls)](bodies[counts.sent % len(bodies)], timeout=30)
        except grpc.aio.AioRpcError as err:
            counts.refuse(err.code().name)

    try:
        await run_callers(callers, stop_at, one)
    finally:
        for c in chans:
            await c.close()
        for r in rs:
            r.close()


async def idle_connections(address: str, stop_at: float, counts: Counts, limit: int) -> None:
    host, _, port = address.rpartition(":")
    socks: list[socket.socket] = []
    try:
        i = 0
        while len(socks) < limit and time.monotonic() < stop_at:
            s = socket.socket()
            s.setblocking(False)
            try:
                s.bind((source(i % 200), 0))
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, (host, int(port))), 2)
            except (OSError, asyncio.TimeoutError) as exc:
                s.close()
                counts.refuse(type(exc).__name__)
                if counts.refused > 200:
                    break
                continue
            socks.append(s)
            counts.sent += 1
            counts.hold(1)
            i += 1
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        alive = 0
        for s in socks:  # which of them did the node close meanwhile?
            try:
                alive += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        counts.held = alive
    finally:
        for s in socks:
            s.close()


async def idle_streams(address: str, stop_at: float, counts: Counts) -> None:
    rs = await relays(address, 10)
    chans = [channel(r) for r in rs]
    calls: list[Any] = []
    try:
        for c in chans:
            stub = ledger_pb2_grpc.LedgerServiceStub(c)
            for _ in range(200):
                queue: asyncio.Queue[Any] = asyncio.Queue()

                async def never(q: asyncio.Queue[Any] = queue) -> Any:
                    yield await q.get()

                calls.append(stub.SubmitBatch(never()))
                counts.sent += 1
        counts.hold(len(calls))
        closed = 0

        async def watch(call: Any) -> None:
            nonlocal closed
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as err:
                counts.refuse(err.code().name)
            closed += 1

        watchers = [asyncio.ensure_future(watch(call)) for call in calls]
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        counts.held = len(calls) - closed
        for w in watchers:
            w.cancel()
    finally:
        for call in calls:
            call.cancel()
        for c in chans:
            await c.close()
        for r in rs:
            r.close()


async def hello_flood(address: str, stop_at: float, counts: Counts, addresses: int = 20, per_address: int = 64) -> None:
    """Half-open handshakes from ``addresses`` sources, ``per_address`` at a time each, renewed as the node drops them."""
    key = SigningKey.generate()
    unsigned = builder.create("local", [builder.NewKey("key-1", bytes(key.verify_key))], bytes(SigningKey.generate().verify_key))
    with Client(address) as client:
        client.submit(builder.sign(unsigned, [(f"{unsigned.did}#key-1", key)]))
    me = LocalIdentity.from_signing_key(unsigned.did, "key-1", key)
    nonces = MemoryNonceStore()
    rs = await relays(address, addresses)
    chans = [channel(r) for r in rs]
    opens = [c.stream_stream(METHOD) for c in chans]

    async def one(i: int) -> None:
        hello = Initiator(me, "local", Fresh.draw(os.urandom), nonces).hello(int(time.time() * 1000))
        call = opens[i % addresses](timeout=30)
        counts.sent += 1
        try:
            await call.write(encode(hello))
            first = await call.read()
            if first is grpc.aio.EOF:
                counts.refuse("EOF")
                return
            decode(first)  # a challenge (or whatever the node asks first): never answered
            counts.hold(1)
            try:
                await call.code()  # held until the node ends it (its handshake time limit) or we stop
            finally:
                counts.hold(-1)
        except grpc.aio.AioRpcError as err:
            counts.refuse(err.code().name)
        except Exception as exc:  # noqa: BLE001 - an attacker counts what it got, whatever it was
            counts.refuse(type(exc).__name__)
        finally:
            call.cancel()

    try:
        await run_callers(addresses * per_address, stop_at, one)
    finally:
        for c in chans:
            await c.close()
        for r in rs:
            r.close()


KINDS = ("submit-flood", "large-submits", "idle-connections", "idle-streams", "hello-flood")


async def attack(kind: str, address: str, seconds: float, connections: int) -> Counts:
    counts = Counts()
    stop_at = time.monotonic() + seconds
    work = {
        "submit-flood": lambda: submit_flood(address, stop_at, counts),
        "large-submits": lambda: submit_flood(address, stop_at, counts, callers=160, size=15 * 1024 * 1024),
        "idle-connections": lambda: idle_connections(address, stop_at, counts, connections),
        "idle-streams": lambda: idle_streams(address, stop_at, counts),
        "hello-flood": lambda: hello_flood(address, stop_at, counts),
    }[kind]
    task = asyncio.ensure_future(work())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await asyncio.wait_for(task, seconds + 15)  # bounded whatever the node does
    except (asyncio.CancelledError, asyncio.TimeoutError):
        pass
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("address")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=5000, help="idle-connections: how many to hold at most")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    counts = asyncio.run(attack(args.kind, args.address, args.seconds, min(args.connections, hard - 200)))
    print(json.dumps({"kind": args.kind, "sent": counts.sent, "refused": counts.refused, "codes": counts.codes, "held_at_end": counts.held, "max_held": counts.max_held}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
