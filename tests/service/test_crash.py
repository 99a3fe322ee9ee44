"""Acknowledged means durable: kill -9 a node mid-stream; every acknowledged operation survives."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from didnode import errors
from didnode.client import Client, Receipt
from didnode.core import builder
from tests.conftest import start_node
from tests.factory import new_create, rotate_op


def test_sigkill_mid_stream_loses_no_acknowledged_operation(tmp_path: Path) -> None:
    node = start_node(tmp_path / "n")
    idents = []
    with Client(node.address) as c:
        for _ in range(100):
            ident, op = new_create()
            c.submit(op)
            idents.append(ident)
        rotations = []
        for ident in idents:
            unsigned, *_ = rotate_op(ident, c.state(ident.did))
            rotations.append(builder.sign(unsigned, [(builder.next_kid(ident.did), ident.next_key)]))
    creates = [new_create()[1] for _ in range(3000)]
    ops = [x for pair in zip(rotations, creates) for x in pair] + creates[len(rotations) :]
    acked: list[Receipt] = []
    failure: list[BaseException] = []

    def stream() -> None:
        with Client(node.address, timeout=20) as c:
            try:
                for outcome in c.submit_batch(ops, chunk_size=32, window=2):
                    assert isinstance(outcome, Receipt), outcome
                    acked.append(outcome)
            except errors.NodeUnavailable as exc:
                failure.append(exc)

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 400 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.005)
    node.kill9()
    t.join(30)
    assert not t.is_alive()
    assert failure, "the stream should have been cut by the kill"
    assert 400 <= len(acked) < len(ops)

    node = start_node(tmp_path / "n")
    try:
        with Client(node.address) as c:
            for r in acked:
                hist = c.history(r.did)
                match = [h for h in hist if h.position == r.position]
                assert match and match[0].op_hash == r.op_hash, f"acknowledged {r} is missing after kill -9"
            for ident in idents:
                hist = c.history(ident.did)
                for prev, cur in zip(hist, hist[1:]):
                    body = json.loads(cur.payload)
                    assert body["prev"] == hashlib.sha256(prev.payload).hexdigest()
                    assert body["seq"] == json.loads(prev.payload).get("seq", 0) + 1
            info = c.node_info()
            assert info.log_size >= 101 + len(acked)
    finally:
        node.stop()
