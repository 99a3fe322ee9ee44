"""Operations on the HTTP face: /metrics (read by prometheus_client's own parser), /healthz, /readyz and the
gRPC health service, JSON logs, HTTPS with the gRPC certificate, and the limits (requests, connections).

The node-level tests run ``didnode serve --http``; the readiness states, the
internal-error and the overload answers use an in-process app over a real node
and a real loopback socket (states a subprocess cannot be put in on demand).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from didnode.client import Client
from didnode.errors import StorageFull
from didnode.http.app import HttpLimits, build_app
from didnode.http.metrics import NodeMetrics
from didnode.http.resolver import Resolver
from didnode.http.server import HttpServer
from didnode.ledger.cluster.config import ClusterStatus
from didnode.service.health import Readiness
from didnode.service.ledger import LedgerService
from didnode.service.node import Node, NodeConfig
from didnode.transport.readiness import READINESS_SERVICE, start_following
from didnode.transport.server import start_server
from didnode.transport.services import build_servicers
from tests.conftest import BIN, ROOT
from tests.factory import new_create
from tests.http.conftest import HttpNode, get, start_http_node
from tests.tlsfiles import make_pki

ID = "/1.0/identifiers/"


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict[str, Any], family: str, name: str, **labels: str) -> float:
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {name}{labels} in {family}: {fams[family].samples}")


# -- a real node ----------------------------------------------------------------


def test_metrics_parsed_by_prometheus_client(http_node: HttpNode, client: Client) -> None:
    ident, op = new_create()
    client.submit(op)
    with pytest.raises(Exception):
        client.submit(op)  # the same create again: rejected
    client.resolve(ident.did)
    assert get(http_node.base, ID + ident.did).status == 200
    assert get(http_node.base, ID + "did:web:x").status == 501
    r = get(http_node.base, "/metrics")
    assert r.status == 200 and r.content_type.startswith("text/plain")
    fams = families(r.body.decode())
    assert sample(fams, "didnode_submissions", "didnode_submissions_total", outcome="accepted") >= 1
    assert sum(s.value for s in fams["didnode_rejections"].samples) >= 1
    assert fams["didnode_batch_operations"].type == "histogram" and sample(fams, "didnode_batch_operations", "didnode_batch_operations_count") >= 1
    assert sample(fams, "didnode_batch_seconds", "didnode_batch_seconds_count") >= 1
    assert sample(fams, "didnode_store_commit_seconds", "didnode_store_commit_seconds_count") >= 1
    assert sample(fams, "didnode_rpc_seconds", "didnode_rpc_seconds_count", method="/didnode.v1.LedgerService/Resolve") >= 1
    assert sample(fams, "didnode_rpc_seconds", "didnode_rpc_seconds_count", method="/didnode.v1.LedgerService/Submit") >= 2
    assert sample(fams, "didnode_http_requests", "didnode_http_requests_total", route=ID + "{did_url}", status="200") >= 1
    assert sample(fams, "didnode_http_requests", "didnode_http_requests_total", route=ID + "{did_url}", status="501") >= 1
    assert sample(fams, "didnode_queue_depth", "didnode_queue_depth") == 0
    assert 0 < sample(fams, "didnode_lmdb_map_use_ratio", "didnode_lmdb_map_use_ratio") <= 1
    assert sample(fams, "didnode_lmdb_used_bytes", "didnode_lmdb_used_bytes") > 0
    assert sample(fams, "didnode_log_entries", "didnode_log_entries") >= 2
    assert sample(fams, "didnode_ready", "didnode_ready") == 1
    assert fams["didnode_handshakes"].type == "counter"
    assert sample(fams, "didnode_info", "didnode_info", network="local") == 1
    assert "didnode_cluster_lag_messages" not in fams  # embedded mode: no cluster


def test_health_and_readiness(http_node: HttpNode) -> None:
    r = get(http_node.base, "/healthz")
    assert r.status == 200 and r.json() == {"status": "alive"}
    r = get(http_node.base, "/readyz")
    assert r.status == 200 and r.json() == {"ready": True, "checks": {"store": "ok", "writable": "ok"}}
    with grpc.insecure_channel(http_node.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "didnode.readiness"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_json_logs_and_the_plaintext_rule(tmp_path: Path) -> None:
    n = start_http_node(tmp_path / "node", ["--log-format", "json", "--log-level", "info"])
    n.node.stop()
    assert n.node.proc.stderr is not None
    lines = [json.loads(line) for line in n.node.proc.stderr.read().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert any("HTTP face on http://127.0.0.1:" in x["message"] for x in lines)
    refused = subprocess.run(
        [str(BIN / "didnode"), "serve", "--data", str(tmp_path / "n2"), "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert refused.returncode == 1 and "INSECURE_LISTEN" in refused.stderr and "plaintext HTTP" in refused.stderr


def test_https_with_the_grpc_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    n = start_http_node(tmp_path / "node", pki.node_args())
    try:
        assert n.base.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(pki.pem("ca")))
        host, port = n.base.removeprefix("https://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b'"ready": true' in answer
    finally:
        n.node.stop()


# -- in process: states and limits --------------------------------------------------


def run_app(tmp_path: Path, body: Callable[[Node, LedgerService, str], Awaitable[None]], limits: HttpLimits = HttpLimits(), **patch: Any) -> None:
    """A real node (no worker processes) with an HTTP face on a loopback port; ``body(node, ledger, base)``."""

    async def main() -> None:
        node = Node(NodeConfig(data_dir=str(tmp_path / "node"), prepare_processes=0))
        ledger = LedgerService(node)
        readiness = Readiness(node, max_lag=100)
        resolver = Resolver(ledger)
        for name, value in patch.items():
            setattr(resolver, name, value)
        metrics = NodeMetrics(node, ledger, readiness)
        server = await HttpServer.start(build_app(resolver, readiness, metrics, limits), "127.0.0.1:0", limits)
        try:
            await body(node, ledger, f"http://127.0.0.1:{server.port}")
        finally:
            await server.stop()
            node.close()

    asyncio.run(main())


def test_readiness_states_and_grpc_health(tmp_path: Path) -> None:
    async def body(node: Node, ledger: LedgerService, base: str) -> None:
        grpc_server = await start_server(build_servicers(node, ledger), "127.0.0.1:0")
        follow = start_following(Readiness(node, max_lag=100), grpc_server, interval_s=0.05)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_server.port}")
        health = health_pb2_grpc.HealthStub(channel)

        async def overall() -> int:
            await asyncio.sleep(0.2)
            assert (await health.Check(health_pb2.HealthCheckRequest(service=""))).status == health_pb2.HealthCheckResponse.SERVING  # alive
            return (await health.Check(health_pb2.HealthCheckRequest(service=READINESS_SERVICE))).status  # type: ignore[no-any-return]

        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "/readyz") as r:
                    assert r.status == 200 and (await r.json())["ready"] is True
                assert await overall() == health_pb2.HealthCheckResponse.SERVING
                # A batch that could not commit (a full disk): not ready, with the reason, until one commits.
                node.orderer.last_error = StorageFull("cannot commit: No space left on device")  # type: ignore[attr-defined]
                async with http.get(base + "/readyz") as r:
                    doc = await r.json()
                    assert r.status == 503 and doc["ready"] is False and "STORAGE_FULL" in doc["checks"]["writable"]
                    assert doc["reason"].startswith("writable: the last batch did not commit")
                assert await overall() == health_pb2.HealthCheckResponse.NOT_SERVING
                async with http.get(base + "/metrics") as r:
                    assert "didnode_ready 0.0" in await r.text()
                node.orderer.last_error = None  # type: ignore[attr-defined]
                assert await overall() == health_pb2.HealthCheckResponse.SERVING
                # A cluster node far behind its stream: not ready until it has caught up to within the bound.
                jetstream, status = node.jetstream, node.cluster_status
                node.jetstream = object()  # type: ignore[assignment]
                node.cluster_status = lambda: ClusterStatus("S", True, 10, 5000, 4990, "")  # type: ignore[method-assign]
                try:
                    async with http.get(base + "/readyz") as r:
                        doc = await r.json()
                        assert r.status == 503 and doc["checks"]["cluster"].startswith("4990 stream messages behind")
                    async with http.get(base + "/metrics") as r:
                        fams = families(await r.text())
                        assert sample(fams, "didnode_cluster_lag_messages", "didnode_cluster_lag_messages") == 4990
                    assert await overall() == health_pb2.HealthCheckResponse.NOT_SERVING
                    node.cluster_status = lambda: ClusterStatus("S", False, 10, 10, 0, "NATS unreachable")  # type: ignore[method-assign]
                    async with http.get(base + "/readyz") as r:
                        assert (await r.json())["checks"]["cluster"] == "cannot order writes: NATS unreachable"
                    node.cluster_status = lambda: ClusterStatus("S", True, 4950, 5000, 50, "")  # type: ignore[method-assign]
                    async with http.get(base + "/readyz") as r:
                        assert r.status == 200
                finally:
                    node.jetstream, node.cluster_status = jetstream, status  # type: ignore[method-assign]
        finally:
            follow.cancel()
            await channel.close()
            await grpc_server.stop(0)

    run_app(tmp_path, body)


def test_an_internal_error_is_a_document_without_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug with a secret path /etc/shadow")

    async def body(node: Node, ledger: LedgerService, base: str) -> None:
        ledger.resource = lambda *a: (_ for _ in ()).throw(ZeroDivisionError("bug"))  # type: ignore[method-assign]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}{ID}{node.node_did}") as r:
                text = await r.text()
                assert r.status == 500 and r.headers["Content-Type"] == "application/did-resolution"
                err = json.loads(text)["didResolutionMetadata"]["error"]
                assert err["type"] == "https://www.w3.org/ns/did#INTERNAL_ERROR" and err["reason"] == "INTERNAL"
                assert "Traceback" not in text and "shadow" not in text
            async with http.get(f"{base}/status/{node.node_did}/revocation-1") as r:
                text = await r.text()
                assert r.status == 500 and r.headers["Content-Type"] == "application/problem+json"
                assert json.loads(text)["reason"] == "INTERNAL" and "Traceback" not in text and "bug" not in text

    with caplog.at_level("ERROR", logger="didnode.http"):
        run_app(tmp_path, body, dereference=broken)
    assert "Traceback" in caplog.text and "/etc/shadow" in caplog.text  # the node's log has it


def test_overload_is_503_with_retry_after(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def slow(*args: Any) -> Any:
        await release.wait()
        raise RuntimeError("never mind")

    async def body(node: Node, ledger: LedgerService, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            first = asyncio.ensure_future(http.get(f"{base}{ID}{node.node_did}"))
            await asyncio.sleep(0.2)
            async with http.get(f"{base}{ID}{node.node_did}") as r:
                doc = await r.json(content_type=None)
                assert r.status == 503 and r.headers["Retry-After"] == "1"
                assert doc["reason"] == "OVERLOADED" and r.headers["Content-Type"] == "application/problem+json"
            async with http.get(f"{base}/status/{node.node_did}/revocation-1") as r:
                assert r.status == 503  # the bound counts every route that reads the ledger
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200  # but the probes are answered
            release.set()
            (await first).release()

    run_app(tmp_path, body, HttpLimits(max_requests=1), dereference=slow)


def test_connection_bounds(tmp_path: Path) -> None:
    async def closed_within(port: int, seconds: float, send: bytes = b"") -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if send:
            writer.write(send)
        try:
            return await asyncio.wait_for(reader.read(), seconds) == b""
        except asyncio.TimeoutError:
            return False
        finally:
            writer.close()

    async def body(node: Node, ledger: LedgerService, base: str) -> None:
        port = int(base.rsplit(":", 1)[1])
        started = time.monotonic()
        assert await closed_within(port, 5)  # silent: closed after first_request_s
        assert 0.2 < time.monotonic() - started < 3
        assert await closed_within(port, 5, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # an unfinished request too
        # Two connections at most: a third is closed at once.
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 0.2) == b""
            writer.close()
        finally:
            for _, w in held:
                w.close()

    run_app(tmp_path, body, HttpLimits(first_request_s=0.3, max_connections=2))
