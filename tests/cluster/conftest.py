"""Cluster fixtures: real nats-server processes (JetStream, R3, ``sync_interval: always``)
clustered on free loopback ports, and real ``didnode serve --nats`` subprocesses.

Every test cluster runs as ``make cluster`` does, with authentication: the
nodes log in as the node user, whose permissions cover only the networks the
cluster was started for (a module's ``NET``), so every test also shows that
those permissions suffice; operator actions (stream info, deleting,
publishing as a foreign writer) use the admin user. Helpers that take URLs
find the credentials of the cluster those URLs belong to.

Every wait here is bounded; every process started here is stopped here.
Tests sharing the module's NATS cluster use their own network (so their own
stream) and never assume an empty ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from didnode.api.v1 import transparency_pb2 as tpb
from didnode.api.v1 import transparency_pb2_grpc as tpb_grpc
from didnode.client import Client, NodeInfo
from didnode.ledger.stream import default_stream_name
from tests.conftest import RunningNode, start_node
from tools.cluster import ClusterAuth, NatsCluster

T = TypeVar("T")
LEDGER_SERVICE = "didnode.v1.LedgerService"



def wait_until(what: str, fn: Callable[[], T], timeout: float = 30.0, every: float = 0.05) -> T:
    """Poll ``fn`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T = fn()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(every)
        last = fn()
    return last


# Clusters started by start_nats, by client URL: whose credentials a URL needs.
_CLUSTERS: dict[str, NatsCluster] = {}


def cluster_of(urls: list[str]) -> NatsCluster | None:
    return _CLUSTERS.get(urls[0])


def admin(urls: list[str]) -> list[str]:
    """``urls`` carrying the admin user's credentials (unchanged for a cluster without authentication)."""
    cluster = cluster_of(urls)
    if cluster is None or cluster.auth is None:
        return urls
    return [cluster.auth.user_url(u, cluster.auth.admin_user) for u in urls]


def start_cluster_node(data_dir: Path, urls: list[str], network: str, extra: list[str] | None = None) -> RunningNode:
    """A didnode in cluster mode, logged in as the node user; returns once it serves (its own DID is on the ledger)."""
    cluster = cluster_of(urls)
    creds = cluster.node_args() if cluster is not None else []
    # Errors only: nobody reads the stderr pipe while the node runs, and a full pipe would block it.
    return start_node(data_dir, network=network, extra=["--nats", ",".join(urls), "--log-level", "error", *creds, *(extra or [])])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a didnode's verifier and preparer workers)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(c) for c in f.read().split()]
                out.extend(kids)
                todo.extend(kids)
        except OSError:
            pass
    return out


def kill9_node(node: RunningNode) -> None:
    """``kill -9`` a node, then its worker processes: a SIGKILL'd parent cannot stop them, and
    they would outlive the test."""
    kids = descendants(node.proc.pid)
    node.kill9()
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def info(node: RunningNode) -> NodeInfo:
    with Client(node.address, timeout=10) as c:
        return c.node_info()


def checkpoint(node: RunningNode) -> tuple[int, bytes, bytes]:
    """(tree size, log root, state root) of the node's latest checkpoint (TransparencyService)."""
    with grpc.insecure_channel(node.address) as ch:
        cp = tpb_grpc.TransparencyServiceStub(ch).GetCheckpoint(tpb.GetCheckpointRequest(), timeout=10)
    return cp.tree_size, cp.log_root, cp.state_root


def health(node: RunningNode, service: str = LEDGER_SERVICE) -> str:
    with grpc.insecure_channel(node.address) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def converged(nodes: list[RunningNode]) -> tuple[int, bytes, bytes] | None:
    """The common checkpoint once every node applied the whole stream and agrees; else None."""
    infos = [info(n) for n in nodes]
    seqs = {i.stream_seq for i in infos}
    if len(seqs) != 1 or any(i.lag for i in infos) or any(i.stream_seq < i.stream_last_seq for i in infos):
        return None
    cps = {checkpoint(n) for n in nodes}
    return cps.pop() if len(cps) == 1 else None


def wait_converged(nodes: list[RunningNode], timeout: float = 60.0) -> tuple[int, bytes, bytes]:
    return wait_until("the nodes to converge", lambda: converged(nodes), timeout, every=0.2)


def stream_info(urls: list[str], network: str) -> dict[str, object]:
    """JetStream's own view of the network's stream (leader, replicas, state)."""

    async def ask() -> dict[str, object]:
        import nats

        nc = await nats.connect(servers=admin(urls), connect_timeout=2, max_reconnect_attempts=2)
        try:
            msg = await nc.request(f"$JS.API.STREAM.INFO.{default_stream_name(network)}", b"", timeout=5)
            return json.loads(msg.data)  # type: ignore[no-any-return]
        finally:
            await nc.close()

    return asyncio.run(ask())


def js_request(urls: list[str], subject: str, body: dict[str, object] | None = None) -> dict[str, object]:
    """One JetStream API request (``$JS.API.<subject>``) as an operator (the admin user) would make it."""

    async def ask() -> dict[str, object]:
        import nats

        nc = await nats.connect(servers=admin(urls), connect_timeout=2, max_reconnect_attempts=2)
        try:
            msg = await nc.request("$JS.API." + subject, b"" if body is None else json.dumps(body).encode(), timeout=10)
            return json.loads(msg.data)  # type: ignore[no-any-return]
        finally:
            await nc.close()

    return asyncio.run(ask())


def publish_raw(urls: list[str], subject: str, body: bytes) -> int:
    """Publish as a foreign writer would (no didnode involved; the admin user); returns the stream sequence."""

    async def go() -> int:
        import nats

        nc = await nats.connect(servers=admin(urls), connect_timeout=2, max_reconnect_attempts=2)
        try:
            ack = await nc.jetstream(timeout=10).publish(subject, body)
            return int(ack.seq)
        finally:
            await nc.close()

    return asyncio.run(go())


def stream_leader(urls: list[str], network: str) -> str:
    def leader() -> str:
        data = stream_info(urls, network)
        return str(data.get("cluster", {}).get("leader", ""))  # type: ignore[union-attr]

    return wait_until("a stream leader", leader, timeout=30)


def start_nats(base: Path, networks: tuple[str, ...], no_advertise: bool = False, **kw: object) -> NatsCluster:
    """Three clustered nats-servers with authentication; the node user may order ``networks``."""
    auth = ClusterAuth.load_or_create(base / "auth", networks)
    cluster = NatsCluster.on_free_ports(base, no_advertise=no_advertise, auth=auth, **kw)
    cluster.start()
    try:
        cluster.wait_ready(30)
    except RuntimeError:
        cluster.stop()
        raise
    for url in cluster.urls:
        _CLUSTERS[url] = cluster
    return cluster


@pytest.fixture(scope="module")
def nats_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three clustered nats-servers shared by a test module (whose ``NET`` the node user may order)."""
    cluster = start_nats(tmp_path_factory.mktemp("nats"), (getattr(request.module, "NET", "local"),))
    yield cluster
    cluster.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/cluster starts real nats-servers: mark it (``-m "not cluster"`` skips it)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)
