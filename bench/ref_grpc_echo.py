"""Reference: a plain gRPC echo server's unary and streaming rates (the transport's own ceiling).

The server is grpc.aio in its own process (as ``didnode serve`` is), with the
node's server options and generic handlers that take and return raw bytes
(no protobuf, no generated code): ``/bench.Echo/Unary`` returns the request,
``/bench.Echo/Stream`` echoes every message of a bidirectional stream.

The client is one grpc.aio channel in this process:
  * unary: --concurrency tasks calling back to back for --seconds (the same
    loop bench/resolve.py drives the node's Resolve with);
  * streaming: one bidirectional stream, messages written as fast as flow
    control lets them, each echoed message counted.
Messages are --size bytes (default 100, about a Resolve request).

Last line: one JSON object {"unary_per_s", "unary_p50_ms", "unary_p99_ms", "stream_msgs_per_s", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import AsyncIterator

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit  # noqa: E402
from serving import LoadResult, load_loop, serve_on_loopback, start_server_script, stop_process  # noqa: E402

UNARY = "/bench.Echo/Unary"
STREAM = "/bench.Echo/Stream"


async def _unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """The request, unchanged."""
    return request


async def _stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    """Every message, unchanged, as it arrives."""
    async for msg in requests:
        yield msg


async def serve() -> None:
    """Serve the echo service on 127.0.0.1 (free port, printed on stdout) until SIGTERM."""
    from didnode.transport.server import SERVER_OPTIONS  # the node's transport settings

    server = grpc.aio.server(options=SERVER_OPTIONS)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.stream_stream_rpc_method_handler(_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    await serve_on_loopback(server)


def start_echo_server() -> tuple[subprocess.Popen[str], str]:
    """This script with --serve in a subprocess; returns it and its address."""
    return start_server_script(os.path.abspath(__file__))


async def measure_unary(address: str, seconds: float, concurrency: int, size: int) -> LoadResult:
    """Unary echo calls/s and latency with ``concurrency`` callers on one channel."""
    payload = os.urandom(size)
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(UNARY)
        # exactly the loop, warm-up and indexing bench/resolve.py drives Resolve with (i is unused here)
        return await load_loop(lambda i: call(payload), seconds, concurrency, warmup=0.5, index="call")


async def measure_stream(address: str, seconds: float, size: int) -> float:
    """Echoed messages/s over one bidirectional stream."""
    payload = os.urandom(size)
    async with grpc.aio.insecure_channel(address) as channel:
        stop = time.perf_counter() + seconds

        async def requests() -> AsyncIterator[bytes]:
            while time.perf_counter() < stop:
                yield payload

        t = time.perf_counter()
        n = 0
        async for _ in channel.stream_stream(STREAM)(requests()):
            n += 1
        return n / (time.perf_counter() - t)


def measure(seconds: float, concurrency: int, size: int) -> dict[str, float]:
    """Start the server, measure unary and streaming, stop it; the figures."""
    proc, address = start_echo_server()
    try:
        unary = asyncio.run(measure_unary(address, seconds, concurrency, size))
        stream = asyncio.run(measure_stream(address, seconds, size))
    finally:
        stop_process(proc)
    return {
        "unary_per_s": unary.rate,
        "unary_p50_ms": unary.p50_ms,
        "unary_p99_ms": unary.p99_ms,
        "stream_msgs_per_s": stream,
    }


def main() -> None:
    """Measure and emit, or (--serve) be the server."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds for unary and again for streaming")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent unary callers")
    ap.add_argument("--size", type=int, default=100, help="message bytes")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    figures = measure(args.seconds, args.concurrency, args.size)
    print(
        f"echo unary: {figures['unary_per_s']:,.0f}/s (p50 {figures['unary_p50_ms']:.2f} ms, p99 {figures['unary_p99_ms']:.2f} ms, "
        f"{args.concurrency} callers); one bidi stream: {figures['stream_msgs_per_s']:,.0f} msgs/s",
        file=sys.stderr,
    )
    emit({"concurrency": args.concurrency, "size": args.size, "seconds": args.seconds, **figures})


if __name__ == "__main__":
    main()
