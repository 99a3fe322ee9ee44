"""Resolution over gRPC and durable apply throughput, against ledger size.

A node's data directory is grown through the node's own write path
(bench/ledger.py's Pipeline: verify pool + single group-committing writer,
both transparency trees). At each size of --sizes:

  * the last --apply-n creates that bring the ledger to that size are applied
    durably (fsync per batch, batches <= 8,192), timed: durable creates/s
    at that ledger size (the rest of the growth is not synced, not timed);
  * the LMDB space in use is read (pages of every database, node stopped);
  * ``didnode serve`` is started on the directory and --concurrency asyncio
    callers on one grpc.aio channel resolve DIDs drawn uniformly from the
    whole ledger, back to back, for --seconds: resolves/s and latency
    p50/p99 (the client sends ResolveRequest and keeps the response bytes
    it gets, as the echo reference does; it does not parse the JSON);
  * the node process's RSS is read after the load.

At the largest size, after the raw resolves and on the same node process,
the client library resolves the same DIDs for --verified-rounds alternating
rounds of --seconds/2 each: ``AsyncClient.resolve`` (unverified: the result
JSON parsed) and ``AsyncVerifiedClient.resolve`` (verified against a trust
policy taken from the node: docs/trust.md), each with --concurrency callers
on one channel: ``client_resolve_per_s``, ``verified_resolve_per_s`` (and
their p50/p99), ``verified_ratio`` (verified / unverified, the issue #15
target: at least 0.7), ``verified_vs_raw_ratio`` (verified / the raw
resolves above), and the CPU time per resolve of the client process and of
the node for each (``*_client_cpu_us``, ``*_node_cpu_us``) with
``verified_cpu_ratio`` (unverified CPU / verified CPU, both processes: what
the rate ratio would be on an otherwise idle machine where CPU is the bound).

At the largest size the node's HTTP face (``--http``) is loaded beside gRPC on the
same node process, in --http-rounds alternating rounds of --seconds/2 each:
raw gRPC ``Resolve`` and ``GET /1.0/identifiers/{did}`` (bench/http_resolve.py):
``http_resolve_per_s``, ``grpc_resolve_per_s`` (and their p50/p99, CPU per
resolve of client and node) and ``http_vs_grpc_ratio`` (issue #16's target: at
least 0.8).

With --echo the plain gRPC echo server (bench/ref_grpc_echo.py) is measured
right after the largest size, with the same client loop, concurrency and
duration (``echo_unary_per_s``, ``echo_unary_p50_ms``, ``echo_unary_p99_ms``),
and the ratio is reported: on a shared machine a reference measured minutes
apart can see a different background load.

Last line: one JSON object: the figures at the largest size, and
``points``: one object per size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit, make_creates  # noqa: E402
from http_resolve import http_vs_grpc  # noqa: E402
from serving import DidSample, LoadResult, alternating_loads, grow_ledger, lmdb_usage, load_loop, rss_mb, start_didnode, stop_process  # noqa: E402

import grpc  # noqa: E402

from didnode.api.v1 import ledger_pb2, ledger_pb2_grpc  # noqa: E402
from didnode.client import AsyncClient, Client  # noqa: E402
from didnode.client.trust import policy_from_node  # noqa: E402
from didnode.client.verified import AsyncVerifiedClient  # noqa: E402
from didnode.core.trust import TrustedLog  # noqa: E402
from didnode.service.node import Node, NodeConfig  # noqa: E402

NET = "local"


def log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)


async def resolve_load(address: str, dids: list[str], seconds: float, concurrency: int) -> LoadResult:
    """Resolves/s and latency of ``concurrency`` callers on one channel, DIDs taken round-robin from ``dids``."""
    requests = [ledger_pb2.ResolveRequest(did=d) for d in dids]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        first = await stub.Resolve(requests[0])
        got = json.loads(first.result_json)
        if got.get("didDocument", {}).get("id") != dids[0]:
            raise SystemExit(f"resolving {dids[0]} returned {first.result_json[:300]!r}")
        n = len(requests)
        return await load_loop(lambda i: stub.Resolve(requests[i % n]), seconds, concurrency, warmup=0.5, index="call")


async def client_loads(address: str, node_pid: int, dids: list[str], seconds: float, concurrency: int, rounds: int) -> dict[str, Any]:
    """Resolves through the client library, unverified (``AsyncClient.resolve``: the result JSON parsed) and
    verified (``AsyncVerifiedClient.resolve``: ``ResolveWithProof`` from the latest verified size, the
    checkpoint checked once, the state proof verified, the resolution recomputed from the proven record
    and compared), on one channel each, in ``rounds`` alternating rounds of ``seconds`` each (the same
    background load for both); the figures are the rounds' totals, with the CPU time per resolve of this
    process (the client) and of the node (``node_pid``), which background load moves less than rates."""
    with Client(address) as c:
        policy = policy_from_node(c)  # trust on first use: the benchmark trusts the node it started
        honest = c.resolve(dids[0])
    n = len(dids)
    async with AsyncClient(address) as ac:
        log = TrustedLog(policy)
        verified = AsyncVerifiedClient(ac, log)
        if await verified.resolve(dids[0]) != honest:
            raise SystemExit(f"the verified resolution of {dids[0]} differs from the node's")
        calls: dict[str, Callable[[int], Awaitable[object]]] = {
            "client": lambda i: ac.resolve(dids[i % n]),
            "verified": lambda i: verified.resolve(dids[i % n]),
        }
        out = await alternating_loads(calls, node_pid, seconds, concurrency, rounds)
    out["verified_ratio"] = out["verified_resolve_per_s"] / out["client_resolve_per_s"]
    out["verified_cpu_ratio"] = (out["client_client_cpu_us"] + out["client_node_cpu_us"]) / (out["verified_client_cpu_us"] + out["verified_node_cpu_us"])
    out["verified_signatures_checked"] = log.signatures_checked
    return out


def measure_point(data: Path, sample: list[str], seconds: float, concurrency: int, verified_rounds: int = 0, http_rounds: int = 0) -> dict[str, Any]:
    """Serve ``data`` with a fresh node (its HTTP face on), load it with resolves (and, with ``verified_rounds``,
    with the client library's unverified and verified resolves: :func:`client_loads`; with ``http_rounds``,
    with HTTP and gRPC resolves in alternating rounds: :func:`http_resolve.http_vs_grpc`), read its RSS, stop it."""
    proc, address = start_didnode(data, NET, extra=["--http", "127.0.0.1:0"])
    try:
        assert proc.stdout is not None
        http_base = proc.stdout.readline().strip()  # the HTTP face's URL: the second line
        res = asyncio.run(resolve_load(address, sample, seconds, concurrency))
        mem = rss_mb(proc.pid)
        extra = asyncio.run(client_loads(address, proc.pid, sample, seconds / 2, concurrency, verified_rounds)) if verified_rounds else {}
        if http_rounds:
            extra.update(asyncio.run(http_vs_grpc(address, http_base, proc.pid, sample, seconds / 2, concurrency, http_rounds)))
    finally:
        stop_process(proc)
    point = {"resolve_per_s": res.rate, "resolve_p50_ms": res.p50_ms, "resolve_p99_ms": res.p99_ms, "resolves": res.calls, **mem, **extra}
    if "verified_resolve_per_s" in extra:
        point["verified_vs_raw_ratio"] = extra["verified_resolve_per_s"] / res.rate
    return point


def main() -> None:
    """Grow the ledger through the sizes, measure at each, emit the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,50000,200000", help="comma-separated ledger sizes (DIDs) to measure at")
    ap.add_argument("--apply-n", type=int, default=5000, help="durable creates timed at each size (the last ones of its growth; 0: none)")
    ap.add_argument("--seconds", type=float, default=5.0, help="resolve load per size")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--sample", type=int, default=50_000, help="DIDs kept (uniform sample of the ledger) to resolve")
    ap.add_argument(
        "--verified-rounds", type=int, default=4, help="at the largest size: alternating rounds of --seconds/2 of unverified and verified client resolves (0: none)"
    )
    ap.add_argument(
        "--http-rounds", type=int, default=4, help="at the largest size: alternating rounds of --seconds/2 of gRPC and HTTP resolves (0: none)"
    )
    ap.add_argument("--echo", action="store_true", help="also measure the plain gRPC echo server (the reference) in this run")
    ap.add_argument("--dir", default=None, help="where to build the node data dir (default: a temp dir, removed after)")
    args = ap.parse_args()
    sizes = sorted(int(float(s)) for s in args.sizes.split(","))
    if args.apply_n >= sizes[0]:
        raise SystemExit(f"--apply-n ({args.apply_n}) must be smaller than the smallest size ({sizes[0]})")
    base = Path(args.dir or tempfile.mkdtemp(prefix="didnode-bench-resolve-"))
    data = base / "node"
    ledger_dir = data / "ledger"
    try:
        t = time.perf_counter()
        log(f"generating {sizes[-1]:,} creates ...")
        ops = [x[0] for x in make_creates(sizes[-1], NET)]
        log(f"  {time.perf_counter() - t:.1f}s")
        Node(NodeConfig(data_dir=str(data), network=NET)).close()  # genesis: the node DID at position 0
        sample = DidSample(args.sample)
        points: list[dict[str, Any]] = []
        have = 0
        for size in sizes:
            fill = ops[have : size - args.apply_n]
            timed = ops[size - args.apply_n : size]
            grow_ledger(ledger_dir, fill, sync=False)
            apply_rate = grow_ledger(ledger_dir, timed, sync=True) if timed else float("nan")
            sample.add(op.did for op in ops[have:size])
            have = size
            usage = lmdb_usage(ledger_dir)
            dids = int(usage["dids"])
            point: dict[str, Any] = {
                "dids": dids,
                "apply_per_s": apply_rate,
                "lmdb_used_bytes_per_did": usage["used_bytes"] / dids,
                "lmdb_file_bytes_per_did": usage["file_bytes"] / dids,
            }
            last = size == sizes[-1]
            point.update(
                measure_point(data, list(sample.items), args.seconds, args.concurrency, args.verified_rounds if last else 0, args.http_rounds if last else 0)
            )
            points.append(point)
            if "http_vs_grpc_ratio" in point:
                log(
                    f"{dids:>9,} DIDs, HTTP beside gRPC (alternating rounds): HTTP {point['http_resolve_per_s']:,.0f}/s "
                    f"(p50 {point['http_resolve_p50_ms']:.2f} ms, p99 {point['http_resolve_p99_ms']:.2f} ms), gRPC {point['grpc_resolve_per_s']:,.0f}/s "
                    f"(p50 {point['grpc_resolve_p50_ms']:.2f} ms, p99 {point['grpc_resolve_p99_ms']:.2f} ms): HTTP/gRPC {point['http_vs_grpc_ratio']:.2f}; "
                    f"node CPU per resolve {point['http_node_cpu_us']:.0f} us HTTP, {point['grpc_node_cpu_us']:.0f} us gRPC"
                )
            if "verified_ratio" in point:
                log(
                    f"{dids:>9,} DIDs, client library: resolve {point['client_resolve_per_s']:,.0f}/s unverified, "
                    f"{point['verified_resolve_per_s']:,.0f}/s verified (p50 {point['verified_resolve_p50_ms']:.2f} ms, "
                    f"p99 {point['verified_resolve_p99_ms']:.2f} ms): verified/unverified {point['verified_ratio']:.2f}, "
                    f"verified/raw {point['verified_vs_raw_ratio']:.2f}; CPU per resolve, client + node: "
                    f"{point['client_client_cpu_us']:.0f} + {point['client_node_cpu_us']:.0f} us unverified, "
                    f"{point['verified_client_cpu_us']:.0f} + {point['verified_node_cpu_us']:.0f} us verified (ratio {point['verified_cpu_ratio']:.2f})"
                )
            log(
                f"{dids:>9,} DIDs: durable creates {apply_rate:,.0f}/s; resolve {point['resolve_per_s']:,.0f}/s "
                f"p50 {point['resolve_p50_ms']:.2f} ms p99 {point['resolve_p99_ms']:.2f} ms; node RSS {point['rss_mb']:.0f} MB "
                f"(anon {point['rss_anon_mb']:.0f}, file {point['rss_file_mb']:.0f}); LMDB {point['lmdb_used_bytes_per_did']:,.0f} B/DID in use, "
                f"{point['lmdb_file_bytes_per_did']:,.0f} B/DID file"
            )
        figures: dict[str, Any] = {
            "sizes": sizes,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "apply_n": args.apply_n,
            **{k: v for k, v in points[-1].items()},
            "p99_growth": points[-1]["resolve_p99_ms"] / points[0]["resolve_p99_ms"],
            "points": points,
        }
        if args.echo:
            from ref_grpc_echo import measure

            echo = measure(args.seconds, args.concurrency, 100)
            figures.update({f"echo_{k}": v for k, v in echo.items()})
            figures["ratio_vs_echo"] = points[-1]["resolve_per_s"] / echo["unary_per_s"]
            log(f"echo unary in the same run: {echo['unary_per_s']:,.0f}/s; resolve/echo {figures['ratio_vs_echo']:.2f}")
        emit(figures)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
