"""The nodes of a cluster cosign each other's checkpoints, as ``make cluster`` sets them up (tools/cluster_witness.py).

Three nodes hold the same log (one stream); each signs under its own origin
and is witnessed by the two others, which replay the log themselves. A
client with the 2-of-3 policy ``make cluster`` writes reads through any node.
A fork of node-1's log, signed with node-1's own key (a stolen key or a
lying operator showing one device another history), is refused by the
witnesses (422, evidence kept) and by 2-of-3 clients.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Iterator

import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.api.v1 import transparency_pb2 as tpb
from didnode.client import Client
from didnode.client.verified import VerifiedClient
from didnode.core import cosignature
from didnode.core import note as note_codec
from didnode.core.tlog_checkpoint import sign_with_note
from didnode.core.trust import TrustedLog
from didnode.core.trust.policy import from_json
from didnode.wire.transparency import checkpoint_from_pb, checkpoint_to_pb
from didnode.witness.request import encode_add_checkpoint
from didnode.witness.state import origin_hash
from tests.cluster.conftest import start_cluster_node, wait_converged
from tests.conftest import RunningNode
from tests.factory import new_create
from tests.lying_proxy import STATE_PROOF, LyingProxy
from tests.witness.conftest import RunningWitness
from tools.cluster import NatsCluster, free_ports
from tools.cluster_witness import WitnessedNode, first_start_args, serve_args, write_policies

NET = "witnessed"


@dataclasses.dataclass
class Witnessed:
    nodes: list[WitnessedNode]
    running: list[RunningNode]
    policies: dict[str, Path]


@pytest.fixture(scope="module")
def cluster(nats_cluster: NatsCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witnessed]:
    base = tmp_path_factory.mktemp("witnessed")
    ports = free_ports(3)
    nodes = [WitnessedNode(f"node-{i}", base / f"node-{i}", "127.0.0.1:0", f"127.0.0.1:{p}", NET) for i, p in enumerate(ports, 1)]
    for node in nodes:  # first start: node.key and the node's DID on the ledger
        start_cluster_node(node.data, nats_cluster.urls, NET, extra=first_start_args(node)).stop()
    running: list[RunningNode] = []
    try:
        for node in nodes:
            running.append(start_cluster_node(node.data, nats_cluster.urls, NET, extra=serve_args(nodes, node)))
        yield Witnessed(nodes, running, write_policies(nodes, base / "trust"))
    finally:
        for r in running:
            r.stop()


def _cosigners(note: bytes, nodes: list[WitnessedNode]) -> set[str]:
    n = note_codec.parse(note)
    out = set()
    for node in nodes:
        name, _, key = note_codec.parse_verifier_key(node.witness_vkey())
        for sig in n.signatures:
            if cosignature.is_from(sig, name, key):
                cosignature.verify_cosignature(n.text, sig, key, name)
                out.add(node.name)
    return out


def _cosigned_by_peers(cluster: Witnessed, i: int, timeout: float = 30.0) -> bytes:
    """Node ``i``'s latest checkpoint note once both other nodes cosigned it."""
    peers = {n.name for n in cluster.nodes} - {cluster.nodes[i].name}
    deadline = time.monotonic() + timeout
    note = b""
    with Client(cluster.running[i].address) as c:
        while time.monotonic() < deadline:
            note = c.checkpoint().note
            if _cosigners(note, cluster.nodes) >= peers:
                return note
            time.sleep(0.1)
    raise AssertionError(f"{cluster.nodes[i].name}'s checkpoint was not cosigned by {sorted(peers)}: {note!r}")


def test_nodes_cosign_each_other_and_a_2_of_3_client_reads(cluster: Witnessed) -> None:
    # node-1 signed its first checkpoint before node-2 and node-3 were up: asked again, an idle log gets cosigned
    _cosigned_by_peers(cluster, 0)
    with Client(cluster.running[0].address) as c:
        c.submit(new_create(network=NET)[1])
    wait_converged(cluster.running)
    for i in range(3):
        _cosigned_by_peers(cluster, i)
        policy = from_json(json.loads(cluster.policies[cluster.nodes[i].name].read_text()))
        assert policy.witness_threshold == 2 and len(policy.witnesses) == 3 and policy.log_origin == cluster.nodes[i].origin
        with Client(cluster.running[i].address) as c:
            did = c.node_info().node_did
            assert VerifiedClient(c, TrustedLog(policy)).state(did).did == did


def test_a_fork_is_refused_by_the_replaying_witnesses_and_by_2_of_3_clients(cluster: Witnessed) -> None:
    """Three nodes hold the same log; a fourth history under node-1's origin and key forks it."""
    one = cluster.nodes[0]
    key = SigningKey(bytes.fromhex((one.data / "node.key").read_text().strip()))
    with Client(cluster.running[0].address) as c:
        c.submit(new_create(network=NET)[1])
    wait_converged(cluster.running)
    honest = _cosigned_by_peers(cluster, 0)
    with Client(cluster.running[0].address) as c:
        signed = c.checkpoint()
    fork_cp = dataclasses.replace(signed.checkpoint, log_root=bytes(32), state_root=bytes(32))
    fork = sign_with_note(fork_cp, key, signed.kid, one.origin)
    assert note_codec.parse(honest).text != note_codec.parse(fork.note).text
    # the witnesses (the two other nodes) replay the log: the fork's roots are not theirs (422, evidence)
    for node in cluster.nodes[1:]:
        w = RunningWitness(node.url, node.witness_vkey(), node.data, cluster.running[0].proc)
        for old in (0, signed.tree_size):
            r = w.post(encode_add_checkpoint(old, [], fork.note))
            assert r.status == 422 and r.body.startswith(b"REPLAY_MISMATCH"), (node.name, old, r.status, r.body)
        evidence = list((node.data / "witness" / "evidence" / origin_hash(one.origin)).glob("replay-*.json"))
        assert evidence and json.loads(evidence[0].read_text())["offered"].encode() == fork.note
    # a client of the forking "node" (node-1's answers with the fork's checkpoint, signed by node-1's key)
    policy = from_json(json.loads(cluster.policies[one.name].read_text()))

    def forked(request: bytes, reply: bytes) -> bytes:
        m = tpb.StateProof.FromString(reply)
        real = checkpoint_from_pb(m.checkpoint)
        m.checkpoint.CopyFrom(checkpoint_to_pb(sign_with_note(dataclasses.replace(real.checkpoint, log_root=bytes(32), state_root=bytes(32)), key, real.kid, one.origin)))
        return m.SerializeToString()

    with LyingProxy(cluster.running[0].address, {STATE_PROOF: forked}) as proxy, Client(proxy.address) as c:
        did = c.node_info().node_did
        with pytest.raises(errors.CheckpointBelowThreshold):
            VerifiedClient(c, TrustedLog(policy)).state(did)
        # the same client without witnesses (threshold 1, node key only) would take the fork's checkpoint:
        # only its proof fails then, not the checkpoint; the witnesses are what refuse the history itself
        alone = dataclasses.replace(policy, witnesses=(), witness_threshold=0)
        with pytest.raises(errors.DidnodeError) as caught:
            VerifiedClient(c, TrustedLog(alone)).state(did)
        assert not isinstance(caught.value, errors.CheckpointBelowThreshold)
