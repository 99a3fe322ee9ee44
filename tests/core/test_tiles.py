"""didnode.core.tiles: tile paths (strict), what a tile holds, entry bundles; and the independent reader
(tests/http/tile_reader.py) over an in-memory log of 70,000 entries (full level-0 and level-1 tiles)."""

from __future__ import annotations

import hashlib
import struct

import pytest

from didnode.core import tiles
from didnode.core.merkle import log_tree
from didnode.core.merkle.hasher import leaf_hash
from didnode.core.tiles import Tile
from didnode.errors import InvalidArgument, StoreCorrupted, TooLarge
from tests.http import tile_reader


@pytest.mark.parametrize(
    "n, text",
    [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067"), (10**6, "x001/x000/000")],
)
def test_index_encoding(n: int, text: str) -> None:
    assert tiles.encode_index(n) == text == tile_reader.index_path(n)
    assert tiles.parse_tile_path(f"tile/0/{text}") == Tile(0, n)


@pytest.mark.parametrize(
    "path, tile",
    [
        ("tile/0/000", Tile(0, 0)),
        ("tile/0/000.p/1", Tile(0, 0, 1)),
        ("tile/63/x001/234.p/255", Tile(63, 1234, 255)),
        ("tile/entries/x001/x234/067", Tile(None, 1234067)),
        ("tile/entries/001.p/17", Tile(None, 1, 17)),
    ],
)
def test_parse_round_trip(path: str, tile: Tile) -> None:
    assert tiles.parse_tile_path(path) == tile
    assert tile.path() == path


@pytest.mark.parametrize(
    "path",
    [
        "", "tile", "tile/", "tile/0", "tile/0/", "/tile/0/000", "tile/0/000/", "tiles/0/000", "tile/00/000", "tile/64/000",
        "tile/-1/000", "tile/+1/000", "tile/0/0", "tile/0/0000", "tile/0/00a", "tile/0/x000/001", "tile/0/001/002",
        "tile/0/y001/002", "tile/0/x01/002", "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/01", "tile/0/000.p/",
        "tile/0/000.p", "tile/0/000.q/5", "tile/0/000.p/5/6", "tile/entry/000", "tile/Entries/000", "tile/0/x001/x002/x003/x004/x005/x006/x007/008",
        "tile/0/x018/x446/x744/x073/x709/x551/616", "tile/0/%30%30%30", "tile/0/000?x", "tile/0/\u0660\u0660\u0660", "tile/0/x001.p/5",
        "tile/0/000.p/5.p/6", "tile/0/000.p/x5", "tile/0//000",
    ],
)
def test_parse_rejects(path: str) -> None:
    with pytest.raises(InvalidArgument):
        tiles.parse_tile_path(path)


def test_max_index() -> None:
    top = (1 << 64) - 1  # 18446744073709551615
    assert tiles.parse_tile_path("tile/0/" + tiles.encode_index(top)).index == top


def test_spec_example_70000() -> None:
    """The spec's example: 273 full level-0 tiles, one of width 112; one full level-1 tile, one of width 17; level 2 width 1."""
    got = tiles.tiles_of(70_000)
    assert [t for t in got if t.level == 0 and t.is_full] == [Tile(0, n) for n in range(273)]
    assert [t for t in got if not t.is_full] == [Tile(0, 273, 112), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert Tile(1, 0) in got and len(got) == 273 + 1 + 2 + 1
    assert [t.width for t in tiles.tiles_of(256)] == [256, 1]
    assert tiles.tiles_of(0) == []


def test_availability() -> None:
    assert tiles.is_available(Tile(0, 0), 256) and not tiles.is_available(Tile(0, 0), 255)
    assert tiles.is_available(Tile(0, 0, 255), 255) and tiles.is_available(Tile(0, 0, 5), 1000)  # a prefix stays served
    assert not tiles.is_available(Tile(0, 1, 1), 256) and tiles.available_width(Tile(0, 1), 300) == 44
    assert tiles.is_available(Tile(1, 0, 1), 256) and not tiles.is_available(Tile(1, 0, 2), 511)
    assert tiles.is_available(Tile(None, 0, 3), 3) and not tiles.is_available(Tile(None, 0, 4), 3)
    assert not tiles.is_available(Tile(63, 0, 1), (1 << 64) - 1)


def test_bundles() -> None:
    entries = [b"", b"a", bytes(range(256)) * 10, b"\xff" * 65535]
    data = tiles.encode_bundle(entries)
    assert data[:4] == b"\x00\x00\x00\x01" and tiles.decode_bundle(data, 4) == entries
    assert tile_reader.split_bundle(data) == entries
    with pytest.raises(TooLarge):
        tiles.encode_bundle([b"x" * 65536])
    for bad in (data[:-1], data + b"\x00", b"\x00\x05abc"):
        with pytest.raises(InvalidArgument):
            tiles.decode_bundle(bad)
    with pytest.raises(InvalidArgument):
        tiles.decode_bundle(data, 3)
    with pytest.raises(InvalidArgument):
        tiles.decode_bundle(b"\x00\x00" * 257)


def test_split_tile() -> None:
    assert tiles.split_tile(b"\x01" * 64) == [b"\x01" * 32] * 2
    for bad in (b"", b"\x00" * 33, b"\x00" * 32 * 257):
        with pytest.raises(InvalidArgument):
            tiles.split_tile(bad)


def _memory_log(n: int) -> tuple[log_tree.MemoryNodeStore, list[bytes]]:
    entries = [struct.pack(">Q", i) * (1 + i % 5) for i in range(n)]
    store = log_tree.MemoryNodeStore()
    log_tree.append_many(store, 0, [leaf_hash(e) for e in entries])
    return store, entries


def _fetcher(store: log_tree.MemoryNodeStore, entries: list[bytes], size: int) -> tile_reader.Fetch:
    def fetch(path: str) -> bytes:
        tile = tiles.parse_tile_path(path)
        assert tiles.is_available(tile, size), path
        if tile.is_entries:
            return tiles.encode_bundle(entries[tile.first : tile.first + tile.width])
        return tiles.tile_hashes(store, tile)

    return fetch


def test_tile_hashes_are_subtree_roots() -> None:
    store, entries = _memory_log(600)
    body = tiles.tile_hashes(store, Tile(0, 1))
    assert body[:32] == leaf_hash(entries[256]) and len(body) == 8192
    level1 = tiles.tile_hashes(store, Tile(1, 0, 2))
    assert level1[:32] == log_tree.root(store, 256)
    assert level1[32:] == log_tree.range_hash(store, 256, 512)
    with pytest.raises(StoreCorrupted):
        tiles.tile_hashes(store, Tile(0, 2))  # beyond the stored tree
    with pytest.raises(InvalidArgument):
        tiles.tile_hashes(store, Tile(None, 0))


@pytest.mark.parametrize("size", [1, 255, 256, 257, 600, 65_536, 70_000])
def test_independent_reader_rebuilds_root(size: int) -> None:
    """The reader (hashlib and the spec only) verifies every entry and tile and rebuilds the root, up to level 2."""
    store, entries = _memory_log(70_000)
    read = tile_reader.read_log(_fetcher(store, entries, size), size, log_tree.root(store, size))
    assert read.entries == entries[:size]
    assert len(read.levels) == len([lvl for lvl in range(3) if size >> (8 * lvl)])


def test_reader_catches_a_wrong_root_and_a_wrong_entry() -> None:
    store, entries = _memory_log(300)
    fetch = _fetcher(store, entries, 300)
    with pytest.raises(AssertionError):
        tile_reader.read_log(fetch, 300, hashlib.sha256(b"other").digest())
    forged = list(entries)
    forged[7] = b"forged"
    with pytest.raises(AssertionError):
        tile_reader.read_log(_fetcher(store, forged, 300), 300, log_tree.root(store, 300))
