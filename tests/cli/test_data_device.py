"""didctl data record / anchor / gateway: a device's readings into its store, anchored by itself or a gateway (issue #19)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from didnode.client import Client
from didnode.data.store import SegmentStore
from tests.cli.conftest import Didctl

LINES = "".join(f'{{"temp":{20 + i}}}\n' for i in range(7))


def test_record_then_anchor_itself(ctl: Didctl, tmp_path: Path) -> None:
    did = ctl.create()
    store = tmp_path / "store"
    res = ctl.invoke("--json", "data", "record", "--as", did, "--stream", "temp", "--store", str(store), "--segment-size", "3", input=LINES)
    data = json.loads(res.stdout)
    assert (data["recorded"], data["first"], data["next"], data["pending"]) == (7, 0, 7, 3)
    out = ctl.json("data", "anchor", "--as", did, "--stream", "temp", "--store", str(store))
    assert [(h["first"], h["count"], h["anchored"]) for h in out["heads"]] == [(0, 3, True), (3, 3, True), (6, 1, True)]
    assert SegmentStore(store).pending_heads() == []
    # a second run continues the stream (no reused sequence number) and anchors in the same command
    text = ctl.invoke("data", "record", "--as", did, "--stream", "temp", "--store", str(store), "--anchor", input='{"temp":1}\n').stdout
    assert "recorded 1 readings of temp (7..7)" in text and "anchored temp 7..7 at position" in text
    with Client(ctl.node.address) as c:
        assert c.anchor(did, "temp", 7).first == 7
    # nothing pending: nothing to do
    assert "no pending head" in ctl.invoke("data", "anchor", "--as", did, "--stream", "temp", "--store", str(store)).stdout


def test_bad_inputs_are_one_line(ctl: Didctl, tmp_path: Path) -> None:
    did = ctl.create()
    store = str(tmp_path / "s")
    ctl.fail("data", "record", "--as", did, "--stream", "temp", "--store", store, input='{"ok":1}\nnot json\n', code=1, reason="INVALID_ARGUMENT")
    ctl.fail("data", "record", "--as", did, "--stream", "temp", "--store", store, "--anchor", "--gateway", "127.0.0.1:1", input="", code=1, reason="INVALID_ARGUMENT")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"t":1}\n\xff\xfe\n')
    r = ctl.fail("data", "record", "--as", did, "--stream", "temp", "--store", store, "--file", str(bad), code=1, reason="INVALID_ARGUMENT")
    assert "not UTF-8 text" in r.stderr
    other = ctl.create()
    ctl.fail("data", "record", "--as", other, "--stream", "temp", "--store", store, input="1\n", code=1, reason="DATA_STORE_INVALID")
    ctl.fail("data", "record", "--as", did, "--stream", "bad stream", "--store", store, input="", code=1, reason="MALFORMED_HEAD")


def test_gateway_command(ctl: Didctl, tmp_path: Path) -> None:
    gw = ctl.create()
    dev = ctl.create()
    ctl.trust()
    env = {k: v for k, v in os.environ.items()}
    env.update({k: v for k, v in ctl.env().items() if v is not None})
    env.pop("DIDCTL_TRUST", None)
    didctl = str(Path(sys.executable).parent / "didctl")
    proc = subprocess.Popen([didctl, "data", "gateway", "--as", gw, "--listen", "127.0.0.1:0", "--linger", "0.01", "--max-seconds", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), proc.stderr.read() if proc.poll() is not None and proc.stderr else address
        store = tmp_path / "dev"
        text = ctl.invoke("data", "record", "--as", dev, "--stream", "s1", "--store", str(store), "--segment-size", "2", "--gateway", address, input=LINES).stdout
        assert text.count("anchored s1") == 4 and "not anchored" not in text
        assert SegmentStore(store).pending_heads() == []
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped: " in out and "0 heads refused" in out
    r = ctl.invoke("data", "gateway", "--as", gw, "--listen", "0.0.0.0:0", code=1)
    assert r.stderr.strip().endswith("[INVALID_ARGUMENT]")
