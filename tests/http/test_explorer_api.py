"""The explorer's JSON API (/api/v1/, issue #20) on a real node's HTTP face, and its static files.

The proofs it returns are checked with the Python verifiers (what the browser's
verifier must agree with): the state record under the state proof and the
checkpoint's state root, the entry under the inclusion proof and the log root,
the checkpoint's signed note under the node key from /api/v1/trust-policy.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pytest

from didnode.client import Client
from didnode.core import builder, entry as entry_codec, note as note_codec
from didnode.core.checkpoint import from_json as checkpoint_from_json
from didnode.core.merkle.encoding import parse_log_proof, parse_sparse_proof
from didnode.core.transparency_verify import verify_checkpoint, verify_inclusion_at, verify_state_at
from didnode.core.trust.policy import from_json as policy_from_json
from didnode.http.explorer_static import CSP
from tests.factory import Identity, new_create
from tests.http.conftest import HttpNode, Reply, get, start_http_node

FLEET = 300
SCRIPT_SERVICE = [{"id": "web", "type": "LinkedDomains", "serviceEndpoint": "https://x.example/%3Cscript%3E"}]


def api(base: str, target: str) -> Reply:
    return get(base, target)


def ok(reply: Reply) -> dict:
    assert reply.status == 200, reply.body[:500]
    assert reply.content_type.startswith("application/json")
    assert reply.headers["Content-Security-Policy"] == CSP
    return reply.json()  # type: ignore[no-any-return]


def problem(reply: Reply, status: int, reason: str | None = None) -> dict:
    assert reply.status == status, reply.body[:500]
    assert reply.content_type == "application/problem+json"
    assert reply.headers["Content-Security-Policy"] == CSP
    doc = reply.json()
    assert doc["status"] == status and doc["type"] == "about:blank" and doc["detail"]
    if reason is not None:
        assert doc["reason"] == reason, doc
    return doc  # type: ignore[no-any-return]


class Fleet:
    def __init__(self, maker: Identity, devices: list[Identity], gone: Identity, moved: Identity, other: Identity) -> None:
        self.maker, self.devices, self.gone, self.moved, self.other = maker, devices, gone, moved, other


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    n = start_http_node(tmp_path_factory.mktemp("explorer") / "node")
    yield n
    n.node.stop()


@pytest.fixture(scope="module")
def client(node: HttpNode) -> Iterator[Client]:
    with Client(node.address) as c:
        yield c


@pytest.fixture(scope="module")
def fleet(client: Client) -> Fleet:
    """A manufacturer with 300 devices (one batch), one deactivated, one transferred to another maker."""
    maker, op = new_create(services=SCRIPT_SERVICE)
    other, op2 = new_create()
    client.submit(op)
    client.submit(op2)
    pairs = [new_create(controllers=[maker]) for _ in range(FLEET)]
    outcomes = list(client.submit_batch([o for _, o in pairs]))
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes[:3]
    devices = [i for i, _ in pairs]
    gone, moved = devices[7], devices[11]
    st = client.state(gone.did)
    client.submit(builder.sign(builder.deactivate("local", gone.did, st.seq + 1, st.last, "retired"), [(maker.kid, maker.key)]))
    st = client.state(moved.did)
    client.submit(builder.sign(builder.transfer("local", moved.did, st.seq + 1, st.last, [other.did]), [(maker.kid, maker.key), (other.kid, other.key)]))
    return Fleet(maker, devices, gone, moved, other)


def test_trust_policy_is_what_didnode_trust_policy_prints(node: HttpNode) -> None:
    from cli.didnode_trust import policy_from_data

    body = ok(api(node.base, "/api/v1/trust-policy"))
    assert body == policy_from_data(str(node.node.data_dir)).to_json()
    problem(api(node.base, "/api/v1/trust-policy?x=1"), 400, "INVALID_ARGUMENT")


def test_did_page_and_its_proof_verify(node: HttpNode, fleet: Fleet) -> None:
    did = fleet.maker.did
    body = ok(api(node.base, f"/api/v1/did/{did}"))
    assert body["did"] == did and body["resolution"]["didDocument"]["id"] == did
    assert body["services"] == SCRIPT_SERVICE  # as data: the page renders it as text
    assert body["controlled"] == {"active": FLEET - 2, "deactivated": 1, "total": FLEET - 1}
    assert body["keys"][0]["fate"] == "current" and body["keys"][0]["addedTime"] > 0
    v = body["verification"]
    record = base64.b64decode(v["stateRecord"])
    signed = checkpoint_from_json(v["checkpoint"])
    policy = policy_from_json(ok(api(node.base, "/api/v1/trust-policy")))
    verify_checkpoint(signed, policy.keys[0].public_key)
    assert v["note"] == signed.note.decode() and v["treeSize"] == signed.tree_size
    proof = parse_sparse_proof(base64.b64decode(v["stateProof"]))
    state = verify_state_at(signed.checkpoint, did, record, proof)
    assert state is not None and state.to_json() == body["state"]
    # The note: the node's signature line under its origin verifies over the note's text.
    parsed = note_codec.parse(v["note"].encode())
    assert any(note_codec.verify_ed25519(parsed.text, s, policy.keys[0].public_key) for s in parsed.signatures)
    # Percent-encoded DID: the same answer.
    assert ok(api(node.base, f"/api/v1/did/{quote(did, safe='')}"))["did"] == did


def test_did_versions(node: HttpNode, fleet: Fleet) -> None:
    body = ok(api(node.base, f"/api/v1/did/{fleet.moved.did}?versionId=0"))
    assert body["versionId"] == 0 and body["controllers"] == [fleet.maker.did]
    assert body["resolution"]["didDocumentMetadata"]["nextVersionId"] == "1"
    now = ok(api(node.base, f"/api/v1/did/{fleet.moved.did}"))
    assert now["versionId"] == 1 and now["controllers"] == [fleet.other.did]
    problem(api(node.base, f"/api/v1/did/{fleet.moved.did}?versionId=9"), 404, "UNKNOWN_VERSION")
    problem(api(node.base, f"/api/v1/did/{fleet.moved.did}?versionId=-1"), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    "target, status, reason, kind",
    [
        ("/api/v1/did/did:dnode:nope", 400, "INVALID_DID", "INVALID_DID"),
        ("/api/v1/did/did:web:example.com", 501, "METHOD_NOT_SUPPORTED", "METHOD_NOT_SUPPORTED"),
        ("/api/v1/did/did:dnode:nope/history", 400, "INVALID_DID", "INVALID_DID"),
    ],
)
def test_bad_dids_answer_the_resolution_error(node: HttpNode, target: str, status: int, reason: str, kind: str) -> None:
    assert problem(api(node.base, target), status, reason)["didError"] == f"https://www.w3.org/ns/did#{kind}"


def test_unknown_did(node: HttpNode) -> None:
    did = new_create()[0].did
    for sub in ("", "/history", "/controlled", "/streams"):
        doc = problem(api(node.base, f"/api/v1/did/{did}{sub}"), 404, "UNKNOWN_DID")
        assert doc["didError"] == "https://www.w3.org/ns/did#NOT_FOUND"
    problem(api(node.base, f"/api/v1/did/{did}/nothing"), 404)


def test_history_pages(node: HttpNode, fleet: Fleet, client: Client) -> None:
    did = fleet.moved.did
    body = ok(api(node.base, f"/api/v1/did/{did}/history?limit=1"))
    assert body["total"] == 2 and body["next"] == 0
    first = body["entries"][0]
    assert first["type"] == "create" and first["seq"] == 0 and first["signers"][0].startswith(did)
    body = ok(api(node.base, f"/api/v1/did/{did}/history?after=0&limit=200"))
    assert [e["type"] for e in body["entries"]] == ["transfer"] and body["next"] is None
    assert sorted(body["entries"][0]["signers"]) == sorted([fleet.maker.kid, fleet.other.kid])
    problem(api(node.base, f"/api/v1/did/{did}/history?limit=201"), 400, "INVALID_ARGUMENT")
    problem(api(node.base, f"/api/v1/did/{did}/history?limit=0"), 400, "INVALID_ARGUMENT")
    problem(api(node.base, f"/api/v1/did/{did}/history?limit=1&limit=2"), 400, "INVALID_ARGUMENT")
    problem(api(node.base, f"/api/v1/did/{did}/history?page=2"), 400, "INVALID_ARGUMENT")


def test_controlled_counts_and_pages(node: HttpNode, fleet: Fleet) -> None:
    base = f"/api/v1/did/{fleet.maker.did}/controlled"
    expected = sorted(d.did for d in fleet.devices if d is not fleet.moved)
    seen: list[str] = []
    after = None
    while True:
        body = ok(api(node.base, base + "?limit=64" + (f"&after={after}" if after else "")))
        assert body["counts"] == {"active": FLEET - 2, "deactivated": 1, "total": FLEET - 1}
        seen += [d["did"] for d in body["dids"]]
        after = body["next"]
        if after is None:
            break
    assert seen == expected
    body = ok(api(node.base, base + "?status=deactivated"))
    assert body["dids"] == [{"did": fleet.gone.did, "status": "deactivated"}] and body["next"] is None
    assert len(ok(api(node.base, base + "?status=active&limit=500"))["dids"]) == FLEET - 2
    prefix = fleet.devices[0].did[:13]
    want = [d for d in expected if d.startswith(prefix)]
    assert [d["did"] for d in ok(api(node.base, base + f"?q={prefix}&limit=500"))["dids"]] == want
    other = ok(api(node.base, f"/api/v1/did/{fleet.other.did}/controlled"))
    assert other["counts"]["total"] == 1 and other["dids"] == [{"did": fleet.moved.did, "status": "active"}]
    problem(api(node.base, base + "?limit=501"), 400, "INVALID_ARGUMENT")
    problem(api(node.base, base + "?status=lost"), 400, "INVALID_ARGUMENT")


def test_streams_of_a_did_without_any(node: HttpNode, fleet: Fleet) -> None:
    assert ok(api(node.base, f"/api/v1/did/{fleet.maker.did}/streams")) == {"did": fleet.maker.did, "streams": [], "next": None, "evidence": []}


def test_streams_and_equivocation_evidence(node: HttpNode, client: Client) -> None:
    """A device's stream, and the second head it signed over anchored sequence numbers, kept as evidence."""
    import hashlib

    from didnode.core.data.heads import ZERO_HASH
    from didnode.errors import Equivocation
    from tests.core.data.receipt_world import Device, anchor, create

    gateway = create(client, "local")
    device = Device(create(client, "local"), "local")
    first = device.segment(4)
    at = anchor(client, gateway, [first.signed], "local")
    device.next_seq, device.last = 0, ZERO_HASH  # the device signs again over 0..3: another head
    second = device.segment(4)
    with pytest.raises(Equivocation):
        anchor(client, gateway, [second.signed], "local")
    page = ok(api(node.base, f"/api/v1/did/{device.did}/streams"))
    assert [(s["stream"], s["nextSeq"], s["heads"], s["lastPosition"]) for s in page["streams"]] == [("temp", 4, 1, at)]
    assert page["evidence"] == [{
        "stream": "temp", "first": 0, "refusedHead": base64.b64encode(second.signed.raw).decode(),
        "refusedHeadHash": hashlib.sha256(second.signed.raw).hexdigest(), "anchoredPosition": at,
    }]


