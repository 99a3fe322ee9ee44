"""Per-DID compare-and-set: conflicting rotations sent at once to two nodes, exactly one wins
on every node; messages that fail at apply (published by a foreign writer) are skipped alike
by every node and do not block later writes to the DID."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Iterator

import pytest
from nacl.signing import SigningKey

from didnode import errors
from didnode.client import Client, Receipt
from didnode.core import builder
from didnode.core.builder import SignedOperation
from didnode.core.operations import Proof
from didnode.ledger import stream as st
from tests.cluster.conftest import info, publish_raw, start_cluster_node, wait_converged, wait_until
from tests.conftest import RunningNode
from tests.factory import Identity, new_create
from tools.cluster import NatsCluster

NET = "conflict"


@pytest.fixture(scope="module")
def nodes(nats_cluster: NatsCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningNode]]:
    base = tmp_path_factory.mktemp("conflict")
    running = [start_cluster_node(base / f"n{i}", nats_cluster.urls[i:] + nats_cluster.urls[:i], NET) for i in range(3)]
    yield running
    for n in running:
        n.stop()


def rotation(ident: Identity, seq: int, prev: str) -> tuple[SignedOperation, str]:
    """A rotation of ``ident`` to a fresh key; returns it and the new key's multibase."""
    new_auth, new_next = SigningKey.generate(), SigningKey.generate()
    u = builder.rotate(NET, ident.did, seq, prev, bytes(ident.next_key.verify_key), [builder.NewKey("key-2", bytes(new_auth.verify_key))], bytes(new_next.verify_key))
    op = builder.sign(u, [(builder.next_kid(ident.did), ident.next_key)])
    return op, builder.NewKey("key-2", bytes(new_auth.verify_key)).to_json()["publicKeyMultibase"]


def created(nodes: list[RunningNode]) -> tuple[Identity, str]:
    ident, op = new_create(network=NET)
    with Client(nodes[0].address) as c:
        c.submit(op)
    return ident, hashlib.sha256(op.payload).hexdigest()


def test_conflicting_rotations_on_two_nodes_exactly_one_wins(nodes: list[RunningNode]) -> None:
    for round_ in range(6):
        ident, prev = created(nodes)
        a, b = nodes[round_ % 3], nodes[(round_ + 1) % 3]
        (op1, key1), (op2, key2) = rotation(ident, 1, prev), rotation(ident, 1, prev)
        outcomes: dict[int, object] = {}
        go = threading.Barrier(2)

        def submit(k: int, node: RunningNode, op: SignedOperation) -> None:
            with Client(node.address, timeout=30) as c:
                go.wait(10)
                try:
                    outcomes[k] = c.submit(op)
                except errors.DidnodeError as exc:
                    outcomes[k] = exc

        threads = [threading.Thread(target=submit, args=(1, a, op1)), threading.Thread(target=submit, args=(2, b, op2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        winners = [k for k, o in outcomes.items() if isinstance(o, Receipt)]
        assert len(winners) == 1, outcomes
        loser = outcomes[3 - winners[0]]
        assert isinstance(loser, (errors.PrevMismatch, errors.SequenceMismatch, errors.WriteConflict, errors.DuplicateOperation)), loser
        wait_converged(nodes)
        want = key1 if winners[0] == 1 else key2
        for n in nodes:
            with Client(n.address) as c:
                state = c.state(ident.did)
            assert state.seq == 1
            assert [k.multibase for k in state.current_keys()] == [want]


def test_messages_rejected_at_apply_are_skipped_alike_and_do_not_block_the_did(nats_cluster: NatsCluster, nodes: list[RunningNode]) -> None:
    wait_converged(nodes)
    ident, prev = created(nodes)
    other, _ = created(nodes)
    before = wait_converged(nodes)
    subject = st.subject_for(NET, ident.did)
    rot, key = rotation(ident, 1, prev)
    foreign = rotation(other, 1, "00" * 32)[0]
    bad_sig = SignedOperation(rot.type, rot.network, rot.did, rot.payload, (Proof(rot.proofs[0].kid, bytes(64)),))
    publish_raw(nats_cluster.urls, subject, b"\x01garbage")  # not a message body
    publish_raw(nats_cluster.urls, subject, st.encode_body(foreign.payload, foreign.proofs))  # another DID's operation
    publish_raw(nats_cluster.urls, subject, st.encode_body(bad_sig.payload, bad_sig.proofs))  # a forged signature
    seq = publish_raw(nats_cluster.urls, st.subject_for(NET, other.did), st.encode_body(foreign.payload, foreign.proofs))  # wrong prev
    wait_until("every node to apply the foreign messages", lambda: all(info(n).stream_seq >= seq for n in nodes))
    after = wait_converged(nodes)
    assert after[0] == before[0], "messages rejected at apply take no log position"
    # The DID's subject moved on (its last sequence is a rejected message): a write through any
    # node still passes the per-DID compare-and-set, since every node tracks every message.
    with Client(nodes[1].address) as c:
        receipt = c.submit(rot)
        assert receipt.position == before[0]
    wait_converged(nodes)
    for n in nodes:
        with Client(n.address) as c:
            assert [k.multibase for k in c.state(ident.did).current_keys()] == [key]
