"""A node that cannot reach NATS keeps serving reads and says so: LedgerService health is
NOT_SERVING, NodeInfo.writable is false, Submit fails fast with CLUSTER_UNAVAILABLE; it
catches up when NATS returns (and so does a node restarted while NATS was away)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from didnode import errors
from didnode.client import Client, Receipt
from tests.cluster.conftest import health, info, start_cluster_node, start_nats, wait_converged, wait_until
from tests.factory import new_create
from tools.cluster import NatsCluster

NET = "outage"


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[NatsCluster]:
    # no_advertise: a client knows only the servers it is given, so one node can be cut off.
    cluster = start_nats(tmp_path / "nats", (NET,), no_advertise=True)
    yield cluster
    cluster.stop()


def test_node_without_nats_serves_reads_refuses_writes_then_catches_up(isolated: NatsCluster, tmp_path: Path) -> None:
    a = start_cluster_node(tmp_path / "a", isolated.urls[2:], NET)  # a reaches NATS through nats-3 only
    b = start_cluster_node(tmp_path / "b", isolated.urls[:2], NET)
    try:
        wait_converged([a, b])
        dids = []
        with Client(a.address) as c:
            for _ in range(20):
                ident, op = new_create(network=NET)
                c.submit(op)
                dids.append(ident.did)
        assert health(a) == "SERVING"

        isolated.kill9(2)
        wait_until("a to report NOT_SERVING for LedgerService", lambda: health(a) == "NOT_SERVING", timeout=20)
        assert health(a, "") == "SERVING", "the node itself (and its reads) still serve"
        state = info(a)
        assert state.mode == "cluster" and not state.writable and state.not_writable_reason
        with Client(a.address) as c:
            for did in dids:
                assert c.resolve(did)["didDocument"]["id"] == did
            t = time.monotonic()
            with pytest.raises(errors.ClusterUnavailable):
                c.submit(new_create(network=NET)[1])
            assert time.monotonic() - t < 1.0, "a submit fails fast while NATS is unreachable"

        # The rest of the cluster (two of three servers: still a quorum) keeps ordering writes.
        more = [new_create(network=NET)[1] for _ in range(50)]
        with Client(b.address, timeout=60) as c:
            outcomes = list(c.submit_batch(more, chunk_size=25))
        assert all(isinstance(o, Receipt) for o in outcomes), outcomes[:3]

        # Restarted while NATS is away, the node still serves its store.
        a.stop()
        a = start_cluster_node(a.data_dir, isolated.urls[2:], NET)
        assert health(a) == "NOT_SERVING"
        with Client(a.address) as c:
            assert c.resolve(dids[0])["didDocument"]["id"] == dids[0]
            with pytest.raises(errors.UnknownDid):
                c.resolve(more[0].did)

        isolated.start(2)
        isolated.wait_ready(30)
        wait_until("a to report SERVING again", lambda: health(a) == "SERVING", timeout=30)
        wait_converged([a, b])
        with Client(a.address) as c:
            assert c.resolve(more[-1].did)["didDocument"]["id"] == more[-1].did
            assert isinstance(c.submit(new_create(network=NET)[1]), Receipt)
    finally:
        a.stop()
        b.stop()