def test_log_and_an_entry_with_its_inclusion_proof(node: HttpNode, fleet: Fleet) -> None:
    log = ok(api(node.base, "/api/v1/log"))
    assert log["size"] >= FLEET + 4 and log["checkpoints"][0]["treeSize"] == log["size"]
    assert log["trust"]["fingerprint"].startswith("SHA256:")
    assert [s["name"] for s in log["checkpoints"][0]["signers"]] == [log["trust"]["origin"]]
    assert log["series"] and log["series"][-1]["treeSize"] == log["size"]
    hist = ok(api(node.base, f"/api/v1/did/{fleet.gone.did}/history"))
    pos = hist["entries"][-1]["position"]
    body = ok(api(node.base, f"/api/v1/log/entry/{pos}"))
    assert body["type"] == "deactivate" and body["did"] == fleet.gone.did and body["seq"] == 1
    entry = base64.b64decode(body["entry"])
    e = entry_codec.decode(entry)
    assert e.position == pos and e.payload.decode() == body["payload"]
    assert hashlib.sha256(e.payload).hexdigest() == body["opHash"]
    inc = body["inclusion"]
    signed = checkpoint_from_json(inc["checkpoint"])
    assert inc["treeSize"] == signed.tree_size
    verify_checkpoint(signed, policy_from_json(ok(api(node.base, "/api/v1/trust-policy"))).keys[0].public_key)
    verify_inclusion_at(signed.checkpoint, entry, inc["leafIndex"], parse_log_proof(base64.b64decode(inc["proof"])))
    creates = ok(api(node.base, "/api/v1/log/entry/1"))
    assert creates["type"] == "create" and creates["did"].startswith("did:dnode:")
    for bad, status in (("x", 400), ("01", 400), ("-1", 400), (str(log["size"] + 5), 404)):
        problem(api(node.base, f"/api/v1/log/entry/{bad}"), status)
    problem(api(node.base, "/api/v1/log?limit=101"), 400, "INVALID_ARGUMENT")


