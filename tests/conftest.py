"""Shared fixtures: real nodes on loopback ports with temporary LMDB stores.

``node`` starts ``didnode serve`` as a subprocess (port 0, address read
from its first stdout line) and stops it with SIGTERM; no gRPC or LMDB mock
exists anywhere in the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Keystores in tests use the cheap Argon2id preset; production default is "moderate".
os.environ.setdefault("DIDCTL_KDF", "interactive")


@dataclass
class RunningNode:
    address: str
    data_dir: Path
    proc: subprocess.Popen[str]
    network: str

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


def start_node(data_dir: Path, network: str = "local", listen: str = "127.0.0.1:0", extra: list[str] | None = None) -> RunningNode:
    """Start a node subprocess and wait (bounded) for its address line."""
    cmd = [str(BIN / "didnode"), "serve", "--data", str(data_dir), "--listen", listen, "--network", network, "--log-level", "warning"]
    cmd += extra or []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if line or proc.poll() is not None:
            break
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        proc.kill()
        raise RuntimeError(f"node did not start: {err}")
    return RunningNode(line, data_dir, proc, network)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    """A fresh node for one test."""
    n = start_node(tmp_path / "node")
    yield n
    n.stop()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One node shared by a test module (tests must not assume an empty ledger)."""
    n = start_node(tmp_path_factory.mktemp("shared") / "node")
    yield n
    n.stop()
