"""A test log that signs C2SP checkpoints, and a standalone witness (``didnode witness``) on loopback."""

from __future__ import annotations

import http.client
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest
from nacl.signing import SigningKey

from didnode.core import note as note_codec
from didnode.core.merkle import reference
from didnode.core.note import Note
from didnode.core.tlog_checkpoint import TlogCheckpoint
from didnode.witness.request import encode_add_checkpoint
from tests.conftest import BIN, ROOT

ORIGIN = "example.org/test-log"


@dataclass
class TestLog:
    """A log of ``leaves`` (bytes) whose checkpoints ``key`` signs under key name ``origin``."""

    origin: str = ORIGIN
    key: SigningKey = field(default_factory=lambda: SigningKey(b"\x11" * 32))
    leaves: list[bytes] = field(default_factory=list)

    __test__ = False

    @property
    def vkey(self) -> str:
        return note_codec.verifier_key(self.origin, bytes(self.key.verify_key))

    def grow(self, n: int, tag: bytes = b"leaf") -> None:
        start = len(self.leaves)
        self.leaves.extend(tag + b"-%d" % i for i in range(start, start + n))

    def fork(self, at: int) -> "TestLog":
        """The same key and origin, the first ``at`` leaves, then other ones."""
        return TestLog(self.origin, self.key, list(self.leaves[:at]))

    def root(self, size: int | None = None) -> bytes:
        return reference.mth(self.leaves[: len(self.leaves) if size is None else size])

    def body(self, size: int | None = None) -> bytes:
        size = len(self.leaves) if size is None else size
        return TlogCheckpoint(self.origin, size, self.root(size), ()).body()

    def note(self, size: int | None = None, key: SigningKey | None = None) -> bytes:
        text = self.body(size)
        return Note(text, (note_codec.sign_ed25519(text, self.origin, key or self.key),)).encode()

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = len(self.leaves) if new is None else new
        if old in (0, new):
            return []
        return reference.proof(old, self.leaves[:new])

    def request(self, old: int, size: int | None = None) -> bytes:
        size = len(self.leaves) if size is None else size
        return encode_add_checkpoint(old, self.proof(old, size), self.note(size))


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes


@dataclass
class RunningWitness:
    url: str
    vkey: str
    data_dir: Path
    proc: subprocess.Popen[str]

    def post(self, body: bytes, path: str = "/add-checkpoint", method: str = "POST") -> Reply:
        u = urlsplit(self.url)
        conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
        try:
            conn.request(method, path, body=body if method == "POST" else None, headers={"Content-Type": "text/plain"} if method == "POST" else {})
            r = conn.getresponse()
            return Reply(r.status, r.getheader("Content-Type", ""), r.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.post(b"", path, "GET")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_witness(data_dir: Path, logs: list[str], extra: list[str] | None = None) -> RunningWitness:
    """``didnode witness --http 127.0.0.1:0``: its URL and vkey are its first two stdout lines."""
    cmd = [str(BIN / "didnode"), "witness", "--data", str(data_dir), "--http", "127.0.0.1:0", "--name", "witness.test/w1", "--log-level", "warning"]
    for entry in logs:
        cmd += ["--log", entry]
    cmd += extra or []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while time.monotonic() < deadline and len(lines) < 2:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    if len(lines) < 2:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"witness did not start: {lines} {err}")
    return RunningWitness(lines[0], lines[1], data_dir, proc)


@pytest.fixture
def log() -> TestLog:
    return TestLog()


@pytest.fixture
def witness(tmp_path: Path, log: TestLog) -> Iterator[RunningWitness]:
    w = start_witness(tmp_path / "witness", [f"{log.origin}={log.vkey}"])
    yield w
    w.stop()