def test_search(node: HttpNode, fleet: Fleet) -> None:
    did = fleet.maker.did
    assert ok(api(node.base, f"/api/v1/search?q={did}")) == {"q": did, "kind": "did", "did": did, "exists": True, "path": f"/did/{did}"}
    body = ok(api(node.base, f"/api/v1/search?q={quote(did + '#key-1', safe='')}"))
    assert body["kind"] == "did-url" and body["did"] == did and body["fragment"] == "key-1"
    body = ok(api(node.base, f"/api/v1/search?q={quote(did + '?versionId=0', safe='')}"))
    assert body["path"] == f"/did/{did}?versionId=0"
    assert ok(api(node.base, "/api/v1/search?q=3"))["kind"] == "position"
    assert ok(api(node.base, "/api/v1/search?q=hello"))["kind"] == "unknown"
    assert ok(api(node.base, "/api/v1/search?q=did:dnode:bad"))["kind"] == "unknown"
    problem(api(node.base, "/api/v1/search"), 400, "INVALID_ARGUMENT")


def test_static_files(node: HttpNode) -> None:
    for path in ("/", "/index.html", "/log", "/did/did:dnode:Qmx", "/did/did:dnode:Qmx?versionId=2", "/position/12"):
        r = get(node.base, path)
        assert r.status == 200 and r.content_type == "text/html; charset=utf-8", path
        assert r.headers["Content-Security-Policy"] == CSP and r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
    static = Path(__file__).resolve().parents[2] / "didnode" / "http" / "explorer" / "static"
    js = sorted(static.rglob("*.js"))
    if js:
        rel = js[0].relative_to(static).as_posix()
        r = get(node.base, f"/static/{rel}")
        assert r.status == 200 and r.content_type == "text/javascript; charset=utf-8" and r.body == js[0].read_bytes()
    for bad in (
        "/static/", "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2Fapp.py", "/static/.hidden", "/static//etc/passwd",
        "/static/verify/", "/static/verify", "/static/..\\app.py", "/static/x/../../explorer.py", "/static/nothing.js",
    ):
        r = get(node.base, bad)
        assert r.status == 404, bad
        assert r.headers["Content-Security-Policy"] == CSP, bad
        assert b"import" not in r.body and b"<html" not in r.body, bad


