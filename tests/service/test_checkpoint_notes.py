"""Checkpoints as C2SP signed notes, end to end through a real node (issue #17 item 1).

The note is checked twice: with didnode.core.note, and with an independent
verifier written here from c2sp.org/signed-note and c2sp.org/tlog-checkpoint
(hashlib and PyNaCl only).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import subprocess
import time
from pathlib import Path

from nacl.signing import VerifyKey

from didnode.client import Client
from didnode.client.trust import policy_from_node
from didnode.client.verified import VerifiedClient
from didnode.core import note as note_codec
from didnode.core import proof_bundle
from didnode.core.checkpoint import SignedCheckpoint, decode
from didnode.core.tlog_checkpoint import parse_body, to_checkpoint
from didnode.core.transparency_verify import verify_bundle
from didnode.core.trust import TrustedLog
from tests.conftest import BIN, ROOT, start_node


def independent_verify(note: bytes, name: str, public_key: bytes) -> list[str]:
    """The note's text lines once a signature line by ``name`` verifies under ``public_key`` (from the spec)."""
    text, sep, sigs = note.partition(b"\n\n")
    assert sep and text and sigs.endswith(b"\n")
    text += b"\n"
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public_key).digest()[:4]
    found = 0
    for line in sigs[:-1].split(b"\n"):
        assert line.startswith("— ".encode())
        who, _, b64 = line[len("— ".encode()) :].partition(b" ")
        raw = base64.b64decode(b64, validate=True)
        if who.decode() == name and raw[:4] == key_id:
            VerifyKey(public_key).verify(text, raw[4:])  # raises on a bad signature
            found += 1
    assert found == 1
    return text.decode().split("\n")[:-1]


def check_note(signed: SignedCheckpoint, origin: str, public_key: bytes) -> None:
    cp = signed.checkpoint
    parsed = note_codec.parse(signed.note)
    assert to_checkpoint(parse_body(parsed.text)) == cp
    lines = independent_verify(signed.note, origin, public_key)
    assert lines == [
        origin,
        str(cp.tree_size),
        base64.b64encode(cp.log_root).decode(),
        f"didnode-network {cp.network}",
        f"didnode-state-root {base64.b64encode(cp.state_root).decode()}",
        f"didnode-time-ms {cp.time_ms}",
    ]


def test_node_signs_notes_under_its_origin(tmp_path: Path) -> None:
    n = start_node(tmp_path / "n", extra=["--origin", "x.example/log"])
    try:
        with Client(n.address) as c:
            kid, key = c.node_signer_key()
            signed = c.checkpoint()
            assert signed.kid == kid and signed.note
            check_note(signed, "x.example/log", key)
            # Every reply carrying a checkpoint carries the note.
            did = c.node_info().node_did
            sp = c.state_proof(did)
            check_note(sp.checkpoint, "x.example/log", key)
            assert c.resolve_with_proof(did).proof.checkpoint.note
            incl = c.inclusion_proof(position=0)
            assert incl.checkpoint is not None and incl.checkpoint.note
            # Bundles carry it as JSON member note and read back unchanged.
            bundle = proof_bundle.from_text(json.dumps(sp.to_json()))
            assert bundle.checkpoint == sp.checkpoint
            # The client records the origin and verifies notes.
            policy = policy_from_node(c)
            assert policy.origin == "x.example/log"
            log = TrustedLog(policy)
            assert VerifiedClient(c, log).state(did).did == did
            # Old format: the same bundle without its note verifies under a policy without witnesses.
            old = dataclasses.replace(sp, checkpoint=dataclasses.replace(sp.checkpoint, note=b""))
            old_json = old.to_json()
            assert "note" not in old_json["checkpoint"]
            old_bundle = proof_bundle.from_text(json.dumps(old_json))
            verify_bundle(old_bundle, key, did)
            TrustedLog(policy).accept(old_bundle.checkpoint, (), 0, int(time.time() * 1000))
    finally:
        n.stop()
    # Stored: the record beside the key and the checkpoints table keep the note.
    record = json.loads((tmp_path / "n" / "node.checkpoint").read_text())
    assert record["note"].startswith("x.example/log\n")
    out = subprocess.run(
        [str(BIN / "didnode"), "trust-policy", "--data", str(tmp_path / "n")], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    assert json.loads(out.stdout)["origin"] == "x.example/log"


def test_default_origin_and_restart_keeps_notes(tmp_path: Path) -> None:
    n = start_node(tmp_path / "n", network="testnet")
    try:
        with Client(n.address) as c:
            _, key = c.node_signer_key()
            first = c.checkpoint()
            check_note(first, "didnode.local/testnet", key)
    finally:
        n.stop()
    n = start_node(tmp_path / "n", network="testnet")
    try:
        with Client(n.address) as c:
            assert c.checkpoint(first.tree_size).note == first.note  # read back from the checkpoints table
    finally:
        n.stop()


def test_binary_form_is_backward_compatible() -> None:
    from nacl.signing import SigningKey

    from didnode.core.checkpoint import Checkpoint, sign
    from didnode.core.tlog_checkpoint import sign_with_note

    k = SigningKey(b"\x07" * 32)
    cp = Checkpoint("local", 3, b"\x01" * 32, b"\x02" * 32, 1_700_000_000_000)
    old = sign(cp, k, "did:dnode:Qm#key-1")
    assert decode(old.encode()) == old and len(old.encode()) == len(cp.body()) + 2 + 18 + 64
    new = sign_with_note(cp, k, "did:dnode:Qm#key-1", "didnode.local/local")
    assert decode(new.encode()) == new
    assert new.encode().startswith(old.encode())
