"""``didctl gov``: a governed network's genesis signed and submitted, then a change proposed, signed by 2 of 3
governors, submitted, shown now and as of before; the governance refusals on one line each."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from didnode.client import Client
from didnode.core.builder import SignedOperation
from didnode.core.governance import build as gb
from didnode.core.governance import proposal as proposals
from didnode.keystore import DidSecrets, Keystore
from tests.cli.conftest import PASSPHRASE, Didctl
from tests.conftest import RunningNode, start_node
from tests.factory import new_create
from tests.governance_fixtures import node_key


@dataclass
class Net:
    ctl: Didctl
    node: RunningNode
    node_did: str
    governors: list[str]
    governance: str
    inception_position: int
    dir: Path


def _unsigned(doc_ops: list[SignedOperation], network: str) -> proposals.Proposal:
    return proposals.from_operations(network, doc_ops)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    base = tmp_path_factory.mktemp("gov")
    node = start_node(base / "node")
    try:
        ctl = Didctl(node, base / "keystore")
        ctl.invoke("keystore", "init")
        with Client(node.address) as c:
            node_did = c.node_info().node_did
        governors = [ctl.create() for _ in range(3)]  # positions 1..3, right after the node's create
        # The genesis proposal: the inception, signed by the node's key here and by each governor with didctl.
        inc = gb.inception(node.network, [node_did, *governors], governors, 2, "registrars")
        doc = _unsigned([SignedOperation(inc.type, inc.network, inc.did, inc.payload, ())], node.network)
        key = node_key(base / "node")
        doc = doc.signed(f"{node_did}#key-1", key.sign(doc.message()).signature)
        genesis = base / "genesis.json"
        genesis.write_text(doc.dumps())
        for g in governors:
            ctl.invoke("gov", "sign", str(genesis), "--as", g)
        out = ctl.json("gov", "submit", str(genesis))
        receipt = out["receipts"][-1]
        assert receipt["type"] == "govern" and receipt["position"] == 4
        yield Net(ctl, node, node_did, governors, inc.did, 4, base)
    finally:
        node.stop()


def test_info_and_show(net: Net) -> None:
    shown = net.ctl.json("gov", "show")
    assert shown["id"] == net.governance
    assert shown["governors"] == sorted(net.governors) and shown["threshold"] == 2
    assert shown["create"] == "registrars" and shown["registrars"] == []
    assert shown["effectivePosition"] == net.inception_position
    text = net.ctl.invoke("gov", "show").stdout
    assert "2 of 3 sign a change" in text and "registrars: none" in text
    info = net.ctl.json("node", "info")
    assert (info["governance"], info["createPolicy"]) == (net.governance, "registrars")


def test_create_without_registrar_is_one_line(net: Net) -> None:
    r = net.ctl.fail("did", "create", code=1, reason="NOT_A_REGISTRAR")
    assert "didctl gov show" in r.stderr


def test_change_needs_two_of_three(net: Net) -> None:
    ctl = net.ctl
    registrar = ctl.create("--controller", net.governors[0])  # a governor's signature admits it
    change = net.dir / "change.json"
    out = ctl.invoke("gov", "propose", "--add-registrar", registrar, "--per-window", "1", "--window", "3600", "--out", str(change)).stdout
    assert f"add registrar {registrar}" in out and "needs 2 of the 3" in out
    ctl.invoke("gov", "propose", "--create-policy", "open", "--out", str(change), code=2)  # exists: not overwritten
    assert proposals.loads(change.read_bytes()).govern.proofs == ()
    # Unsigned: refused before anything is sent.
    ctl.fail("gov", "submit", str(change), code=1, reason="MALFORMED_OPERATION")
    ctl.invoke("gov", "sign", str(change), "--as", net.governors[0])
    r = ctl.fail("gov", "submit", str(change), code=1, reason="GOVERNANCE_THRESHOLD")
    assert "needs 2 of the 3 governors; 1 signed" in r.stderr
    assert ctl.json("gov", "show")["registrars"] == []  # nothing applied
    ctl.invoke("gov", "sign", str(change), "--as", net.governors[1])
    assert len(proposals.loads(change.read_bytes()).govern.proofs) == 2
    receipt = ctl.json("gov", "submit", str(change))["receipts"][-1]
    position = receipt["position"]
    shown = ctl.json("gov", "show")
    assert shown["registrars"] == [{"did": registrar, "quota": {"perWindow": 1, "window": 3600}}]
    assert shown["effectivePosition"] == position and shown["seq"] == 1
    assert shown["usage"][registrar]["total"] == 0
    before = ctl.json("gov", "show", "--at", str(position - 1))
    assert before["registrars"] == [] and before["seq"] == 0 and before["at"] == position - 1
    # The registrar's quota: one create per window; the second is refused with the window's end in UTC.
    ctl.create("--controller", registrar)
    r = ctl.fail("did", "create", "--controller", registrar, code=1, reason="QUOTA_EXCEEDED")
    assert "the window ends at " in r.stderr and "Z" in r.stderr
    text = ctl.invoke("gov", "show").stdout
    assert "1 this window, 1 in all" in text
    # A signed file goes in once.
    ctl.fail("gov", "submit", str(change), code=1, reason="DUPLICATE_OPERATION")


def test_bad_input_is_one_line(net: Net) -> None:
    ctl = net.ctl
    ctl.invoke("gov", "propose", "--out", str(net.dir / "nothing.json"), code=2)
    ctl.invoke("gov", "propose", "--publish-quota", "window=x", "--out", str(net.dir / "bad.json"), code=2)
    ctl.fail("gov", "show", "--at", "100000", code=1, reason="INVALID_ARGUMENT")
    ctl.fail("gov", "show", "--at", "0", code=1, reason="NO_GOVERNANCE")
    garbage = net.dir / "garbage.json"
    garbage.write_text("{}")
    ctl.fail("gov", "sign", str(garbage), "--as", net.governors[0], code=1, reason="MALFORMED_OPERATION")
    ctl.fail("gov", "sign", str(net.dir / "missing.json"), code=1, reason="INVALID_ARGUMENT")


def test_publish_quotas(net: Net) -> None:
    ctl = net.ctl
    path = net.dir / "publish.json"
    out = ctl.json("gov", "propose", "--publish-quota", "window=60,count=5,bytes=100000", "--publisher-quota", f"{net.governors[2]}=window=60,count=50", "--out", str(path))
    assert [c["action"] for c in out["changes"]] == ["setPublishQuota", "setPublisherQuota"]
    for g in net.governors[:2]:
        ctl.invoke("gov", "sign", str(path), "--as", g)
    ctl.invoke("gov", "submit", str(path))
    shown = ctl.json("gov", "show")
    assert shown["publish"] == {"window": 60, "count": 5, "bytes": 100000}
    assert shown["publishers"] == [{"did": net.governors[2], "quota": {"window": 60, "count": 50}}]


def test_ungoverned_node(shared_node: RunningNode, tmp_path: Path) -> None:
    ctl = Didctl(shared_node, tmp_path / "keystore")
    ctl.fail("gov", "show", code=1, reason="NO_GOVERNANCE")


def test_sign_a_genesis_with_its_creates(net: Net, tmp_path: Path) -> None:
    """A genesis file as didnode init writes it (the creates, then the inception): each genesis DID signs from the
    keystore, its key read from its create in the file (no ledger holds it yet)."""
    a, a_op = new_create(network="other")
    b, b_op = new_create(network="other")
    ks = Keystore.open(net.ctl.keystore, PASSPHRASE)
    try:
        for ident in (a, b):
            ks.put(DidSecrets(ident.did, {"key-1": bytes(ident.key)}, "key-2", bytes(ident.next_key)))
    finally:
        ks.close()
    inc = gb.inception("other", [a.did, b.did], [a.did, b.did], 2, "governors")
    doc = _unsigned([a_op, b_op, SignedOperation(inc.type, "other", inc.did, inc.payload, ())], "other")
    path = tmp_path / "genesis.json"
    path.write_text(doc.dumps())
    out = net.ctl.json("gov", "sign", str(path), "--as", a.did)
    assert out["signatures"] == 1
    net.ctl.invoke("gov", "sign", str(path))  # the only genesis DID left that the keystore holds
    signed = proposals.loads(path.read_bytes())
    assert sorted(p.kid for p in signed.govern.proofs) == sorted([a.kid, b.kid])
    assert len(signed.operations) == 3 and json.loads(path.read_text())["network"] == "other"


def test_genesis_from_didnode_init(shared_node: RunningNode, tmp_path: Path) -> None:
    """The whole path of a new governed network: offline creates, didnode init, didctl gov sign by each
    governor (their keys from their creates in the file: no ledger holds them yet), didnode serve --genesis."""
    import subprocess

    from tests.conftest import BIN, ROOT

    offline = Didctl(shared_node, tmp_path / "keystore")  # the node is not asked until the network runs
    offline.invoke("keystore", "init")
    files, dids = [], []
    for i in range(3):
        path = tmp_path / f"g{i}.json"
        dids.append(offline.json("did", "create", "--offline", "--network", "local", "--out", str(path))["did"])
        files += ["--governor-op", str(path)]
    genesis = tmp_path / "genesis.json"
    data = tmp_path / "node"
    init = [str(BIN / "didnode"), "init", "--data", str(data), "--network", "local", *files, "--threshold", "2", "--create", "registrars", "--out", str(genesis)]
    subprocess.run(init, cwd=ROOT, check=True, capture_output=True, timeout=60)
    for did in dids:
        offline.invoke("gov", "sign", str(genesis), "--as", did)
    assert len(proposals.loads(genesis.read_bytes()).govern.proofs) == 4  # the node's and the three governors'
    node = start_node(data, extra=["--genesis", str(genesis)])
    try:
        ctl = Didctl(node, tmp_path / "keystore")
        shown = ctl.json("gov", "show")
        assert shown["governors"] == sorted(dids) and shown["threshold"] == 2 and shown["effectivePosition"] == 4
        path = tmp_path / "change.json"
        ctl.invoke("gov", "propose", "--create-policy", "open", "--out", str(path))
        ctl.invoke("gov", "sign", str(path), "--as", dids[0])
        ctl.invoke("gov", "sign", str(path), "--as", dids[1])
        ctl.invoke("gov", "submit", str(path))
        assert ctl.json("gov", "show")["create"] == "open"
        assert ctl.json("gov", "show", "--at", "4")["create"] == "registrars"
    finally:
        node.stop()


def test_a_create_no_registrar_controls_is_endorsed_then_submitted(net: Net, tmp_path: Path) -> None:
    """A device's own create, and a node's (didnode identity), endorsed by a governor from an operation file."""
    from click.testing import CliRunner

    from cli.didnode import main as didnode_main
    from didnode.core import opfile
    from didnode.service.node import create_key

    ctl = net.ctl
    device = tmp_path / "device.json"
    ctl.invoke("did", "create", "--offline", "--network", net.node.network, "--out", str(device))
    ctl.fail("did", "submit", str(device), code=1, reason="NOT_A_REGISTRAR")
    ctl.fail("did", "endorse", str(device), "--as", "did:web:example.com", code=1, reason="INVALID_DID")
    ctl.invoke("did", "endorse", str(device), "--as", net.governors[0])
    op = opfile.loads(device.read_bytes())
    assert [p.kid.partition("#")[0] for p in op.proofs] == [op.did, net.governors[0]]
    assert ctl.json("did", "submit", str(device))["did"] == op.did
    # A cluster node outside the genesis: its create exported by didnode identity.
    create_key(str(tmp_path / "node2" / "node.key"))
    out = CliRunner().invoke(didnode_main, ["identity", "--data", str(tmp_path / "node2"), "--network", net.node.network, "--out", str(tmp_path / "node2.json")])
    assert out.exit_code == 0, out.output
    ctl.invoke("did", "endorse", str(tmp_path / "node2.json"), "--as", net.governors[1])
    node2 = opfile.loads((tmp_path / "node2.json").read_bytes())
    assert ctl.json("did", "submit", str(tmp_path / "node2.json"))["did"] == node2.did
    missing = CliRunner().invoke(didnode_main, ["identity", "--data", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "holds no node key" in missing.output
