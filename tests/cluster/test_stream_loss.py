"""The stream disappears under a running cluster (an administrator deletes it): every node
notices within seconds, says so (NodeInfo, LedgerService health NOT_SERVING) and refuses
writes at once with STREAM_MISSING instead of letting them hang until their deadline; it
never recreates the stream, not even when restarted. A stream recreated under the same name
is another history (another creation time): the nodes refuse it (STREAM_MISMATCH) and read
nothing from it. Reads keep working from the nodes' stores throughout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from didnode.client import Client, Receipt
from didnode.errors import DidnodeError, UnknownDid
from didnode.ledger import stream as st
from tests.cluster.conftest import checkpoint, health, info, js_request, publish_raw, start_cluster_node, wait_converged, wait_until
from tests.cluster.test_converge import submit_round_robin
from tests.conftest import RunningNode
from tests.factory import new_create
from tools.cluster import NatsCluster

NET = "streamloss"
STREAM = st.default_stream_name(NET)
ERR_STREAM_NOT_FOUND = 10059


def refused(node: RunningNode, reason: str) -> bool:
    i = info(node)
    return not i.writable and reason in i.not_writable_reason


def submit_fails_fast(node: RunningNode, reason: str, within: float) -> None:
    t = time.monotonic()
    with Client(node.address, timeout=30) as c:
        with pytest.raises(DidnodeError) as exc:
            c.submit(new_create(network=NET)[1])
    took = time.monotonic() - t
    assert exc.value.reason == reason, exc.value
    assert took < within, f"the submission took {took:.1f}s to fail"


def test_a_deleted_stream_stops_writes_and_a_recreated_one_is_refused(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    urls = nats_cluster.urls
    nodes = [start_cluster_node(tmp_path / f"n{i}", urls[i:] + urls[:i], NET) for i in range(2)]
    try:
        ops = [new_create(network=NET)[1] for _ in range(20)]
        outcomes = submit_round_robin(nodes, ops)
        assert all(isinstance(o, Receipt) for o in outcomes), [o for o in outcomes if not isinstance(o, Receipt)][:1]
        before = wait_converged(nodes)
        applied = info(nodes[0]).stream_seq

        resp = js_request(urls, f"STREAM.DELETE.{STREAM}")
        assert resp.get("success") is True, resp
        # A submission right after the delete fails with the typed reason, not at its 20 s deadline.
        submit_fails_fast(nodes[0], "STREAM_MISSING", within=5.0)
        for n in nodes:
            wait_until("the node to report the stream missing", lambda: refused(n, "STREAM_MISSING"), timeout=10)
            wait_until("LedgerService NOT_SERVING", lambda: health(n) == "NOT_SERVING", timeout=5)
            assert health(n, "") == "SERVING", "the node itself (and its reads) still serve"
            submit_fails_fast(n, "STREAM_MISSING", within=1.0)
            with Client(n.address) as c:
                assert c.resolve(ops[-1].did)["didDocument"]["id"] == ops[-1].did

        # Restarted, a node whose store follows the lost stream does not create a new one.
        nodes[1].stop()
        nodes[1] = start_cluster_node(nodes[1].data_dir, urls[1:] + urls[:1], NET)
        wait_until("the restarted node to report the stream missing", lambda: refused(nodes[1], "STREAM_MISSING"), timeout=10)
        assert health(nodes[1]) == "NOT_SERVING"
        time.sleep(1.0)
        assert js_request(urls, f"STREAM.INFO.{STREAM}").get("error", {}).get("err_code") == ERR_STREAM_NOT_FOUND

        # An administrator recreates a stream of the same name and someone fills it beyond
        # what the nodes applied: it is another history, which no node follows.
        resp = js_request(urls, f"STREAM.CREATE.{STREAM}", st.stream_config(STREAM, NET, 3, 120.0, True))
        assert "error" not in resp, resp
        foreign = [new_create(network=NET)[1] for _ in range(applied + 5)]
        for op in foreign:
            publish_raw(urls, st.subject_for(NET, op.did), st.encode_body(op.payload, op.proofs))
        for n in nodes:
            wait_until("the node to refuse the recreated stream", lambda: refused(n, "STREAM_MISMATCH"), timeout=15)
            assert health(n) == "NOT_SERVING"
            submit_fails_fast(n, "STREAM_MISMATCH", within=1.0)
        time.sleep(1.0)  # give a (wrong) follower time to read the new stream
        for n in nodes:
            assert info(n).stream_seq == applied
            assert checkpoint(n)[0] == before[0], "nothing of the recreated stream was applied"
            with Client(n.address) as c:
                with pytest.raises(UnknownDid):
                    c.resolve(foreign[-1].did)

        # And after a restart too (the store remembers the stream's creation time).
        nodes[0].stop()
        nodes[0] = start_cluster_node(nodes[0].data_dir, urls, NET)
        wait_until("the restarted node to refuse the recreated stream", lambda: refused(nodes[0], "STREAM_MISMATCH"), timeout=10)
        assert info(nodes[0]).stream_seq == applied
    finally:
        for n in nodes:
            n.stop()
