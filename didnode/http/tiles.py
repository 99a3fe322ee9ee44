"""The log as tiles over HTTP (c2sp.org/tlog-tiles; docs/http.md, "Tiles").

* ``GET /checkpoint``: the node's latest checkpoint (``text/plain; charset=utf-8``,
  not cached beyond 2 s): its C2SP signed note when the checkpoint carries one
  (``SignedCheckpoint.note``, issue #17 item 1), else the unsigned
  tlog-checkpoint body of :func:`didnode.core.tlog_checkpoint.from_checkpoint`
  under the network's default origin (origin, size, base64 root, the didnode
  extension lines). Either way the node's own signed checkpoint
  (docs/transparency.md section 3, binary, base64) is in the header
  ``Didnode-Checkpoint``.
* ``GET /tile/<L>/<N>[.p/<W>]``: a hash tile; ``GET /tile/entries/<N>[.p/<W>]``:
  an entry bundle (:mod:`didnode.core.tiles`), ``application/octet-stream``,
  immutable (``Cache-Control: public, max-age=31536000, immutable``); bundles
  are compressed when the client accepts it.

The path is parsed strictly from the raw (still percent-encoded) request
path: anything but a canonical tile path is a 400 problem document. A tile
the log does not hold yet (beyond the current log size) is a 404. Hashes
come from the stored log tree (every perfect subtree is stored, so a tile is
``W`` point reads), entries from the ``log`` table, all in one read
transaction.
"""

from __future__ import annotations

import base64

from aiohttp import web

from didnode.core import tiles, tlog_checkpoint
from didnode.core.checkpoint import SignedCheckpoint
from didnode.errors import Internal, NotFound, TooLarge
from didnode.http.resolver import COMMON_HEADERS
from didnode.service.transparency import TransparencyService
from didnode.store import layout
from didnode.store.tree_tables import LogNodes

CHECKPOINT = "/checkpoint"
TILE = "/tile/"
OCTETS = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"
IMMUTABLE = "public, max-age=31536000, immutable"
CHECKPOINT_CACHE = "max-age=2"  # mutable: never cached beyond a few seconds
CHECKPOINT_HEADER = "Didnode-Checkpoint"


def checkpoint_text(signed: SignedCheckpoint) -> bytes:
    """What ``/checkpoint`` serves: the signed note if ``signed`` has one, else the unsigned C2SP body."""
    note: bytes = getattr(signed, "note", b"")
    if note:
        return note
    c = signed.checkpoint
    return tlog_checkpoint.from_checkpoint(c, tlog_checkpoint.default_origin(c.network)).body()


class TileReader:
    """The handlers of ``/checkpoint`` and ``/tile/...`` for one node."""

    def __init__(self, transparency: TransparencyService) -> None:
        self.transparency = transparency
        self.node = transparency.node

    async def checkpoint(self, request: web.Request) -> web.Response:
        signed = await self.transparency.checkpoint()
        headers = {
            **COMMON_HEADERS,
            "Content-Type": TEXT,
            "Cache-Control": CHECKPOINT_CACHE,
            CHECKPOINT_HEADER: base64.b64encode(signed.encode()).decode(),
        }
        return web.Response(body=checkpoint_text(signed), headers=headers)

    def read(self, tile: tiles.Tile) -> bytes:
        """The tile's body from one read transaction; :class:`NotFound` when the log does not hold it yet."""
        store, tables = self.node.store, self.node.tables
        with store.read() as txn:
            size = tables.log_size(txn)
            if not tiles.is_available(tile, size):
                raise NotFound(
                    f"{tile.path()} is beyond the log ({size} entries hold {tiles.available_width(tile, size)} of its {tile.width})",
                    path=tile.path(), tree_size=size,
                )
            if not tile.is_entries:
                return tiles.tile_hashes(LogNodes(txn, store), tile)
            cur = txn.cursor(db=tables.log)
            first = tile.first
            if not cur.set_key(layout.u64(first)):
                raise NotFound(f"log entry {first} is missing", position=first)
            entries = []
            for _key, value in cur:
                entries.append(value)
                if len(entries) == tile.width:
                    break
            if len(entries) != tile.width:
                raise NotFound(f"the log holds fewer entries than {tile.path()}", path=tile.path())
            return tiles.encode_bundle(entries)

    async def tile(self, request: web.Request) -> web.StreamResponse:
        raw = request.rel_url.raw_path
        tile = tiles.parse_tile_path(raw[1:])
        try:
            body = self.read(tile)
        except TooLarge as err:  # an entry the u16 length prefix cannot carry: the format's limit, not the client's
            raise Internal(str(err)) from None
        response = web.Response(body=body, headers={**COMMON_HEADERS, "Content-Type": OCTETS, "Cache-Control": IMMUTABLE})
        if tile.is_entries:
            response.enable_compression()
        return response


def add_tile_routes(app: web.Application, transparency: TransparencyService) -> None:
    """Register ``/checkpoint`` and ``/tile/...`` (GET, and HEAD) on ``app``."""
    reader = TileReader(transparency)
    app.router.add_get(CHECKPOINT, reader.checkpoint)
    app.router.add_get(TILE + "{tail:.*}", reader.tile)


__all__ = ["CHECKPOINT", "CHECKPOINT_HEADER", "TILE", "TileReader", "add_tile_routes", "checkpoint_text"]