def test_the_index_after_a_restart_and_in_the_audit(node: HttpNode, fleet: Fleet, tmp_path: Path) -> None:
    """Last in this module: it restarts the node, then audits its store and a copy with one index row gone."""
    import shutil

    from didnode.errors import AuditFailed
    from didnode.ledger import controlled
    from didnode.ledger.audit import audit
    from didnode.store import layout
    from didnode.store.env import Store

    data = node.node.data_dir
    node.node.stop()
    report = audit(str(data))
    assert report.dids >= FLEET + 3
    restarted = start_http_node(data)
    try:
        body = ok(api(restarted.base, f"/api/v1/did/{fleet.maker.did}/controlled?status=deactivated"))
        assert body["counts"] == {"active": FLEET - 2, "deactivated": 1, "total": FLEET - 1}
        assert body["dids"] == [{"did": fleet.gone.did, "status": "deactivated"}]
    finally:
        restarted.node.stop()
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    store = Store(str(copy / "ledger"))
    try:
        store.write(lambda txn: txn.delete(controlled.row_key(fleet.maker.did, fleet.devices[3].did), db=store.dbs[layout.DB_CONTROLLED]))
    finally:
        store.close()
    with pytest.raises(AuditFailed) as failed:
        audit(str(copy))
    assert failed.value.details["check"] == "index" and fleet.devices[3].did in failed.value.message
