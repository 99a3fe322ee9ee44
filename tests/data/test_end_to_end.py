"""End to end on loopback (issue #19's proof): 100 devices, 2 gateways, a key compromised and revoked mid-run.

A real node (LMDB), two real DataGateway gRPC servers, recorders in-process.
Readings go into segments; each device hands its signed heads to its gateway,
which anchors many devices' heads per operation. Then one device's key is
revoked: every head it signs with that key afterwards is refused KEY_REVOKED
(reported by the gateway to the device), while the other devices keep anchoring.
Receipts of readings anchored before the revocation verify, online and, after
the node is stopped, offline from the receipt file and the trust policy alone.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from didnode.client import Client
from didnode.client.trust import policy_from_node
from didnode.core.data import receipt as rc
from didnode.data.uplink import send_pending
from tests.conftest import RunningNode
from tests.data.world import create_all, make_devices, revoke, start_gateway
from tests.factory import new_create

DEVICES = 100
SEGMENT = 10
ROUNDS = 3


def test_100_devices_two_gateways_and_a_revoked_key(node: RunningNode, tmp_path: Path) -> None:
    admin, admin_op = new_create()
    gws_ids = [new_create() for _ in range(2)]
    devices, creates = make_devices(tmp_path, admin, DEVICES, SEGMENT)
    with Client(node.address, timeout=30) as client:
        create_all(client, [(admin, admin_op), *gws_ids])
        create_all(client, creates)
        policy = policy_from_node(client)
        gateways = [start_gateway(node.address, g) for g, _ in gws_ids]
        links = [gateways[i % 2].client() for i in range(DEVICES)]
        pool = ThreadPoolExecutor(16)
        try:

            def round_of(n: int) -> list[list]:  # type: ignore[type-arg]
                for d in devices:
                    d.readings(n)
                return list(pool.map(lambda i: send_pending(devices[i].store, links[i]), range(DEVICES)))

            anchored_before: dict[int, list[int]] = {}
            for _ in range(ROUNDS):
                results = round_of(SEGMENT)
                assert all(s.outcome.anchored for sent in results for s in sent), [s.outcome for sent in results for s in sent if not s.outcome.anchored][:3]
            for i, d in enumerate(devices):
                assert d.store.pending_heads() == [] and len(d.store.heads("temp")) == ROUNDS
                anchored_before[i] = sorted(d.store.anchored("temp").values())
            ops = sum(g.gateway.anchorer.ops for g in gateways)
            assert ops < DEVICES * ROUNDS / 4  # many devices' heads per anchor operation

            # Device 0's key is compromised: its controller revokes it.
            victim = devices[0]
            revoke(client, victim.ident, admin)
            results = round_of(SEGMENT)
            (sent,) = results[0]
            assert not sent.outcome.anchored and sent.outcome.reason == "KEY_REVOKED"
            assert victim.store.pending_heads() == [sent.head]  # the device knows it never anchored
            assert all(s.outcome.anchored for sent in results[1:] for s in sent)
            assert all(d.store.pending_heads() == [] for d in devices[1:])

            # The victim's readings before the revocation stay anchored; their device-side proofs still build.
            for seq in (0, SEGMENT * ROUNDS - 1):
                proof = victim.store.reading_proof("temp", seq)
                assert proof.signed_head in {h.raw for h in victim.store.heads("temp")[:ROUNDS]}
            assert sorted(victim.store.anchored("temp").values()) == anchored_before[0]

            # Receipts: the victim's readings before the revocation (signed by the key now revoked) and another device's.
            files = []
            for dev, seq in ((victim, 0), (victim, SEGMENT * ROUNDS - 1), (devices[57], SEGMENT * (ROUNDS + 1) - 1)):
                receipt = rc.build(dev.store.reading_proof("temp", seq), client.anchor(dev.ident.did, "temp", seq), node.network)
                proven = rc.verify(receipt, policy)
                assert (proven.did, proven.stream, proven.seq, proven.key_id) == (dev.ident.did, "temp", seq, "key-1")
                files.append((dev, seq, rc.dumps(receipt)))
            assert rc.verify(rc.loads(files[0][2]), policy).key_fate != rc.verify(rc.loads(files[2][2]), policy).key_fate
        finally:
            pool.shutdown()
            for g in gateways:
                g.stop()
    # Offline: the node is gone; the receipt files and the trust policy are enough.
    node.stop()
    for dev, seq, text in files:
        proven = rc.verify(rc.loads(text), policy)
        assert (proven.did, proven.seq) == (dev.ident.did, seq) and proven.payload is not None
