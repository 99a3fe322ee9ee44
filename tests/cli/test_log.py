"""``didctl log ...`` and ``didctl audit`` against a real node (subprocess, loopback port, temporary LMDB)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import lmdb
import pytest

from cli.didctl import main
from cli.didctl_audit import audit
from cli.didctl_log import log
from didnode.client import Client
from didnode.core.encoding import b64url, b64url_decode
from didnode.store import layout
from didnode.store.readonly import snapshot
from tests.cli.conftest import Didctl
from tests.conftest import RunningNode, start_node
from tests.factory import new_create

# didctl.py is owned elsewhere; until it registers them, the tests do.
main.add_command(log)
main.add_command(audit)


@pytest.fixture(scope="module")
def dc(shared_node: RunningNode, tmp_path_factory: pytest.TempPathFactory) -> Didctl:
    return Didctl(shared_node, tmp_path_factory.mktemp("didctl-log") / "keystore")


@pytest.fixture(scope="module")
def facts(shared_node: RunningNode, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A DID on the node, its receipt, and the node's DID document and Multikey, saved to files."""
    base = tmp_path_factory.mktemp("facts")
    with Client(shared_node.address) as c:
        ident, op = new_create()
        receipt = c.submit(op)
        node_did = c.node_info().node_did
        result = c.resolve(node_did)
    (base / "node-did.json").write_text(json.dumps(result))
    key = next(m["publicKeyMultibase"] for m in result["didDocument"]["verificationMethod"] if m["id"] == f"{node_did}#key-1")
    return {"did": ident.did, "receipt": receipt, "doc": base / "node-did.json", "key": key, "base": base}


def _unused_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_checkpoint_text_and_json(dc: Didctl) -> None:
    text = dc.invoke("log", "checkpoint").stdout
    assert "tree size" in text and "state root" in text and "signer" in text
    data = dc.json("log", "checkpoint")
    cp = data["checkpoint"]
    assert set(cp) == {"network", "treeSize", "logRoot", "stateRoot", "timeMs", "kid", "signature", "note"}
    assert cp["note"].startswith("didnode.local/local\n") and "origin" in text
    assert cp["kid"].endswith("#key-1") and len(cp["signature"]) == 128


def test_prove_and_verify_offline_every_way(dc: Didctl, facts: dict[str, Any], tmp_path: Path) -> None:
    r = facts["receipt"]
    incl = tmp_path / "incl.json"
    out = dc.json("log", "prove", "inclusion", "--hash", r.op_hash.hex(), "--out", str(incl))
    assert out["type"] == "didnode/inclusion-proof/v1" and incl.exists()
    by_pos = json.loads(dc.invoke("log", "prove", "inclusion", "--position", str(r.position)).stdout)
    assert by_pos["leafIndex"] == r.position
    state = tmp_path / "state.json"
    dc.invoke("log", "prove", "state", facts["did"], "-o", str(state))
    absent = tmp_path / "absent.json"
    dc.invoke("log", "prove", "state", new_create()[0].did, "-o", str(absent))
    assert json.loads(absent.read_text())["present"] is False

    offline = {"DIDNODE_ADDR": _unused_address()}  # nothing listens: proves no node is asked
    ok = dc.json("log", "verify-proof", str(incl), "--signer-key", facts["key"], **offline)
    assert ok["ok"] is True and ok["kind"] == "inclusion" and r.op_hash.hex() in ok["summary"]
    ok = dc.json("log", "verify-proof", str(state), "--node-did-document", str(facts["doc"]), **offline)
    assert ok["kind"] == "state" and facts["did"] in ok["summary"]
    assert ok["state"]["did"] == facts["did"] and ok["state"]["status"] == "active"  # the proven record, decoded
    text = dc.invoke("log", "verify-proof", str(absent), "--signer-key", facts["key"], **offline).stdout
    assert text.startswith("ok: ") and "does not exist" in text
    fetched = dc.invoke("log", "verify-proof", str(state))
    assert "trusting the DID document the node" in fetched.stderr
    piped = dc.invoke("log", "verify-proof", "-", "--signer-key", facts["key"], input=state.read_text(), **offline)
    assert piped.stdout.startswith("ok: ")


def test_consistency_bundle(dc: Didctl, tmp_path: Path) -> None:
    old = dc.json("log", "checkpoint")["checkpoint"]["treeSize"]
    with Client(dc.node.address) as c:
        c.submit(new_create()[1])
    path = tmp_path / "cons.json"
    dc.invoke("log", "prove", "consistency", "--from", str(old), "-o", str(path))
    bundle = json.loads(path.read_text())
    assert bundle["size1"] == old and bundle["checkpoint1"]["treeSize"] == old
    assert dc.json("log", "verify-proof", str(path))["kind"] == "consistency"


