"""The witness's state survives kill -9: after a restart it refuses a fork of what it cosigned, and one process per data directory."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from didnode.errors import WitnessDataLocked
from didnode.witness.state import WitnessStore
from tests.witness.conftest import TestLog, start_witness


def test_kill9_between_adds_then_fork_refused(tmp_path: Path) -> None:
    log = TestLog()
    logs = [f"{log.origin}={log.vkey}"]
    w = start_witness(tmp_path / "w", logs)
    log.grow(5)
    assert w.post(log.request(0)).status == 200
    log.grow(4)
    assert w.post(log.request(5)).status == 200  # the reply came: the state was durable before it
    vkey = w.vkey
    w.stop(signal.SIGKILL)
    w = start_witness(tmp_path / "w", logs)
    try:
        assert w.vkey == vkey  # same key, not regenerated
        fork = log.fork(7)
        fork.grow(2, b"other")
        assert w.post(fork.request(9)).status == 422  # same size, another root
        assert w.post(fork.request(0)).content_type == "text/x.tlog.size"
        w.stop(signal.SIGKILL)
        w = start_witness(tmp_path / "w", logs)
        assert w.post(log.request(0)).body == b"9\n"
        log.grow(1)
        assert w.post(log.request(9)).status == 200
        files = list((tmp_path / "w" / "evidence").rglob("*.json"))
        assert [f.name.split("-")[0] for f in files] == ["fork"]
    finally:
        w.stop()


def test_one_process_per_data_directory(tmp_path: Path) -> None:
    log = TestLog()
    w = start_witness(tmp_path / "w", [f"{log.origin}={log.vkey}"])
    try:
        with pytest.raises(WitnessDataLocked):
            WitnessStore(tmp_path / "w")
    finally:
        w.stop()
    WitnessStore(tmp_path / "w").close()
