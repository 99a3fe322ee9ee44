"""The log as tiles (c2sp.org/tlog-tiles): tile paths, what a tile holds, entry bundles. Pure.

A tiled log serves its RFC 6962 tree as static resources (docs/http.md, "Tiles"):

* ``tile/<L>/<N>[.p/<W>]``: the ``N``-th tile at level ``L``: the hashes
  ``MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L])`` for ``i`` in
  ``[0, W)``, 32 bytes each, concatenated. ``W`` is 256 for a full tile (no
  ``.p/`` suffix), 1 to 255 for a partial one. Each of these hashes is a
  perfect subtree of ``256**L = 2**(8L)`` leaves, i.e. the log tree's stored
  node ``(8L, N*256 + i)`` (:mod:`didnode.core.merkle.log_tree`).
* ``tile/entries/<N>[.p/<W>]``: the entry bundle: log entries ``N*256`` to
  ``N*256 + W - 1``, each as ``u16 length || entry`` (big-endian); entry ``i``
  hashes (``leaf_hash``) to hash ``i`` of the level-0 tile ``N``.

``<N>`` is written in zero-padded groups of three digits, all but the last
prefixed with ``x`` (1234067 -> ``x001/x234/067``). Parsing is strict: one
path per tile (no leading zeros in ``L`` or ``W``, no leading ``x000`` group),
anything else is :class:`~didnode.errors.InvalidArgument`.

A tree of ``size`` leaves has, at level ``L``, ``size >> 8L`` hashes: full
tiles ``N < (size >> 8L) // 256`` and one partial tile of width
``(size >> 8L) % 256`` when that is not 0. Any prefix of those hashes is a
tile this module calls *available* (a partial tile of a tile that has since
filled up is still its first ``W`` hashes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Iterable

from didnode.core.merkle.hasher import HASH_SIZE
from didnode.core.merkle.log_tree import NodeStore, get_node
from didnode.errors import InvalidArgument, TooLarge

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT  # hashes in a full tile
MAX_LEVEL: Final = 63
MAX_INDEX: Final = (1 << 64) - 1  # a tree has fewer than 2**64 leaves
MAX_ENTRY_BYTES: Final = 0xFFFF  # the bundle's u16 length prefix
ENTRIES: Final = "entries"
MAX_PATH_CHARS: Final = 128
_U16 = struct.Struct(">H")
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile or entry bundle: ``level`` is None for an entry bundle; ``width`` 256 when full."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def is_entries(self) -> bool:
        return self.level is None

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def tree_level(self) -> int:
        """The log tree level of the hashes this tile holds (entry bundles: 0, the leaves)."""
        return TILE_HEIGHT * (self.level or 0)

    @property
    def first(self) -> int:
        """The index, at :attr:`tree_level`, of the tile's first hash (of a bundle: its first entry's position)."""
        return self.index * TILE_WIDTH

    def path(self) -> str:
        """The tile's path below the log's prefix, e.g. ``tile/1/x001/234.p/7``."""
        head = ENTRIES if self.level is None else str(self.level)
        tail = "" if self.is_full else f".p/{self.width}"
        return f"tile/{head}/{encode_index(self.index)}{tail}"


def encode_index(n: int) -> str:
    """``n`` as zero-padded three-digit path elements, all but the last prefixed with ``x``."""
    if n < 0:
        raise InvalidArgument(f"tile index {n} is negative", index=n)
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def _decimal(text: str, what: str, low: int, high: int) -> int:
    """A decimal ASCII integer in ``[low, high]`` with no leading zeros."""
    if not text or not set(text) <= _DIGITS or (len(text) > 1 and text[0] == "0") or len(text) > 3:
        raise InvalidArgument(f"tile path: {what} {text[:20]!r} is not a decimal integer without leading zeros", field=what)
    value = int(text)
    if not low <= value <= high:
        raise InvalidArgument(f"tile path: {what} {value} is not in [{low}, {high}]", field=what)
    return value


def _index(elements: list[str]) -> int:
    """Parse the ``N`` elements (``x001``, ``x234``, ``067``) strictly."""
    if not elements or len(elements) > 7:  # 7 groups reach 10**21 > 2**64
        raise InvalidArgument("tile path: the index has no or too many elements", field="N")
    n = 0
    for i, el in enumerate(elements):
        last = i == len(elements) - 1
        digits = el if last else (el[1:] if el.startswith("x") else "")
        if len(digits) != 3 or not set(digits) <= _DIGITS:
            raise InvalidArgument(f"tile path: index element {el[:20]!r} is not {'ddd' if last else 'xddd'}", field="N")
        n = n * 1000 + int(digits)
    if len(elements) > 1 and elements[0] == "x000":
        raise InvalidArgument("tile path: the index starts with x000 (not its shortest form)", field="N")
    if n > MAX_INDEX:
        raise InvalidArgument(f"tile path: index {n} is too large", field="N")
    return n


def parse_tile_path(path: str) -> Tile:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` (no leading slash) strictly.

    Raises :class:`InvalidArgument` for anything that is not exactly the
    canonical path of one tile (``Tile(...).path() == path`` for every result).
    """
    if len(path) > MAX_PATH_CHARS:
        raise InvalidArgument(f"tile path is longer than {MAX_PATH_CHARS} characters", field="path")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise InvalidArgument("not a tile path: want tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]", field="path")
    level = None if parts[1] == ENTRIES else _decimal(parts[1], "L", 0, MAX_LEVEL)
    rest = parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        width = _decimal(rest[-1], "W", 1, TILE_WIDTH - 1)
        rest = [*rest[:-2], rest[-2][:-2]]
    return Tile(level, _index(rest), width)


