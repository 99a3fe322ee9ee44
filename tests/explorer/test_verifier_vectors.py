"""The page's JavaScript verifier agrees with the Python verifier, run in the browser on the shared vectors.

The browser loads ``/static/selftest.html`` from a real node and runs ``selftest.js`` (the page's own
verifier modules) over what this test injects:

* every proof vector of ``tests/core/merkle/vectors`` (inclusion, consistency, sparse presence and
  absence, valid and each way of being wrong) and every checkpoint signature vector of
  ``tests/core/checkpoint/vectors``: the JS verdict is the file's (which the Python tests check);
* checkpoint notes against trust policies (k of n checkpoint keys, witness cosignatures, altered,
  untrusted, malformed, wrong origin or network, a cosignature from the future), each verdict
  compared with ``verify_note_signers``;
* state records and single-byte mutations of them: the JS decoder accepts exactly what
  ``DidState.from_record`` accepts, with the same JSON view.
"""

from __future__ import annotations

import base64
import json
import random
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from nacl.signing import SigningKey

from didnode.core import cosignature
from didnode.core import note as note_codec
from didnode.core.checkpoint import Checkpoint
from didnode.core.encoding import ED25519_PUB, multikey_encode
from didnode.core.keystate import DidState
from didnode.core.keystate.state import KeyRecord
from didnode.core.tlog_checkpoint import add_signatures, sign_with_note
from didnode.core.trust.policy import TrustedKey, TrustPolicy, WitnessKey
from didnode.core.trust.witnessed import verify_note_signers
from didnode.errors import DidnodeError
from tests.http.conftest import HttpNode, start_http_node

ROOT = Path(__file__).resolve().parents[2]
MERKLE = sorted((ROOT / "tests/core/merkle/vectors").glob("*.json"))
CHECKPOINT = sorted((ROOT / "tests/core/checkpoint/vectors").glob("*.json"))

