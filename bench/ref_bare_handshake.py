"""Reference: the bare protocol, the floor under didnode's mutual handshake on this machine.

The same four messages over a grpc.aio bidirectional stream, and the same
cryptography per side as didnode's handshake (an ephemeral X25519 key pair,
one X25519 shared secret, one Ed25519 signature and one verification of the
transcript, HKDF-SHA256 and HMAC-SHA256 key confirmation), with nothing
else: no protobuf, no message validation, no ledger key checks (each side
knows the other's public key in advance), no nonce stores, no policy, no
deadlines, no error statuses. It is what issue #5 calls "a bare prototype of
this protocol over grpc.aio": measured in the same run as didnode's handshake
it turns that issue's absolute target (1,500/s where the prototype made about
1,750/s) into a ratio that holds on any machine (about 0.86).

Two carriages, as didnode has: ``stream`` (all four messages are stream
messages: the prototype the issue speaks of) and ``headers`` (hello in the
request headers, challenge in the response headers, session in the trailer,
only the response a stream message: what didnode's ``HandshakeInHeaders``
does). The first is the issue's yardstick; against the second, the
difference is what didnode's ledger checks, nonce stores, protobuf, policy
and error handling cost, since both then make the same gRPC operations.

The server is grpc.aio in its own process (as ``didnode serve`` is) with the
node's server options, one generic stream-stream method taking raw bytes. The
initiators are ``--concurrency`` asyncio tasks in this process, one channel
each, reused across handshakes, as bench/auth.py's didnode initiators are.

Messages (bytes, fixed layout):
  1. hello     I -> R: initiator index (2) | nonce_i (32) | eph_i (32)
  2. challenge R -> I: nonce_r (32) | eph_r (32) | sig_r (64) | mac_r (32)
  3. response  I -> R: sig_i (64) | mac_i (32)
  4. session   R -> I: mac_s (32)
The transcript hash covers both identities' keys, both nonces, both
ephemeral keys and the role; sig_r/sig_i sign it with a role label;
mac_r/mac_i/mac_s are HMACs under keys HKDF'd from the X25519 secret and
the transcript hash.

Last line: one JSON object {"bare_handshakes_per_s", "bare_p50_ms", "bare_p99_ms",
"bare_cpu_ms_per_handshake_server", "bare_cpu_ms_per_handshake_initiators", and the same
named "bare_headers_..." for the headers carriage}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
from typing import Any, Awaitable, Callable

import grpc
from nacl.exceptions import BadSignatureError
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base, crypto_sign, crypto_sign_open, crypto_sign_seed_keypair

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402
from serving import Tally, load_loop, serve_on_loopback, start_server_script, stop_process  # noqa: E402

SERVICE = "bench.Bare"
# Two carriages, as didnode has (docs/authentication.md, "On the wire"): every message a stream
# message, or hello / challenge / session in request headers / response headers / trailer.
METHODS = {"stream": f"/{SERVICE}/Handshake", "headers": f"/{SERVICE}/HandshakeInHeaders"}
HELLO_KEY, CHALLENGE_KEY, SESSION_KEY = "bare-hello-bin", "bare-challenge-bin", "bare-session-bin"
NETWORK = b"bench"
# Deterministic identities, so that the server process and the initiators agree on every public key
# without exchanging them (the bare protocol has no key lookup).
RESPONDER_SEED = hashlib.sha256(b"bare responder").digest()


def initiator_seed(i: int) -> bytes:
    return hashlib.sha256(b"bare initiator %d" % i).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def _keys(shared: bytes, th: bytes) -> tuple[bytes, bytes, bytes]:
    """HKDF-SHA256 (extract, then one expand block per key): responder, initiator and session MAC keys."""
    prk = _hmac(th, shared)
    return _hmac(prk, b"r\x01"), _hmac(prk, b"i\x01"), _hmac(prk, b"s\x01")


def _transcript(pk_i: bytes, pk_r: bytes, hello: bytes, nonce_r: bytes, eph_r: bytes) -> bytes:
    return hashlib.sha256(b"bare/1" + NETWORK + pk_i + pk_r + hello + nonce_r + eph_r).digest()


class BadHandshake(Exception):
    """A message that does not check out (never expected in the benchmark)."""


# --------------------------------------------------------------------------
# responder (its own process)
# --------------------------------------------------------------------------


async def serve(initiators: int) -> None:
    """Serve the bare handshake on 127.0.0.1 (free port, printed on stdout) until SIGTERM."""
    from didnode.transport.server import SERVER_OPTIONS  # the node's transport settings

    pk_r, sk_r = crypto_sign_seed_keypair(RESPONDER_SEED)
    peers = [crypto_sign_seed_keypair(initiator_seed(i))[0] for i in range(initiators)]

    def challenge(hello: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """(challenge message, transcript hash, initiator's key, its MAC key, the session MAC key)."""
        pk_i = peers[int.from_bytes(hello[:2], "big")]
        nonce_r, secret = os.urandom(32), os.urandom(32)
        eph_r = crypto_scalarmult_base(secret)
        th = _transcript(pk_i, pk_r, hello, nonce_r, eph_r)
        k_r, k_i, k_s = _keys(crypto_scalarmult(secret, hello[34:66]), th)
        sig_r = crypto_sign(b"responder" + th, sk_r)[:64]
        return nonce_r + eph_r + sig_r + _hmac(k_r, th), th, pk_i, k_i, k_s

    def check_response(response: bytes, th: bytes, pk_i: bytes, k_i: bytes) -> None:
        crypto_sign_open(response[:64] + b"initiator" + th, pk_i)
        if not hmac.compare_digest(response[64:96], _hmac(k_i, th)):
            raise BadHandshake("initiator MAC")

    async def in_stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
        msg, th, pk_i, k_i, k_s = challenge(await context.read())
        await context.write(msg)
        check_response(await context.read(), th, pk_i, k_i)
        await context.write(_hmac(k_s, th))

    async def in_headers(requests: Any, context: grpc.aio.ServicerContext) -> None:
        hello = dict(context.invocation_metadata())[HELLO_KEY]
        msg, th, pk_i, k_i, k_s = challenge(hello)
        await context.send_initial_metadata(((CHALLENGE_KEY, msg),))
        check_response(await context.read(), th, pk_i, k_i)
        context.set_trailing_metadata(((SESSION_KEY, _hmac(k_s, th)),))

    server = grpc.aio.server(options=SERVER_OPTIONS)
    handlers = {
        "Handshake": grpc.stream_stream_rpc_method_handler(in_stream),
        "HandshakeInHeaders": grpc.stream_stream_rpc_method_handler(in_headers),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    await serve_on_loopback(server)


def start_bare_server(initiators: int) -> tuple[subprocess.Popen[str], str]:
    """This script with --serve in a subprocess; returns it and its address."""
    return start_server_script(os.path.abspath(__file__), "--concurrency", str(initiators))


# --------------------------------------------------------------------------
# initiators (this process)
# --------------------------------------------------------------------------


def bare_initiators(
    address: str, concurrency: int, carriage: str = "stream"
) -> tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """(one(i): a complete bare handshake by initiator ``i``, close()); one channel per initiator.

    ``carriage``: ``stream`` (four stream messages) or ``headers`` (only the response is a stream message).
    """
    pk_r = crypto_sign_seed_keypair(RESPONDER_SEED)[0]
    keys = [crypto_sign_seed_keypair(initiator_seed(i)) for i in range(concurrency)]
    channels = [grpc.aio.insecure_channel(address) for _ in range(concurrency)]
    methods = [ch.stream_stream(METHODS[carriage]) for ch in channels]
    in_headers = carriage == "headers"

    async def one(i: int) -> None:
        try:
            await _one(i)
        except grpc.aio.AioRpcError as err:
            raise BadHandshake(f"the responder ended the call: {err.code().name} {err.details()}") from None
        except BadSignatureError:
            raise BadHandshake("the responder's transcript signature does not verify") from None

    async def _one(i: int) -> None:
        pk_i, sk_i = keys[i]
        secret = os.urandom(32)
        hello = i.to_bytes(2, "big") + os.urandom(32) + crypto_scalarmult_base(secret)
        if in_headers:
            call = methods[i](metadata=((HELLO_KEY, hello),))
            challenge = (await call.initial_metadata()).get(CHALLENGE_KEY)
            if not isinstance(challenge, bytes):
                await call.read()  # raises the responder's error status
                raise BadHandshake("no challenge in the response headers")
        else:
            call = methods[i]()
            await call.write(hello)
            challenge = await call.read()
        nonce_r, eph_r, sig_r, mac_r = challenge[:32], challenge[32:64], challenge[64:128], challenge[128:160]
        th = _transcript(pk_i, pk_r, hello, nonce_r, eph_r)
        crypto_sign_open(sig_r + b"responder" + th, pk_r)
        k_r, k_i, k_s = _keys(crypto_scalarmult(secret, eph_r), th)
        if not hmac.compare_digest(mac_r, _hmac(k_r, th)):
            raise BadHandshake("responder MAC")
        await call.write(crypto_sign(b"initiator" + th, sk_i)[:64] + _hmac(k_i, th))
        await call.done_writing()
        if in_headers:
            await call.read()  # EOF with an OK status, or raises the responder's error
            session = (await call.trailing_metadata()).get(SESSION_KEY)
        else:
            session = await call.read()
        if not isinstance(session, bytes) or not hmac.compare_digest(session, _hmac(k_s, th)):
            raise BadHandshake("session MAC")
        if await call.code() != grpc.StatusCode.OK:
            raise BadHandshake(f"status {await call.code()}")

    async def close() -> None:
        for ch in channels:
            await ch.close()

    return one, close


async def _measure(address: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """Both carriages in alternating rounds; figures ``bare_*`` (stream) and ``bare_headers_*``."""
    runs = {prefix: bare_initiators(address, args.concurrency, carriage) for prefix, carriage in (("bare", "stream"), ("bare_headers", "headers"))}
    tallies = {prefix: Tally(server_pid) for prefix in runs}
    try:
        for one, _ in runs.values():
            await load_loop(one, args.warmup, args.concurrency)  # warm-up: its figures are thrown away
        for _ in range(args.rounds):
            for prefix, (one, _) in runs.items():
                await tallies[prefix].round(args.seconds / args.rounds, one, args.concurrency)
    finally:
        for _, close in runs.values():
            await close()
    figures: dict[str, Any] = {}
    for prefix, tally in tallies.items():
        figures.update(bare_figures(prefix, tally.result()))
    return figures


def bare_figures(prefix: str, r: dict[str, Any]) -> dict[str, Any]:
    """A :class:`serving.Tally` result as this reference's JSON figures, named ``{prefix}_...``."""
    return {
        f"{prefix}_handshakes_per_s": r["rate"],
        f"{prefix}_p50_ms": r["p50"],
        f"{prefix}_p99_ms": r["p99"],
        f"{prefix}_cpu_ms_per_handshake_server": r["cpu"][0],
        f"{prefix}_cpu_ms_per_handshake_initiators": r["cpu"][1],
    }


def main() -> None:
    """Measure and emit, or (--serve) be the server."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per carriage, split into --rounds alternating rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent initiators (distinct identities)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.concurrency))
        return
    proc, address = start_bare_server(args.concurrency)
    try:
        figures = asyncio.run(_measure(address, proc.pid, args))
    finally:
        stop_process(proc)
    for prefix, label in (("bare", "bare, stream messages:"), ("bare_headers", "bare, in headers:     ")):
        print(
            f"{label} {figures[prefix + '_handshakes_per_s']:,.0f}/s  p50 {figures[prefix + '_p50_ms']:.2f} ms  "
            f"p99 {figures[prefix + '_p99_ms']:.2f} ms  (CPU per handshake: server {figures[prefix + '_cpu_ms_per_handshake_server']:.2f} ms, "
            f"initiators {figures[prefix + '_cpu_ms_per_handshake_initiators']:.2f} ms)",
            file=sys.stderr,
        )
    emit({"concurrency": args.concurrency, "seconds": args.seconds, **figures})


if __name__ == "__main__":
    main()
