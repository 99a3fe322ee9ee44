"""Three nodes on one stream converge: same tree size and roots after a few thousand mixed
operations submitted round-robin; a node joining late replays the stream to the same roots;
a node restarted after SIGTERM resumes where it stopped."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nacl.signing import SigningKey

from didnode.client import Client, Receipt
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.errors import DidnodeError
from tests.cluster.conftest import checkpoint, info, start_cluster_node, stream_info, wait_converged
from tests.conftest import RunningNode
from tests.factory import Identity, new_create
from tools.cluster import NatsCluster

NET = "converge"


@dataclass
class Chain:
    """A DID as its holder tracks it: identity, next seq and last operation hash."""

    ident: Identity
    seq: int
    prev: str
    controller: Identity | None = None

    def advance(self, op: SignedOperation) -> SignedOperation:
        self.seq += 1
        self.prev = hashlib.sha256(op.payload).hexdigest()
        return op


def submit_round_robin(nodes: Sequence[RunningNode], ops: Sequence[SignedOperation]) -> list[Receipt | DidnodeError]:
    """Stream ``ops`` split round-robin over the nodes, in parallel; outcomes in input order."""
    parts: list[list[Receipt | DidnodeError]] = [[] for _ in nodes]

    def run(k: int) -> None:
        with Client(nodes[k].address, timeout=60) as c:
            parts[k] = list(c.submit_batch(ops[k :: len(nodes)], chunk_size=128))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(nodes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    out: list[Receipt | DidnodeError] = [None] * len(ops)  # type: ignore[list-item]
    for k, part in enumerate(parts):
        out[k :: len(nodes)] = part
    return out


def accepted(outcomes: Sequence[Receipt | DidnodeError]) -> None:
    bad = [o for o in outcomes if not isinstance(o, Receipt)]
    assert not bad, f"{len(bad)} rejected, e.g. {bad[0]!r}"


def test_three_nodes_converge_and_a_late_node_replays(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    nodes = [start_cluster_node(tmp_path / f"n{i}", nats_cluster.urls[i:] + nats_cluster.urls[:i], NET) for i in range(3)]
    late: RunningNode | None = None
    try:
        wait_converged(nodes)
        assert {info(n).mode for n in nodes} == {"cluster"}
        cfg = stream_info(nats_cluster.urls, NET)["config"]
        assert isinstance(cfg, dict)
        assert (cfg["num_replicas"], cfg["storage"], cfg["deny_delete"], cfg["deny_purge"]) == (3, "file", True, True)
        assert cfg["subjects"] == [f"didnode.{NET}.op.*"] and cfg["duplicate_window"] > 0 and cfg["max_msg_size"] > 0

        # Phase 1: admins, standalone DIDs, and devices whose create the admin co-signs.
        admins = [new_create(network=NET) for _ in range(12)]
        accepted(submit_round_robin(nodes, [op for _, op in admins]))
        wait_converged(nodes)
        chains: list[Chain] = []
        ops: list[SignedOperation] = []
        for i in range(1500):
            admin = admins[i % len(admins)][0] if i % 2 else None
            ident, op = new_create(controllers=[admin] if admin else [], network=NET)
            chains.append(Chain(ident, 1, hashlib.sha256(op.payload).hexdigest(), admin))
            ops.append(op)
        accepted(submit_round_robin(nodes, ops))
        wait_converged(nodes)

        # Phase 2: rotations (next key), then updates and controller revocations on other DIDs.
        ops = []
        for ch in chains[:500]:
            new_auth, new_next = SigningKey.generate(), SigningKey.generate()
            kid = f"key-{ch.ident.counter + 1}"
            u = builder.rotate(NET, ch.ident.did, ch.seq, ch.prev, bytes(ch.ident.next_key.verify_key), [builder.NewKey(kid, bytes(new_auth.verify_key))], bytes(new_next.verify_key))
            ops.append(ch.advance(builder.sign(u, [(builder.next_kid(ch.ident.did), ch.ident.next_key)])))
            ch.ident.keys[kid], ch.ident.current, ch.ident.next_key, ch.ident.counter = new_auth, kid, new_next, ch.ident.counter + 1
        for n, ch in enumerate(chains[500:1000]):
            u = builder.update(NET, ch.ident.did, ch.seq, ch.prev, [builder.service("svc", "DeviceEndpoint", f"https://d{n}.example/")], None)
            ops.append(ch.advance(builder.sign(u, [(ch.ident.kid, ch.ident.key)])))
        controlled = [ch for ch in chains[1000:] if ch.controller is not None]
        for ch in controlled[:200]:
            assert ch.controller is not None
            u = builder.revoke(NET, ch.ident.did, ch.seq, ch.prev, ch.ident.current, "lost")
            ops.append(ch.advance(builder.sign(u, [(ch.controller.kid, ch.controller.key)])))
        accepted(submit_round_robin(nodes, ops))
        wait_converged(nodes)

        # Phase 3: the rotated DIDs update with their new keys, on another node than they rotated on.
        ops = []
        for n, ch in enumerate(chains[:500]):
            u = builder.update(NET, ch.ident.did, ch.seq, ch.prev, [builder.service("svc", "DeviceEndpoint", f"https://r{n}.example/")], None)
            ops.append(ch.advance(builder.sign(u, [(ch.ident.kid, ch.ident.key)])))
        accepted(submit_round_robin(list(reversed(nodes)), ops))
        size, log_root, state_root = wait_converged(nodes)
        assert size == 3 + len(admins) + 1500 + 1200 + 500
        with Client(nodes[2].address) as c:
            state = c.state(chains[0].ident.did)
            assert state.seq == 2 and state.current_keys()[0].id == chains[0].ident.current

        # A node that joins now replays the whole stream and reaches the same roots (plus its own create).
        late = start_cluster_node(tmp_path / "late", nats_cluster.urls, NET)
        size2, _, _ = wait_converged([*nodes, late])
        assert size2 == size + 1
        assert info(late).stream_seq == info(nodes[0]).stream_seq

        # A node stopped and restarted resumes from its last applied position, applying nothing twice.
        nodes[1].stop()
        nodes[1] = start_cluster_node(nodes[1].data_dir, nats_cluster.urls, NET)
        assert wait_converged([*nodes, late]) == checkpoint(nodes[0])
    finally:
        for n in [*nodes, *([late] if late else [])]:
            n.stop()
