"""didctl data receipt / verify: a receipt from a device's segment store and the node, verified offline (issue #19)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from didnode.client import Client
from didnode.client.trust import policy_from_node
from didnode.core.data import receipt as rc
from didnode.data.recorder import Recorder
from didnode.data.store import SegmentStore
from tests.cli.conftest import Didctl
from tests.core.data.receipt_world import anchor, create

NET = "local"


@pytest.fixture(scope="module")
def device(ctl: Didctl, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """A device with 8 readings in two signed segments, the first anchored; its store and a trust policy file."""
    base = tmp_path_factory.mktemp("device")
    with Client(ctl.node.address) as c:
        gateway = create(c, NET)
        ident = create(c, NET)
        store = base / "store"
        with Recorder(store, NET, ident.did, "key-1", ident.key, "temp", segment_size=4) as rec:
            for i in range(8):
                rec.record(f'{{"temp":{20 + i}}}'.encode(), 1_750_000_000_000 + i)
        heads = SegmentStore(store).pending_heads("temp")
        assert len(heads) == 2
        anchor(c, gateway, heads[:1], NET)
        trust = base / "trust.json"
        trust.write_text(policy_from_node(c).dumps())
    return ident.did, store, trust


def test_receipt_then_verify(ctl: Didctl, device: tuple[str, Path, Path], tmp_path: Path) -> None:
    did, store, trust = device
    out = tmp_path / "r.json"
    res = ctl.invoke("data", "receipt", did, "temp", "2", "--store", str(store), "--out", str(out))
    assert "wrote the receipt" in res.stdout and out.exists()
    text = ctl.invoke("data", "verify", str(out)).stdout
    assert text.startswith(f"verified: {out}") and did in text and "sequence number 2" in text
    assert '{"temp":22}' in text and "still current" in text
    # offline: no node at all, only the file and a trust policy
    offline = ctl.json("--node", "127.0.0.1:1", "data", "verify", str(out), "--trust", str(trust))
    assert offline["verified"] and offline["did"] == did and offline["seq"] == 2 and offline["payloadPresent"]
    assert offline["key"] == f"{did}#key-1" and offline["keyValidUntil"] is None and offline["position"] < offline["checkpointSize"]
    doc = json.loads(out.read_text())
    assert doc["format"] == rc.FORMAT and doc["reading"]["index"] == 2
    # The receipt's checkpoint extended the latest one this client verified: the trust store advanced to it.
    listed = ctl.json("trust", "list")["entries"]
    assert [e["latestSize"] for e in listed] == [offline["checkpointSize"]]


def test_withheld_payload(ctl: Didctl, device: tuple[str, Path, Path], tmp_path: Path) -> None:
    did, store, trust = device
    out = tmp_path / "w.json"
    data = ctl.json("data", "receipt", did, "temp", "1", "--store", str(store), "--withhold-payload", "--out", str(out))
    assert data["payload"] is False and data["verified"] is True
    assert "payload" in out.read_text() and json.loads(out.read_text())["reading"]["payload"] is None
    text = ctl.invoke("data", "verify", str(out), "--trust", str(trust)).stdout
    assert "withheld (commitment" in text


def test_failures_are_one_line(ctl: Didctl, device: tuple[str, Path, Path], tmp_path: Path) -> None:
    did, store, trust = device
    out = tmp_path / "r.json"
    ctl.invoke("data", "receipt", did, "temp", "0", "--store", str(store), "--out", str(out))
    # signed but not anchored; and not even signed
    ctl.fail("data", "receipt", did, "temp", "5", "--store", str(store), "--out", str(tmp_path / "x.json"), code=1, reason="UNKNOWN_ANCHOR")
    ctl.fail("data", "receipt", did, "temp", "99", "--store", str(store), "--out", str(tmp_path / "x.json"), code=1, reason="UNKNOWN_ANCHOR")
    assert not (tmp_path / "x.json").exists()
    doc = json.loads(out.read_text())
    doc["reading"]["payload"] = rc.b64url(b'{"temp":99}')
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = ctl.fail("data", "verify", str(bad), "--trust", str(trust), code=1, reason="RECEIPT_INVALID")
    assert "commitment" in r.stderr
    bad.write_bytes(b"\xff{not json")
    ctl.fail("data", "verify", str(bad), "--trust", str(trust), code=1, reason="RECEIPT_INVALID")
    ctl.fail("data", "verify", str(tmp_path / "missing.json"), "--trust", str(trust), code=1, reason="RECEIPT_INVALID")
    (tmp_path / "t.json").write_text("{}")
    ctl.fail("data", "verify", str(out), "--trust", str(tmp_path / "t.json"), code=6, reason="TRUST_POLICY_INVALID")
    ctl.auto_trust = False
    try:
        ctl.fail("--node", "127.0.0.1:1", "data", "verify", str(out), code=6, reason="UNKNOWN_NODE")
    finally:
        ctl.auto_trust = True
    ctl.fail("data", "receipt", "did:dnode:nope", "temp", "0", "--store", str(store), "--out", str(out), code=1, reason="INVALID_DID")


def test_a_receipt_extends_the_latest_verified_checkpoint(ctl: Didctl, device: tuple[str, Path, Path], tmp_path: Path) -> None:
    """After the log grew, the receipt's checkpoint is checked for consistency with the trust store's latest, which advances."""
    did, store, _ = device
    ctl.invoke("data", "receipt", did, "temp", "1", "--store", str(store), "--out", str(tmp_path / "a.json"))
    before = ctl.json("trust", "list")["entries"][0]["latestSize"]
    with Client(ctl.node.address) as c:
        create(c, NET)  # the log grows
    out = ctl.json("data", "receipt", did, "temp", "1", "--store", str(store), "--out", str(tmp_path / "b.json"))
    after = ctl.json("trust", "list")["entries"][0]["latestSize"]
    assert out["checkpointSize"] == after > before
