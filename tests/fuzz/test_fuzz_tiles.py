"""Fuzz targets: tlog-tiles paths and entry bundles (``didnode.core.tiles``).

* ``tile_path``: the request path of ``GET /tile/...`` (``parse_tile_path``):
  a :class:`~didnode.core.tiles.Tile` whose canonical path is the input, or
  ``InvalidArgument``;
* ``entry_bundle``: ``decode_bundle``, whose result re-encodes to the input.
"""

from __future__ import annotations

from didnode.core import tiles
from tests.fuzz import harness
from tests.fuzz.harness import target

PATH_SEEDS = ("tile/0/000", "tile/0/x001/x234/067.p/12", "tile/entries/005.p/255", "tile/63/x018/x446/x744/x073/x709/x551/615")


@target("tile_path", seeds=lambda: [p.encode() for p in PATH_SEEDS], tokens=("tile/", "entries/", ".p/", "x", "/", "000", "255", "63"), max_len=256)
def fuzz_tile_path(data: bytes) -> None:
    path = data.decode("utf-8", errors="surrogateescape")
    tile = tiles.parse_tile_path(path)
    assert tile.path() == path, (tile, path)
    assert 0 <= tile.index < 1 << 64 and 1 <= tile.width <= tiles.TILE_WIDTH
    assert tile.level is None or 0 <= tile.level <= tiles.MAX_LEVEL


@target("entry_bundle", seeds=lambda: [tiles.encode_bundle([b"", b"abc", bytes(300)])], tokens=(b"\x00\x00", b"\x00\x01", b"\xff\xff"), max_len=8192)
def fuzz_entry_bundle(data: bytes) -> None:
    entries = tiles.decode_bundle(data)
    assert tiles.encode_bundle(entries) == data


test_fuzz = harness.fuzz_tests(__name__)
