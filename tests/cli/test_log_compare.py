"""``didctl log compare`` (issue #17, item 4) and the LOG_FORK evidence didctl keeps, against real nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from cli.trust_store import TrustStore
from didnode.client import Client
from didnode.client.trust import policy_from_node
from didnode.core.trust import TrustPolicy
from tests.cli.conftest import Didctl
from tests.conftest import RunningNode, start_node
from tests.factory import new_create
from tests.lying_proxy import CHECKPOINT, RESOLVE_WITH_PROOF, STATE_PROOF, LyingProxy

CONSISTENCY = "/didnode.v1.TransparencyService/GetConsistencyProof"


def grow(node: RunningNode, count: int = 1, network: str = "local") -> int:
    with Client(node.address) as c:
        for _ in range(count):
            c.submit(new_create(network=network)[1])
        return c.checkpoint().tree_size


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[RunningNode]]:
    started: list[RunningNode] = []
    yield started
    for n in started:
        n.stop()


def compare(ctl: Didctl, *args: str, code: int = 0) -> tuple[dict, str]:
    result = ctl.invoke("--json", "log", "compare", *args, code=code)
    return json.loads(result.stdout), result.stderr


def test_two_networks_reported_per_origin(ctl: Didctl, nodes: list[RunningNode], tmp_path: Path) -> None:
    nodes.append(start_node(tmp_path / "other", network="other"))
    grow(nodes[0], network="other")
    out, _ = compare(ctl, "--node", ctl.node.address, "--node", nodes[0].address)
    assert out["consistent"] is True
    assert {s["origin"] for s in out["sources"]} == {"didnode.local/local", "didnode.local/other"}
    assert out["pairs"] == []  # nothing to compare across origins
    text = ctl.invoke("log", "compare", "--node", ctl.node.address, "--node", nodes[0].address).stdout
    assert "didnode.local/other" in text and "SIZE" in text


def test_one_node_twice_is_consistent_and_verified(ctl: Didctl) -> None:
    ctl.trust()
    out, _ = compare(ctl, "--node", ctl.node.address, "--node", ctl.node.address)
    assert out["consistent"] is True and [p["consistent"] for p in out["pairs"]] == [True]
    assert {s["signature"] for s in out["sources"]} == {"verified"}


def test_a_stored_bundle_and_the_node_now(ctl: Didctl, tmp_path: Path) -> None:
    bundle = tmp_path / "state.json"
    node_did = ctl.json("node", "info")["nodeDid"]
    ctl.invoke("log", "prove", "state", node_did, "--out", str(bundle))
    grow(ctl.node, 2)
    out, _ = compare(ctl, "--node", ctl.node.address, str(bundle))
    sizes = sorted(s["size"] for s in out["sources"])
    assert sizes[0] < sizes[1]
    assert out["pairs"][0]["consistent"] is True and "consistency proof" in out["pairs"][0]["why"]


def test_a_fork_of_one_origin_is_named(ctl: Didctl, nodes: list[RunningNode], tmp_path: Path) -> None:
    for name in ("a", "b"):
        nodes.append(start_node(tmp_path / name, extra=["--origin", "example.org/forked"]))
    grow(nodes[0], 2)
    grow(nodes[1], 1)
    env = {"DIDCTL_EVIDENCE_DIR": str(tmp_path / "evidence")}
    result = ctl.invoke("log", "compare", "--node", nodes[0].address, "--node", nodes[1].address, code=1, **env)
    line = result.stderr.strip().splitlines()[-1]
    assert line.endswith("[LOG_FORK]") and nodes[0].address in line and nodes[1].address in line
    assert "NOT consistent" in result.stdout
    saved = list((tmp_path / "evidence").glob("*.json"))
    assert len(saved) == 1 and str(saved[0]) in line
    # the same size on both: the roots differ
    grow(nodes[1], 1)
    out = ctl.invoke("--json", "log", "compare", "--node", nodes[0].address, "--node", nodes[1].address, code=1, **env)
    err = json.loads(out.stdout)["error"]
    assert err["reason"] == "LOG_FORK" and "other roots" in err["details"]["pairs"]


def _forward_to(address: str, method: str):  # type: ignore[no-untyped-def]
    """A rewrite answering ``method`` with node ``address``'s reply to the same request (another ledger's)."""
    channel = grpc.insecure_channel(address)
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    return lambda request, reply: call(request, timeout=10)


def test_log_fork_in_a_verified_read_is_kept_as_evidence(ctl: Didctl, nodes: list[RunningNode], tmp_path: Path) -> None:
    nodes += [start_node(tmp_path / "a"), start_node(tmp_path / "b")]
    a, b = nodes
    with Client(a.address) as ca, Client(b.address) as cb:
        pa, pb = policy_from_node(ca), policy_from_node(cb)
        ident, op = new_create()
        ca.submit(op)
        cb.submit(op)  # one DID on both ledgers
        node_did = ident.did
    both = TrustPolicy.create("local", pa.genesis, [*pa.keys, *pb.keys])  # a cluster's keys, say
    with LyingProxy(a.address) as proxy:
        TrustStore(ctl.trust_dir).put(proxy.address, both)
        ctl.invoke("--node", proxy.address, "did", "resolve", node_did)  # verified: the latest of A is kept
        held = TrustStore(ctl.trust_dir).get(proxy.address)
        assert held is not None and held.latest is not None
        grow(b, held.latest.tree_size + 1)
        for method in (STATE_PROOF, RESOLVE_WITH_PROOF, CHECKPOINT, CONSISTENCY):
            proxy.set(method, _forward_to(b.address, method))  # now B's answers, honestly signed by B
        evidence = tmp_path / "evidence"
        result = ctl.fail("--node", proxy.address, "did", "resolve", node_did, code=1, reason="LOG_FORK", DIDCTL_EVIDENCE_DIR=str(evidence))
    files = list(evidence.glob("*.json"))
    assert len(files) == 1 and str(files[0]) in result.stderr
    record = json.loads(files[0].read_text())
    assert record["reason"] == "LOG_FORK"
    assert record["held"] == held.latest.to_json() and "note" in record["offered"]
    assert record["held"] != record["offered"]