def test_verify_proof_failures_are_one_line(dc: Didctl, facts: dict[str, Any], tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    dc.invoke("log", "prove", "state", facts["did"], "-o", str(state))
    offline = {"DIDNODE_ADDR": _unused_address()}
    other_key = "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    dc.fail("log", "verify-proof", str(state), "--signer-key", other_key, code=1, reason="BAD_CHECKPOINT_SIGNATURE", **offline)
    bundle = json.loads(state.read_text())
    proof = bytearray(bytes.fromhex(bundle["proof"]))
    proof[-1] ^= 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**bundle, "proof": proof.hex()}))
    dc.fail("log", "verify-proof", str(bad), "--signer-key", facts["key"], code=1, reason="ROOT_MISMATCH", **offline)
    record = bytearray(b64url_decode(bundle["stateRecord"]))
    record[5] ^= 7  # the low byte of seq (u32 at offset 2): another state, so another leaf value
    bad.write_text(json.dumps({**bundle, "stateRecord": b64url(bytes(record))}))
    dc.fail("log", "verify-proof", str(bad), "--signer-key", facts["key"], code=1, reason="ROOT_MISMATCH", **offline)
    bad.write_text("{}")
    dc.fail("log", "verify-proof", str(bad), "--signer-key", facts["key"], code=1, reason="MALFORMED_PROOF", **offline)
    res = dc.fail("--json", "log", "verify-proof", str(tmp_path / "missing.json"), "--signer-key", facts["key"], code=1, reason="LOCAL_ERROR", **offline)
    assert json.loads(res.stdout)["error"]["reason"] == "LOCAL_ERROR"
    dc.fail("log", "verify-proof", str(state), "--max-age", "0", "--signer-key", facts["key"], code=1, reason="STALE_CHECKPOINT", **offline)


def test_bad_arguments_and_unreachable_node(dc: Didctl) -> None:
    dc.fail("log", "prove", "inclusion", code=1, reason="INVALID_ARGUMENT")
    dc.fail("log", "prove", "inclusion", "--hash", "abcd", code=1, reason="INVALID_ARGUMENT")
    dc.fail("log", "prove", "inclusion", "--position", "999999", code=1, reason="UNKNOWN_OPERATION")
    dc.fail("log", "prove", "state", "did:example:x", code=1, reason="INVALID_DID")
    dc.fail("log", "checkpoint", code=3, reason="NODE_UNAVAILABLE", DIDNODE_ADDR=_unused_address())


def test_audit_ok_and_tampered(tmp_path: Path, dc: Didctl) -> None:
    node = start_node(tmp_path / "node")
    try:
        with Client(node.address) as c:
            for _ in range(20):
                c.submit(new_create()[1])
            c.checkpoint()
        live = dc.json("audit", "--data", str(tmp_path / "node"), "--snapshot")  # safe on a running node
        assert live["ok"] is True and live["entries"] == 21
    finally:
        node.stop()
    data = dc.json("audit", "--data", str(tmp_path / "node"))
    assert data["entries"] == 21 and data["dids"] == 21 and data["checkpoints"] == 1
    assert data["logRoot"] == live["logRoot"]
    text = dc.invoke("audit", "--data", str(tmp_path / "node")).stdout
    assert text.startswith("ok: 21 entries, 21 DIDs, 1 checkpoint(s) verified")

    snapshot(str(tmp_path / "node"), str(tmp_path / "copy"))
    env = lmdb.open(str(tmp_path / "copy" / "ledger"), readonly=True, lock=False, max_dbs=16)
    with env.begin() as txn:
        entry = bytes(txn.get(layout.u64(9), db=env.open_db(layout.DB_LOG, txn=txn, create=False)))
    env.close()
    file = tmp_path / "copy" / "ledger" / "data.mdb"
    raw = bytearray(file.read_bytes())
    raw[raw.find(entry) + 200] ^= 4
    file.write_bytes(bytes(raw))
    res = dc.fail("audit", "--data", str(tmp_path / "copy"), code=1, reason="AUDIT_FAILED")
    assert res.stderr.startswith("didctl: position 9: ")
    res = dc.fail("--json", "audit", "--data", str(tmp_path / "copy"), code=1, reason="AUDIT_FAILED")
    assert json.loads(res.stdout)["error"]["details"] == {"position": "9", "check": "operation"}
