"""kill -9 the stream leader's nats-server and one didnode during a submission run: no
acknowledged operation is lost, none is applied twice, the survivors keep accepting writes,
and the restarted processes catch up to the same roots."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from didnode import errors
from didnode.client import Client, Receipt
from didnode.core.builder import SignedOperation
from tests.cluster.conftest import info, kill9_node, start_cluster_node, start_nats, stream_leader, wait_converged, wait_until
from tests.conftest import RunningNode
from tests.factory import new_create
from tools.cluster import NatsCluster

NET = "failover"


@pytest.fixture
def nats3(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = start_nats(tmp_path / "nats", (NET,))
    yield cluster
    cluster.stop()


class Writer(threading.Thread):
    """Submits fresh creates to one node in small streamed chunks until stopped; keeps every receipt."""

    def __init__(self, node: RunningNode, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.node, self.stop = node, stop
        self.sent: list[SignedOperation] = []
        self.acked: list[Receipt] = []
        self.failures: list[errors.DidnodeError] = []

    def run(self) -> None:
        while not self.stop.is_set():
            chunk = [new_create(network=NET)[1] for _ in range(16)]
            self.sent.extend(chunk)
            try:
                with Client(self.node.address, timeout=30) as c:
                    for outcome in c.submit_batch(chunk, chunk_size=8, window=2):
                        if isinstance(outcome, Receipt):
                            self.acked.append(outcome)
                        else:
                            self.failures.append(outcome)
            except errors.DidnodeError as exc:  # the node died, or NATS stalled past the deadline
                self.failures.append(exc)
                self.stop.wait(0.2)


def test_kill9_stream_leader_and_a_node_mid_run(nats3: NatsCluster, tmp_path: Path) -> None:
    nodes = [start_cluster_node(tmp_path / f"n{i}", nats3.urls[i:] + nats3.urls[:i], NET) for i in range(3)]
    stop = threading.Event()
    writers = [Writer(n, stop) for n in nodes]
    try:
        wait_converged(nodes)
        leader = nats3.index_of(stream_leader(nats3.urls, NET))
        for w in writers:
            w.start()
        wait_until("300 acknowledged writes", lambda: sum(len(w.acked) for w in writers) >= 300, timeout=60)

        nats3.kill9(leader)
        kill9_node(nodes[2])
        survivors = writers[:2]
        at_kill = [len(w.acked) for w in survivors]
        killed_at = time.monotonic()
        # Survivors stall while the stream elects a leader, then keep accepting writes.
        wait_until(
            "both survivors to acknowledge 100 more writes",
            lambda: all(len(w.acked) >= n + 100 for w, n in zip(survivors, at_kill)),
            timeout=60,
        )
        stall = time.monotonic() - killed_at
        stop.set()
        for w in writers:
            w.join(60)
            assert not w.is_alive()

        nats3.start(leader)
        nats3.wait_ready(30)
        nodes[2] = start_cluster_node(nodes[2].data_dir, nats3.urls, NET)
        size, _, _ = wait_converged(nodes, timeout=90)

        acked = [r for w in writers for r in w.acked]
        sent = [op for w in writers for op in w.sent]
        assert len({r.op_hash for r in acked}) == len(acked)
        with Client(nodes[2].address) as c:  # the restarted node holds every acknowledged write, where it was acknowledged
            for r in acked:
                hist = c.history(r.did)
                assert [(h.position, h.op_hash) for h in hist] == [(r.position, r.op_hash)], f"acknowledged {r} is missing or moved"
            present = 0
            for op in sent:  # nothing applied twice: each create at most once, and nothing else in the log
                try:
                    hist = c.history(op.did)
                except errors.UnknownDid:
                    continue
                assert len(hist) == 1
                present += 1
        assert size == 3 + present
        assert {info(n).log_size for n in nodes} == {size}
        print(f"acknowledged {len(acked)} of {len(sent)}; write stall after the kill {stall:.1f}s")
    finally:
        stop.set()
        for n in nodes:
            n.stop()
