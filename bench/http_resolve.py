"""Resolution over the node's HTTP face beside gRPC, in the same run (bench/resolve.py uses it).

:func:`http_vs_grpc` loads one node (started with ``--http``) in alternating
rounds: raw gRPC ``Resolve`` on one channel (as ``resolve_load`` does) and
``GET /1.0/identifiers/{did}`` (``Accept: application/did-resolution``) over
HTTP/1.1 keep-alive connections (one per caller, aiohttp's client), each with
the same callers, DIDs and round length, so both see the same background
load. Neither client parses the JSON: each keeps the reply's bytes. The
figures are the rounds' totals, with the CPU time per resolve of this process
(the client) and of the node, which background load moves less than rates.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import aiohttp
import grpc
from serving import alternating_loads

from didnode.api.v1 import ledger_pb2, ledger_pb2_grpc


async def http_vs_grpc(address: str, base: str, node_pid: int, dids: list[str], seconds: float, concurrency: int, rounds: int) -> dict[str, Any]:
    """``http_resolve_*`` and ``grpc_resolve_*`` (per second, p50 and p99 in ms, CPU us per resolve) and
    ``http_vs_grpc_ratio`` (HTTP resolves/s over gRPC resolves/s; issue #16's target: at least 0.8)."""
    requests = [ledger_pb2.ResolveRequest(did=d) for d in dids]
    urls = [f"{base}/1.0/identifiers/{d}" for d in dids]
    n = len(dids)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with grpc.aio.insecure_channel(address) as channel, aiohttp.ClientSession(
        connector=connector, headers={"Accept": "application/did-resolution"}
    ) as session:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)

        async def over_http(i: int) -> bytes:
            async with session.get(urls[i % n]) as reply:
                body = await reply.read()
                if reply.status != 200:
                    raise SystemExit(f"GET {urls[i % n]} answered {reply.status}: {body[:300]!r}")
                return body

        calls: dict[str, Callable[[int], Awaitable[object]]] = {"grpc": lambda i: stub.Resolve(requests[i % n]), "http": over_http}
        first = await over_http(0)
        if dids[0].encode() not in first:
            raise SystemExit(f"GET {urls[0]} returned {first[:300]!r}")
        out = await alternating_loads(calls, node_pid, seconds, concurrency, rounds)
    out["http_vs_grpc_ratio"] = out["http_resolve_per_s"] / out["grpc_resolve_per_s"]
    out["http_vs_grpc_node_cpu_ratio"] = out["grpc_node_cpu_us"] / out["http_node_cpu_us"]
    return out


__all__ = ["http_vs_grpc"]
