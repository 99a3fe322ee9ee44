"""``didnode serve --http ... --witness-for ORIGIN=VKEY``: a node is a witness, and checks its own ledger's roots (docs/witness.md)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nacl.signing import SigningKey

from didnode.client import Client
from didnode.core import cosignature
from didnode.core import note as note_codec
from didnode.core.checkpoint import Checkpoint
from didnode.core.tlog_checkpoint import default_origin, parse_body, sign_with_note, to_checkpoint
from didnode.witness.request import encode_add_checkpoint
from didnode.witness.state import origin_hash
from tests.conftest import RunningNode, start_node
from tests.factory import new_create
from tests.witness.conftest import RunningWitness, TestLog

ORIGIN = default_origin("local")


def _node_witness(tmp_path: Path, other: TestLog) -> tuple[RunningNode, RunningWitness, SigningKey]:
    first = start_node(tmp_path / "n")  # creates the node key
    first.stop()
    key = SigningKey(bytes.fromhex((tmp_path / "n" / "node.key").read_text().strip()))
    own = note_codec.verifier_key(ORIGIN, bytes(key.verify_key))
    n = start_node(tmp_path / "n", extra=["--http", "127.0.0.1:0", "--witness-for", f"{ORIGIN}={own}", "--witness-for", f"{other.origin}={other.vkey}"])
    assert n.proc.stdout is not None
    url = n.proc.stdout.readline().strip()
    vkey = n.proc.stdout.readline().strip()
    assert url.startswith("http://") and vkey.startswith(f"{ORIGIN}/witness+"), (url, vkey)
    return n, RunningWitness(url, vkey, tmp_path / "n", n.proc), key


def _forged(key: SigningKey, real: Checkpoint, **changes: object) -> bytes:
    cp = dataclasses.replace(real, **changes)  # type: ignore[arg-type]
    return sign_with_note(cp, key, "forged", ORIGIN).note


def test_node_cosigns_its_own_ledger_and_refuses_other_roots(tmp_path: Path) -> None:
    other = TestLog()
    other.grow(5)
    n, w, key = _node_witness(tmp_path, other)
    try:
        name, _, wkey = note_codec.parse_verifier_key(w.vkey)
        with Client(n.address) as c:
            c.submit(new_create()[1])
            signed = c.checkpoint()
        real = to_checkpoint(parse_body(note_codec.parse(signed.note).text))
        # the node's real checkpoint: cosigned (a replaying cosignature)
        r = w.post(encode_add_checkpoint(0, [], signed.note))
        assert r.status == 200, r.body
        line = r.body.decode()
        assert line.startswith(f"\u2014 {name} ")
        cosigned = note_codec.parse(signed.note + r.body)
        mine = [s for s in cosigned.signatures if cosignature.is_from(s, name, wkey)]
        assert len(mine) == 1
        cosignature.verify_cosignature(cosigned.text, mine[0], wkey, name)
        # same size, another log root: a fork of the log it replays (422, evidence)
        bad_log = _forged(key, real, log_root=b"\x01" * 32)
        r = w.post(encode_add_checkpoint(real.tree_size, [], bad_log))
        assert r.status == 422 and r.body.startswith(b"REPLAY_MISMATCH"), r.body
        # the right log root but another state root, at its current size (where it knows the state root)
        bad_state = _forged(key, real, state_root=b"\x02" * 32)
        r = w.post(encode_add_checkpoint(real.tree_size, [], bad_state))
        assert r.status == 422 and b"state root" in r.body, r.body
        evidence = sorted((tmp_path / "n" / "witness" / "evidence" / origin_hash(ORIGIN)).glob("replay-*.json"))
        assert len(evidence) == 2
        doc = json.loads(evidence[0].read_text())
        assert doc["kind"] == "replay" and doc["origin"] == ORIGIN and doc["offered"].encode() in (bad_log, bad_state)
        # beyond the node's log: it cannot replay it yet (503, retry), never cosigns it blindly
        ahead = _forged(key, real, tree_size=real.tree_size + 10)
        r = w.post(encode_add_checkpoint(real.tree_size, [b"\x00" * 32], ahead))
        assert r.status == 503 and r.body.startswith(b"WITNESS_NOT_CAUGHT_UP"), r.body
        # another log: the standalone witness's checks only
        r = w.post(other.request(0))
        assert r.status == 200, r.body
        r = w.post(encode_add_checkpoint(5, [], other.fork(3).note(3)))
        assert r.status == 400  # rollback below the held size: old > size
    finally:
        n.stop()
