"""``didnode serve --witness``: a real node has its checkpoints cosigned by standalone witnesses (docs/witness.md)."""

from __future__ import annotations

import dataclasses
import time
import urllib.request
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from prometheus_client.parser import text_string_to_metric_families

from didnode import errors
from didnode.client import Client
from didnode.client.trust import policy_from_node
from didnode.client.verified import VerifiedClient
from didnode.core import cosignature
from didnode.core import note as note_codec
from didnode.core.trust import TrustedLog
from didnode.core.trust.policy import WitnessKey
from didnode.core.tlog_checkpoint import default_origin
from tests.conftest import start_node
from tests.factory import new_create
from tests.witness.conftest import start_witness

ORIGIN = default_origin("local")


def _cosigners(note: bytes, witnesses: list[tuple[str, bytes]]) -> int:
    n = note_codec.parse(note)
    good = 0
    for name, key in witnesses:
        for sig in n.signatures:
            if cosignature.is_from(sig, name, key):
                cosignature.verify_cosignature(n.text, sig, key, name)
                good += 1
    return good


def test_node_collects_cosignatures_and_survives_a_dead_witness(tmp_path: Path) -> None:
    first = start_node(tmp_path / "n")  # creates the node key
    first.stop()
    key = SigningKey(bytes.fromhex((tmp_path / "n" / "node.key").read_text().strip()))
    log_vkey = note_codec.verifier_key(ORIGIN, bytes(key.verify_key))
    ws = [start_witness(tmp_path / f"w{i}", [f"{ORIGIN}={log_vkey}"], ["--name", f"witness.test/w{i}"]) for i in range(3)]
    ws[2].stop()  # configured at the node, but down
    extra = []
    for w in ws:
        extra += ["--witness", f"{w.url}={w.vkey}"]
    n = start_node(tmp_path / "n", extra=extra + ["--log-level", "info", "--http", "127.0.0.1:0"])
    assert n.proc.stdout is not None
    http_url = n.proc.stdout.readline().strip()
    try:
        keys = [(note_codec.parse_verifier_key(w.vkey)[0], note_codec.parse_verifier_key(w.vkey)[2]) for w in ws[:2]]
        with Client(n.address) as c:
            _, op = new_create()
            c.submit(op)
            deadline = time.monotonic() + 20
            cp = c.checkpoint()
            while time.monotonic() < deadline:
                cp = c.checkpoint()
                if cp.tree_size >= 2 and _cosigners(cp.note, keys) == 2:
                    break
                time.sleep(0.1)
            assert cp.tree_size >= 2 and _cosigners(cp.note, keys) == 2, cp.note
            base = policy_from_node(c)
            two = dataclasses.replace(base, witnesses=tuple(WitnessKey.from_vkey(w.vkey) for w in ws[:2]), witness_threshold=2, latest=None)
            node_did = c.node_info().node_did
            assert VerifiedClient(c, TrustedLog(two)).state(node_did).did == node_did
            stranger = note_codec.verifier_key("witness.test/unknown", bytes(SigningKey.generate().verify_key), note_codec.COSIGNATURE_V1)
            three = dataclasses.replace(two, witnesses=two.witnesses + (WitnessKey.from_vkey(stranger),), witness_threshold=3)
            with pytest.raises(errors.CheckpointBelowThreshold):
                VerifiedClient(c, TrustedLog(three)).state(node_did)
            # the log keeps growing and is cosigned again (consistency proofs from the witnesses' sizes)
            size = cp.tree_size
            _, op = new_create()
            c.submit(op)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                cp = c.checkpoint()
                if cp.tree_size > size and _cosigners(cp.note, keys) == 2:
                    break
                time.sleep(0.1)
            assert cp.tree_size > size and _cosigners(cp.note, keys) == 2
            # /metrics: the cosigned checkpoints and the dead witness's failures (prometheus_client's parser)
            with urllib.request.urlopen(f"{http_url}/metrics", timeout=10) as reply:
                families = {f.name: f for f in text_string_to_metric_families(reply.read().decode())}
            failures = {s.labels["witness"]: s.value for s in families["didnode_witness_failures"].samples}
            assert failures[ws[2].url] >= 1 and failures[ws[0].url] == 0
            assert families["didnode_checkpoints_cosigned"].samples[0].value >= 2
    finally:
        n.stop()
        err = n.proc.stderr.read() if n.proc.stderr else ""
        for w in ws[:2]:
            w.stop()
    assert "did not cosign" in err and ws[2].url in err  # the dead witness is logged
