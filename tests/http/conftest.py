"""A real node with its HTTP face on loopback (``didnode serve --http 127.0.0.1:0``), and a plain HTTP client.

The client is the standard library's ``http.client``: no redirect following,
the request target sent exactly as given, every status and header visible.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from didnode.client import Client
from tests.conftest import RunningNode, start_node


@dataclass
class HttpNode:
    """A running node: its gRPC address, its HTTP base URL, its process."""

    node: RunningNode
    base: str

    @property
    def address(self) -> str:
        return self.node.address


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def start_http_node(data_dir: Path, extra: list[str] | None = None) -> HttpNode:
    """Start a node with ``--http 127.0.0.1:0``; its URL is the second line of its stdout."""
    node = start_node(data_dir, extra=["--http", "127.0.0.1:0", *(extra or [])])
    assert node.proc.stdout is not None
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline and not line:
        line = node.proc.stdout.readline().strip()
    if not line.startswith("http"):
        node.stop()
        raise RuntimeError(f"no HTTP URL on the node's second line: {line!r}")
    return HttpNode(node, line)


def get(base: str, target: str, headers: dict[str, str] | None = None, method: str = "GET", body: bytes | None = None) -> Reply:
    """One request on a new connection; ``target`` is sent as is (already percent-encoded)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def http_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    """One node with its HTTP face, shared by a test module."""
    n = start_http_node(tmp_path_factory.mktemp("http") / "node")
    yield n
    n.node.stop()


@pytest.fixture(scope="module")
def client(http_node: HttpNode) -> Iterator[Client]:
    with Client(http_node.address) as c:
        yield c
