"""The gateway against a real node: it can drop or delay heads, never alter them; order within a stream;
refused heads reported one by one; the device anchoring its own segments; limits of an anchor operation."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import grpc
import pytest

from didnode.api.v1 import gateway_pb2 as gpb
from didnode.api.v1 import gateway_pb2_grpc
from didnode.client import Client
from didnode.core.data.heads import SIG_BYTES
from didnode.core.operations import MAX_PUBLISH_PAYLOAD_BYTES
from didnode.data.gateway import Anchorer, in_stream_order, parse_rejected
from didnode.data.uplink import GatewayClient, anchor_pending, send_pending
from didnode.errors import SequenceGap
from tests.conftest import RunningNode, start_node
from tests.data.world import Device, RunningGateway, create_all, make_devices, start_gateway
from tests.factory import NET, new_create


class World:
    def __init__(self, node: RunningNode, root: Path) -> None:
        self.node = node
        self.root = root
        self.client = Client(node.address, timeout=30)
        self.admin, op = new_create()
        gw, gw_op = new_create()
        create_all(self.client, [(self.admin, op), (gw, gw_op)])
        self.gw: RunningGateway = start_gateway(node.address, gw)
        self.n = 0

    def devices(self, n: int, segment: int = 3) -> list[Device]:
        devs, creates = make_devices(self.root / f"batch{self.n}", self.admin, n, segment)
        self.n += 1
        create_all(self.client, creates)
        return devs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("gateway")
    n = start_node(root / "node")
    w = World(n, root)
    try:
        yield w
    finally:
        w.gw.stop()
        w.client.close()
        n.stop()


def test_a_dropping_gateway_leaves_heads_pending_and_the_device_anchors_them_itself(world: World) -> None:
    (dev,) = world.devices(1)
    dev.readings(6)

    class Dropper(gateway_pb2_grpc.DataGatewayServicer):
        def SubmitHeads(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            return gpb.SubmitHeadsReply(outcomes=[gpb.HeadOutcome() for _ in request.signed_heads])  # says nothing anchored

    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(2))
    gateway_pb2_grpc.add_DataGatewayServicer_to_server(Dropper(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with GatewayClient(f"127.0.0.1:{port}") as bad:
            sent = send_pending(dev.store, bad)
        assert [s.outcome.reason for s in sent] == ["DROPPED", "DROPPED"]
        assert len(dev.store.pending_heads()) == 2  # no anchor seen: still pending
    finally:
        server.stop(0)
    # Re-sent through an honest gateway ...
    good = world.gw.client()
    sent = send_pending(dev.store, good, "temp")
    assert [s.outcome.anchored for s in sent] == [True, True] and dev.store.pending_heads() == []
    # ... or anchored by the device itself (its key is an assertionMethod key too).
    dev.readings(3)
    mine = Anchorer(world.client, NET, dev.ident.did, dev.ident.current, dev.ident.key)
    sent = anchor_pending(dev.store, mine)
    assert sent and all(s.outcome.anchored for s in sent)
    assert dev.store.pending_heads() == []
    assert world.client.anchor(dev.ident.did, "temp", 8).first == 6


def test_a_gateway_cannot_alter_a_head(world: World) -> None:
    a, b, c = world.devices(3)
    for d in (a, b, c):
        d.readings(3)
    ha, hb, hc = (d.store.pending_heads()[0].raw for d in (a, b, c))
    sig_flip = ha[:-1] + bytes([ha[-1] ^ 1])  # the signature
    root_at = len(ha) - SIG_BYTES - 8 - 32 - 32
    root_flip = hb[:root_at] + bytes([hb[root_at] ^ 0x80]) + hb[root_at + 1 :]  # the Merkle root
    version_flip = b"\x07" + hc[1:]  # the encoding
    outs = world.gw.gateway.anchorer.anchor([sig_flip, root_flip, version_flip])
    assert [o.reason for o in outs] == ["BAD_SIGNATURE", "BAD_SIGNATURE", "MALFORMED_HEAD"]
    # Per head: the genuine heads still anchor, through the same gateway, alongside an altered one.
    outs = world.gw.gateway.anchorer.anchor([ha, root_flip, hb, hc])
    assert [o.reason for o in outs] == ["", "BAD_SIGNATURE", "", ""]
    assert all(o.position == outs[0].position for o in (outs[0], outs[2], outs[3]))


def test_reordered_heads_of_one_stream(world: World) -> None:
    (dev,) = world.devices(1)
    dev.readings(9)
    h1, h2, h3 = (h.raw for h in dev.store.pending_heads())
    gw = world.gw.gateway
    # One submission out of order: the gateway puts the stream back in order.
    assert all(o.anchored for o in gw.submit([h2, h1]))
    # Across submissions the gateway cannot know: a head sent ahead of its predecessor is refused
    # SEQUENCE_GAP (per head), and anchors once resubmitted after it.
    dev.readings(6)
    h4, h5 = (h.raw for h in dev.store.heads("temp")[3:5])
    assert [o.reason for o in gw.submit([h5])] == ["SEQUENCE_GAP"]
    assert all(o.anchored for o in gw.submit([h3, h4]))
    assert all(o.anchored for o in gw.submit([h5]))


def test_refusals_are_per_head_and_the_rest_anchors(world: World) -> None:
    devs = world.devices(4)
    for d in devs:
        d.readings(6)
    heads = [h.raw for d in devs for h in d.store.pending_heads()]
    # device 1's second head without its first: a gap, and nothing else refused
    outs = world.gw.gateway.anchorer.anchor([h for i, h in enumerate(heads) if i != 2])
    assert [o.reason for o in outs] == ["", "", "SEQUENCE_GAP", "", "", "", ""]
    # a re-send (a lost reply) is harmless: reported anchored where it already is
    (again,) = world.gw.gateway.anchorer.anchor([heads[0]])
    assert again.anchored and again.position == outs[0].position


def test_anchor_operations_stay_within_the_limits(world: World) -> None:
    devs = world.devices(60, segment=1)
    for d in devs:
        d.readings(5)
    heads = [h.raw for d in devs for h in d.store.pending_heads()]
    assert len(heads) == 300
    anchorer = world.gw.gateway.anchorer
    ops = anchorer.ops
    outs = anchorer.anchor(heads)
    assert all(o.anchored for o in outs)
    batches = anchorer.ops - ops
    assert batches >= 2  # 300 heads: over MAX_HEADS and over 64 KiB
    assert sum(len(h) for h in heads) * 4 // 3 > MAX_PUBLISH_PAYLOAD_BYTES


def test_helpers() -> None:
    err = SequenceGap("x", head=3, rejected="1:KEY_REVOKED;3:SEQUENCE_GAP;9:BAD")
    assert parse_rejected(err, 5) == {1: "KEY_REVOKED", 3: "SEQUENCE_GAP"}
    assert parse_rejected(SequenceGap("x", head=2), 5) == {2: "SEQUENCE_GAP"}
    assert parse_rejected(SequenceGap("x"), 5) == {}

    class H:
        def __init__(self, did: str, first: int) -> None:
            self.head = type("h", (), {"did": did, "stream": "s", "first": first})

    items = [(0, H("a", 2)), (1, H("b", 0)), (2, H("a", 1)), (3, H("a", 0))]
    assert [i for i, _ in in_stream_order(items)] == [3, 1, 2, 0]  # type: ignore[arg-type]
