"""The log as tiles over HTTP (c2sp.org/tlog-tiles): a real node (``didnode serve --http``) with 65,801 entries,
read by the independent reader of tests/http/tile_reader.py (hashlib and the spec only), which rebuilds the
checkpoint's root from the tiles and checks every entry against its level-0 hash; headers, bounds (404) and
strict paths (400): full level-0 and level-1 tiles and a partial level-2 one. More sizes: tests/core/test_tiles.py."""

from __future__ import annotations

import base64
import gzip
from typing import Iterator

import pytest
from nacl.signing import SigningKey

from didnode.client import Client
from didnode.core import builder
from didnode.core import checkpoint as cp_codec
from didnode.core.merkle.hasher import leaf_hash
from tests.http import tile_reader
from tests.http.conftest import HttpNode, get, start_http_node

ENTRIES = 65_800


def _creates(n: int, network: str) -> list[builder.SignedOperation]:
    out = []
    for _ in range(n):
        auth, nxt = SigningKey.generate(), SigningKey.generate()
        u = builder.create(network, [builder.NewKey("key-1", bytes(auth.verify_key))], bytes(nxt.verify_key))
        out.append(builder.sign(u, [(f"{u.did}#key-1", auth)]))
    return out


@pytest.fixture(scope="module")
def log_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    n = start_http_node(tmp_path_factory.mktemp("tiles") / "node")
    try:
        with Client(n.address, timeout=120) as c:
            outcomes = list(c.submit_batch(_creates(ENTRIES, n.node.network), chunk_size=200))
        assert all(not isinstance(o, Exception) for o in outcomes)
        yield n
    finally:
        n.node.stop()


def _fetch(node: HttpNode) -> tile_reader.Fetch:
    def fetch(path: str) -> bytes:
        r = get(node.base, "/" + path)
        assert r.status == 200, (path, r.status, r.body[:300])
        assert r.content_type == "application/octet-stream"
        return r.body

    return fetch


def _checkpoint(node: HttpNode) -> tuple[str, int, bytes]:
    r = get(node.base, "/checkpoint")
    assert r.status == 200 and r.content_type == "text/plain; charset=utf-8"
    assert "no-store" in r.headers["Cache-Control"] or "max-age=" in r.headers["Cache-Control"]
    origin, size, root = tile_reader.parse_checkpoint(r.body.decode())
    assert r.body.decode().split("\n")[3] == f"didnode-network {node.node.network}"  # the first extension line
    signed = cp_codec.decode(base64.b64decode(r.headers["Didnode-Checkpoint"]))
    assert (signed.tree_size, signed.checkpoint.log_root) == (size, root)
    return origin, size, root


def test_reader_rebuilds_the_checkpoint_root(log_node: HttpNode) -> None:
    origin, size, root = _checkpoint(log_node)
    assert size >= ENTRIES and origin == f"didnode.local/{log_node.node.network}"
    log = tile_reader.read_log(_fetch(log_node), size, root)
    assert len(log.entries) == size
    assert [len(level) for level in log.levels] == [size, size >> 8, size >> 16]  # a full level-1 tile, level 2 partial
    # The entries are the log's leaves as didnode stores them: position i inside entry i (docs/transparency.md §1).
    assert all(int.from_bytes(e[1:9], "big") == i for i, e in enumerate(log.entries))
    with Client(log_node.address) as c:
        proof = c.inclusion_proof(position=ENTRIES - 1, tree_size=size)
    assert leaf_hash(proof.entry) == log.levels[0][ENTRIES - 1]


def test_headers_and_compression(log_node: HttpNode) -> None:
    full = get(log_node.base, "/tile/0/000")
    assert full.status == 200 and len(full.body) == 8192
    assert "immutable" in full.headers["Cache-Control"] and full.headers["Access-Control-Allow-Origin"] == "*"
    zipped = get(log_node.base, "/tile/entries/000", {"Accept-Encoding": "gzip"})
    assert zipped.status == 200 and zipped.headers["Content-Encoding"] == "gzip"
    plain = get(log_node.base, "/tile/entries/000")
    assert gzip.decompress(zipped.body) == plain.body and "Content-Encoding" not in plain.headers
    head = get(log_node.base, "/tile/0/001", method="HEAD")
    assert head.status == 200 and head.body == b""
    # A partial tile is a prefix of the full one, and stays served once the tile is full.
    assert get(log_node.base, "/tile/0/000.p/7").body == full.body[: 7 * 32]


def test_bounds(log_node: HttpNode) -> None:
    _, size, _ = _checkpoint(log_node)
    n0, w = size // 256, size % 256
    at = tile_reader.index_path
    assert get(log_node.base, f"/tile/0/{at(n0)}.p/{w}").status == 200
    assert get(log_node.base, f"/tile/entries/{at(n0)}.p/{w}").status == 200
    beyond = (
        f"/tile/0/{at(n0)}.p/{w + 1}", f"/tile/0/{at(n0)}", f"/tile/0/{at(n0 + 1)}.p/1", f"/tile/entries/{at(n0)}",
        f"/tile/entries/{at(n0 + 1)}.p/1", "/tile/1/001", "/tile/1/001.p/2", "/tile/2/000", "/tile/2/000.p/2", "/tile/3/000.p/1",
        "/tile/63/000.p/1", "/tile/0/x001/x000/000",
    )
    for path in beyond:
        r = get(log_node.base, path)
        assert r.status == 404, path
        assert r.content_type == "application/problem+json"


@pytest.mark.parametrize(
    "path",
    ["/tile/0/00", "/tile/00/000", "/tile/64/000", "/tile/0/x000/001", "/tile/0/000.p/0", "/tile/0/000.p/256",
     "/tile/0/%30%30%30", "/tile/entries/000.p/01", "/tile/0/000/", "/tile/", "/tile/0//000", "/tile/x/000"],
)
def test_bad_paths(log_node: HttpNode, path: str) -> None:
    r = get(log_node.base, path)
    assert r.status == 400, (path, r.status)
    assert r.content_type == "application/problem+json"