def available_width(tile: Tile, size: int) -> int:
    """How many of the tile's hashes (entries) a tree of ``size`` leaves has: 0 to 256."""
    hashes_at_level = size >> tile.tree_level
    return max(0, min(TILE_WIDTH, hashes_at_level - tile.first))


def is_available(tile: Tile, size: int) -> bool:
    """True iff a tree of ``size`` leaves holds all of ``tile``'s hashes (or entries)."""
    return available_width(tile, size) >= tile.width


def tiles_of(size: int) -> list[Tile]:
    """Every hash tile of a tree of ``size`` leaves (full, then the partial one, per level), lowest level first.

    Levels run while the level has a hash (spec example: 70,000 leaves ->
    273 full and one partial level-0 tile of width 112, one full and one
    partial level-1 tile of width 17, one partial level-2 tile of width 1).
    """
    out: list[Tile] = []
    level = 0
    while level <= MAX_LEVEL and size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)
        out.extend(Tile(level, n) for n in range(hashes // TILE_WIDTH))
        if hashes % TILE_WIDTH:
            out.append(Tile(level, hashes // TILE_WIDTH, hashes % TILE_WIDTH))
        level += 1
    return out


def tile_hashes(store: NodeStore, tile: Tile) -> bytes:
    """The body of hash tile ``tile``: its ``width`` stored nodes ``(8L, N*256 + i)``, concatenated.

    Precondition: the tile is available in the store's tree (:func:`is_available`);
    a missing node is :class:`~didnode.errors.StoreCorrupted`.
    """
    if tile.level is None:
        raise InvalidArgument("an entry bundle holds entries, not hashes", field="L")
    level, first = tile.tree_level, tile.first
    return b"".join(get_node(store, level, first + i) for i in range(tile.width))


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """An entry bundle: each entry as ``u16 length || entry``; :class:`TooLarge` for an entry over 65,535 bytes."""
    out = bytearray()
    pack = _U16.pack
    for i, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_BYTES:
            raise TooLarge(
                f"entry {i} of the bundle is {len(entry)} bytes; a tlog-tiles bundle carries at most {MAX_ENTRY_BYTES}",
                field="entry", length=len(entry),
            )
        out += pack(len(entry))
        out += entry
    return bytes(out)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of a bundle; :class:`InvalidArgument` on truncation, trailing bytes or (given ``width``) another count."""
    out: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 2:
            raise InvalidArgument("entry bundle: truncated length prefix", offset=pos)
        (n,) = _U16.unpack_from(data, pos)
        pos += 2
        if end - pos < n:
            raise InvalidArgument("entry bundle: truncated entry", offset=pos)
        out.append(data[pos : pos + n])
        pos += n
        if len(out) > TILE_WIDTH:
            raise InvalidArgument(f"entry bundle: more than {TILE_WIDTH} entries")
    if width is not None and len(out) != width:
        raise InvalidArgument(f"entry bundle: {len(out)} entries, want {width}")
    return out


def split_tile(body: bytes) -> list[bytes]:
    """A hash tile's body as its hashes; :class:`InvalidArgument` unless 1 to 256 whole hashes."""
    if not body or len(body) % HASH_SIZE or len(body) > TILE_WIDTH * HASH_SIZE:
        raise InvalidArgument(f"hash tile of {len(body)} bytes is not 1 to {TILE_WIDTH} hashes of {HASH_SIZE} bytes")
    return [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]


__all__ = [
    "ENTRIES", "MAX_ENTRY_BYTES", "MAX_LEVEL", "TILE_HEIGHT", "TILE_WIDTH", "Tile", "available_width", "decode_bundle",
    "encode_bundle", "encode_index", "is_available", "parse_tile_path", "split_tile", "tile_hashes", "tiles_of",
]
