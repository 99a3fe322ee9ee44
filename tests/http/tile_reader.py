"""An independent tlog-tiles reader, written from c2sp.org/tlog-tiles and RFC 6962 alone (hashlib only).

It imports nothing from didnode: it knows a log only as ``fetch(path) -> bytes``
for paths below the log's prefix (``checkpoint``, ``tile/<L>/<N>[.p/<W>]``,
``tile/entries/<N>[.p/<W>]``) and a checkpoint's size and root. It fetches
every tile and bundle the size requires, checks each entry against its
level-0 hash, each upper-level hash against the level-0..L-1 tile below it,
and rebuilds the root twice: from the leaves, and from the highest tiles.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Callable

WIDTH = 256
Fetch = Callable[[str], bytes]


def index_path(n: int) -> str:
    """``n`` in three-digit groups, all but the last prefixed with x (1234067 -> x001/x234/067)."""
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if not n:
            break
    return "/".join(["x" + g for g in reversed(groups[1:])] + [groups[0]])


def tile_path(level: int | str, n: int, width: int) -> str:
    return f"tile/{level}/{index_path(n)}" + ("" if width == WIDTH else f".p/{width}")


def leaf(d: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + d).digest()


def node(l: bytes, r: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + l + r).digest()


def mth(hashes: list[bytes], lo: int, hi: int) -> bytes:
    """RFC 6962 MTH of the leaf hashes ``hashes[lo:hi]`` (hi > lo)."""
    n = hi - lo
    if n == 1:
        return hashes[lo]
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
    return node(mth(hashes, lo, lo + k), mth(hashes, lo + k, hi))


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    """A tlog-checkpoint body's origin, size and root (the first three lines)."""
    lines = text.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    assert len(root) == 32 and str(size) == lines[1]
    return origin, size, root


@dataclass
class Log:
    """What the reader learned: every entry, and every level's hashes (concatenated tiles)."""

    entries: list[bytes] = field(default_factory=list)
    levels: list[list[bytes]] = field(default_factory=list)
    fetched: int = 0


def split_bundle(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 2], "big")
        assert pos + 2 + n <= len(data), "truncated bundle"
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def read_log(fetch: Fetch, size: int, root: bytes) -> Log:
    """Fetch and verify the whole log of ``size`` entries against ``root``; raise AssertionError on any mismatch."""
    log = Log()
    level = 0
    while size >> (8 * level):
        count = size >> (8 * level)  # hashes at this level
        hashes: list[bytes] = []
        for n in range((count + WIDTH - 1) // WIDTH):
            width = min(WIDTH, count - n * WIDTH)
            body = fetch(tile_path(level, n, width))
            log.fetched += 1
            assert len(body) == 32 * width, f"tile {level}/{n} is {len(body)} bytes, want {32 * width}"
            tile = [body[i : i + 32] for i in range(0, len(body), 32)]
            if level == 0:
                bundle = split_bundle(fetch(tile_path("entries", n, width)))
                log.fetched += 1
                assert len(bundle) == width, f"bundle {n} has {len(bundle)} entries, want {width}"
                for i, entry in enumerate(bundle):
                    assert leaf(entry) == tile[i], f"entry {n * WIDTH + i} does not hash to its level-0 tile hash"
                log.entries.extend(bundle)
            else:
                below = log.levels[level - 1]
                for i, h in enumerate(tile):
                    j = (n * WIDTH + i) * WIDTH
                    assert mth(below, j, j + WIDTH) == h, f"tile {level}/{n} hash {i} is not the MTH of the full tile below"
            hashes.extend(tile)
        log.levels.append(hashes)
        level += 1
    if size == 0:
        assert root == hashlib.sha256(b"").digest()
        return log
    leaves = log.levels[0]
    assert mth(leaves, 0, size) == root, "the root rebuilt from the leaves is not the checkpoint's"
    assert root_from_tiles(log.levels, 0, size) == root, "the root rebuilt from the highest tiles is not the checkpoint's"
    return log


def root_from_tiles(levels: list[list[bytes]], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]), taking each perfect subtree of 256**L leaves from the level-L tiles (fewest hashes)."""
    n = hi - lo
    if n & (n - 1) == 0 and (n.bit_length() - 1) % 8 == 0:
        k = n.bit_length() - 1
        return levels[k // 8][lo >> k]
    k = 1 << ((n - 1).bit_length() - 1)
    return node(root_from_tiles(levels, lo, lo + k), root_from_tiles(levels, lo + k, hi))