# Python's error class -> the JS verifier's VerifyError kind.
KINDS = {
    "MalformedProof": "MALFORMED",
    "MalformedNote": "MALFORMED",
    "RootMismatch": "ROOT_MISMATCH",
    "BadCheckpointSignature": "BAD_SIGNATURE",
    "ProofClaimMismatch": "CLAIM_MISMATCH",
    "UntrustedCheckpointSigner": "UNTRUSTED_SIGNER",
    "CheckpointBelowThreshold": "BELOW_THRESHOLD",
    "BadCosignature": "BAD_COSIGNATURE",
    "CosignatureTimeSkew": "TIME_SKEW",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    n = start_http_node(tmp_path_factory.mktemp("selftest") / "node")
    yield n
    n.node.stop()


def run_in_browser(page: Any, base: str, items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    page.goto(base + "/static/selftest.html")
    results = page.evaluate("async (items) => (await import('/static/selftest.js')).runAll(items)", items)
    return {r["name"]: r for r in results}


def test_proof_and_checkpoint_vectors(page: Any, node: HttpNode) -> None:
    items = [{"kind": "merkle", "name": f.stem, "vector": json.loads(f.read_text())} for f in MERKLE]
    items += [{"kind": "checkpoint", "name": f.stem, "vector": json.loads(f.read_text())} for f in CHECKPOINT]
    got = run_in_browser(page, node.base, items)
    wrong = []
    for it in items:
        expect = it["vector"]["expect"]
        want = "ok" if expect == "ok" else KINDS[expect]
        if got[it["name"]]["verdict"] != want:
            wrong.append((it["name"], want, got[it["name"]]))
    print(f"\n{len(items)} shared vectors, JS verdicts equal to the files' (and so to Python's): {len(items) - len(wrong)}")
    assert not wrong, wrong
    assert len(items) == len(MERKLE) + len(CHECKPOINT) > 90


def _policy(keys: list[SigningKey], threshold: int, witnesses: list[tuple[str, SigningKey]], wt: int, origin: str = "explorer.test/log") -> TrustPolicy:
    return TrustPolicy.create(
        "local", bytes(32), [TrustedKey(f"did:dnode:QmNode{i}#key-1", bytes(k.verify_key)) for i, k in enumerate(keys)], threshold,
        origin=origin, witnesses=[WitnessKey(n, bytes(k.verify_key)) for n, k in witnesses], witness_threshold=wt,
    )


def _note_cases() -> list[tuple[str, TrustPolicy, bytes, int | None]]:
    rnd = random.Random(20)
    a, b, c = (SigningKey(bytes(rnd.randrange(256) for _ in range(32))) for _ in range(3))
    w1, w2 = (SigningKey(bytes(rnd.randrange(256) for _ in range(32))) for _ in range(2))
    now_ms = int(time.time() * 1000)
    cp = Checkpoint("local", 1234, bytes(range(32)), bytes(range(32, 64)), now_ms - 1000)
    origin = "explorer.test/log"
    by_a = sign_with_note(cp, a, "did:dnode:QmNode0#key-1", origin)
    by_b = sign_with_note(cp, b, "did:dnode:QmNode1#key-1", origin)
    body = note_codec.parse(by_a.note).text
    b_sig = note_codec.parse(by_b.note).signatures[0]
    ts = now_ms // 1000
    cos1 = cosignature.cosign(body, "witness.test/w1", w1, ts)
    cos2 = cosignature.cosign(body, "witness.test/w2", w2, ts)
    future = cosignature.cosign(body, "witness.test/w1", w1, ts + 3600)
    both = add_signatures(by_a, b_sig).note
    witnessed = add_signatures(by_a, cos1, cos2).note
    one_witness = add_signatures(by_a, cos1).note
    bad_cos = add_signatures(by_a, note_codec.NoteSignature(cos1.name, cos1.key_hash, cos1.signature[:-1] + bytes([cos1.signature[-1] ^ 1]))).note
    flipped = bytearray(by_a.note)
    sig_line = flipped.rindex("— ".encode()) + 4 + len(origin)
    flipped[sig_line + 10] = ord("A") if flipped[sig_line + 10] != ord("A") else ord("B")
    p1 = _policy([a], 1, [], 0)
    p2 = _policy([a, b], 2, [], 0)
    pw = _policy([a], 1, [("witness.test/w1", w1), ("witness.test/w2", w2)], 2)
    pw1 = _policy([a], 1, [("witness.test/w1", w1), ("witness.test/w2", w2)], 1)
    return [
        ("one key, threshold 1", p1, by_a.note, now_ms),
        ("two keys, threshold 2, one signature", p2, by_a.note, now_ms),
        ("two keys, threshold 2, both signed", p2, both, now_ms),
        ("signature of an untrusted key only", _policy([c], 1, [], 0), by_a.note, now_ms),
        ("altered signature", p1, bytes(flipped), now_ms),
        ("altered tree size", p1, by_a.note.replace(b"\n1234\n", b"\n1235\n", 1), now_ms),
        ("other origin", _policy([a], 1, [], 0, origin="other.test/log"), by_a.note, now_ms),
        ("two witnesses needed, two cosigned", pw, witnessed, now_ms),
        ("two witnesses needed, one cosigned", pw, one_witness, now_ms),
        ("one witness needed, one cosigned", pw1, one_witness, now_ms),
        ("a witness cosignature altered", pw1, bad_cos, now_ms),
        ("a cosignature an hour in the future", pw1, add_signatures(by_a, future).note, now_ms),
        ("a cosignature an hour in the future, historical check", pw1, add_signatures(by_a, future).note, None),
        ("no blank line", p1, by_a.note.replace(b"\n\n", b"\n", 1), now_ms),
        ("an extension line more", p1, by_a.note.replace(b"\n\n", b"\nextra line\n\n", 1), now_ms),
        ("no newline at the end", p1, by_a.note[:-1], now_ms),
    ]


def test_checkpoint_notes_against_trust_policies(page: Any, node: HttpNode) -> None:
    cases = _note_cases()
    items = [{"kind": "note", "name": name, "vector": {"policy": p.to_json(), "note": n.decode("utf-8", "replace"), "nowMs": now}} for name, p, n, now in cases]
    got = run_in_browser(page, node.base, items)
    for name, policy, note, now in cases:
        try:
            signers = verify_note_signers(policy, note, now)
            want, value = "ok", {"treeSize": signers.checkpoint.tree_size, "signers": signers.signers, "cosigners": signers.cosigners}
        except DidnodeError as exc:
            want, value = KINDS[type(exc).__name__], None
        js = got[name]
        assert js["verdict"] == want, (name, js)
        if value is not None:
            assert js["value"] == value, (name, js)
    assert {r["verdict"] for r in got.values()} >= {"ok", "BELOW_THRESHOLD", "BAD_SIGNATURE", "UNTRUSTED_SIGNER", "CLAIM_MISMATCH", "BAD_COSIGNATURE", "TIME_SKEW", "MALFORMED"}


def _states() -> list[DidState]:
    did = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
    mk = lambda seed: multikey_encode(bytes([seed]) * 32, ED25519_PUB)  # noqa: E731
    k1 = KeyRecord("key-1", "Ed25519", mk(1), ("assertionMethod", "authentication"), "rotated", 0, 5, 1, 9)
    k2 = KeyRecord("key-2", "Ed25519", mk(2), ("authentication",), "revoked", 1, 9, 2, 12, "lost <script>alert(1)</script> — ünïcode")
    k3 = KeyRecord("key-3", "Ed25519", mk(3), ("assertionMethod",), "current", 3, 15)
    last = "ab" * 32
    return [
        DidState(did, 0, last, "active", "cd" * 32, (), (), (k3,), 5, 1700000000000, 5, 1700000000000),
        DidState(did, 3, last, "active", "cd" * 32, ("did:dnode:QmMaker1", "did:dnode:QmMaker2"),
                 ({"id": "mqtt", "type": "MQTTBroker", "serviceEndpoint": "mqtts://b.example:8883/x?y=1"},), (k1, k2, k3), 5, 1700000000000, 15, 1700000009000,
                 ({"id": "revocation-1", "mediaType": "application/vc+jwt", "hash": "ef" * 32, "pos": 14, "seq": 2},)),
        DidState(did, 4, last, "deactivated", "", (), (), (k1,), 5, 1700000000000, 20, 1700000020000),
    ]


def _beyond_2_53(v: Any) -> bool:
    if isinstance(v, dict):
        return any(_beyond_2_53(x) for x in v.values())
    if isinstance(v, list):
        return any(_beyond_2_53(x) for x in v)
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53 - 1


def test_state_records_decode_exactly_as_in_python(page: Any, node: HttpNode) -> None:
    rnd = random.Random(7)
    records: list[tuple[str, bytes]] = []
    for i, st in enumerate(_states()):
        rec = st.to_record()
        records.append((f"state {i}", rec))
        records.append((f"state {i} truncated", rec[:-1]))
        records.append((f"state {i} trailing byte", rec + b"\0"))
        for j in range(40):
            m = bytearray(rec)
            m[rnd.randrange(len(m))] ^= 1 << rnd.randrange(8)
            records.append((f"state {i} mutation {j}", bytes(m)))
    items = [{"kind": "record", "name": name, "vector": rec.hex()} for name, rec in records]
    got = run_in_browser(page, node.base, items)
    accepted = 0
    for name, rec in records:
        try:
            want: Any = DidState.from_record(rec).to_json()
            if _beyond_2_53(want):
                want = None  # the JS verifier refuses 64-bit numbers beyond 2^53 - 1 (docs/explorer.md)
        except DidnodeError:
            want = None
        except Exception:  # noqa: BLE001 - e.g. a UnicodeDecodeError the decoder lets through: a refusal all the same
            want = None
        js = got[name]
        if want is None:
            assert js["verdict"] == "MALFORMED", (name, js)
        else:
            accepted += 1
            assert js["verdict"] == "ok", (name, js)
            assert js["value"] == want, (name, json.dumps(js["value"]["keys"]), json.dumps(want["keys"]))
    print(f"\n{len(records)} state records, {accepted} accepted by both decoders, {len(records) - accepted} refused by both")
