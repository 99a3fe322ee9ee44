"""The witness's HTTP edge (c2sp.org/tlog-witness): ``POST /add-checkpoint`` and ``GET /<origin hash>/checkpoint``.

The submission and monitoring prefixes are both the server's root. Statuses
(the specification's, docs/witness.md):

==========================================  ======  ====================================
error                                       status  body
==========================================  ======  ====================================
none                                        200     cosignature line(s), ``text/plain``
:class:`WitnessRequestMalformed`            400     one line, ``text/plain``
:class:`BadCheckpointSignature`             403     one line
:class:`UnknownLogOrigin`                   404     one line
:class:`WitnessSizeConflict`                409     ``<size>\\n``, ``text/x.tlog.size``
:class:`~didnode.errors.InvalidProof`       422     one line (also ``ReplayMismatch``)
:class:`WitnessNotCaughtUp`                 503     one line, ``Retry-After: 1`` (a node's log behind)
==========================================  ======  ====================================

Error bodies (other than 409's) are the error's message and reason
(``<reason>: <message>\\n``) for the operator of the log; logs must act on
the status alone. An unexpected exception is a 500 with no detail (the
traceback goes to the witness's log).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from didnode.errors import BadCheckpointSignature, DidnodeError, InvalidProof, UnknownLogOrigin, WitnessNotCaughtUp, WitnessRequestMalformed, WitnessSizeConflict
from didnode.http.app import SEEN, HttpLimits
from didnode.witness.request import MAX_BODY_BYTES
from didnode.witness.service import Witness

log = logging.getLogger("didnode.witness")

SIZE_TYPE = "text/x.tlog.size"
TEXT_TYPE = "text/plain; charset=utf-8"
WITNESS = web.AppKey("didnode_witness", Witness)
LIMITS = HttpLimits(max_body_bytes=MAX_BODY_BYTES)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Most specific first (WitnessSizeConflict's body differs: handled before this table).
STATUS: tuple[tuple[type[DidnodeError], int], ...] = (
    (WitnessRequestMalformed, 400),
    (BadCheckpointSignature, 403),
    (UnknownLogOrigin, 404),
    (InvalidProof, 422),
    (WitnessNotCaughtUp, 503),
)


def status_for(err: DidnodeError) -> int:
    """The HTTP status of a refused ``add-checkpoint`` (500 for an error the table does not name)."""
    if isinstance(err, WitnessSizeConflict):
        return 409
    for cls, status in STATUS:
        if isinstance(err, cls):
            return status
    return 500


def error_response(err: DidnodeError) -> web.Response:
    """The response for a refused request: 409 with the held size, else one text line."""
    if isinstance(err, WitnessSizeConflict):
        return web.Response(status=409, body=f"{err.details['size']}\n".encode(), headers={"Content-Type": SIZE_TYPE})
    status = status_for(err)
    if status == 500:
        log.error("add-checkpoint failed: %s [%s]", err, err.reason)
        return web.Response(status=500, body=b"internal error\n", headers={"Content-Type": TEXT_TYPE})
    headers = {"Content-Type": TEXT_TYPE}
    if status == 503:
        headers["Retry-After"] = "1"
    return web.Response(status=status, body=f"{err.reason}: {err.message}\n".encode(), headers=headers)


async def add_checkpoint(request: web.Request) -> web.Response:
    """``POST /add-checkpoint``."""
    witness = request.app[WITNESS]
    body = await request.read()  # aiohttp answers 413 beyond MAX_BODY_BYTES
    try:
        lines = await witness.add_checkpoint(body)
    except DidnodeError as err:
        return error_response(err)
    except Exception:  # noqa: BLE001 - never a traceback to the client
        log.exception("add-checkpoint failed")
        return web.Response(status=500, body=b"internal error\n", headers={"Content-Type": TEXT_TYPE})
    return web.Response(status=200, body=lines, headers={"Content-Type": TEXT_TYPE})


async def checkpoint(request: web.Request) -> web.Response:
    """``GET /<origin hash>/checkpoint``: the latest cosigned note of that log, or 404."""
    note = request.app[WITNESS].checkpoint_for(request.match_info["origin_hash"])
    if note is None:
        return web.Response(status=404, body=b"no checkpoint cosigned for this origin\n", headers={"Content-Type": TEXT_TYPE})
    return web.Response(status=200, body=note, headers={"Content-Type": TEXT_TYPE, "Cache-Control": "no-store"})


def add_witness_routes(app: web.Application, witness: Witness) -> None:
    """Serve ``witness`` on ``app`` too (a node's HTTP face, ``didnode serve --witness-for``)."""
    app[WITNESS] = witness
    app.router.add_post("/add-checkpoint", add_checkpoint)
    app.router.add_get("/{origin_hash:[0-9a-f]{64}}/checkpoint", checkpoint)


def build_witness_app(witness: Witness) -> web.Application:
    """The witness's aiohttp application (serve it with :meth:`didnode.http.server.HttpServer.start` and :data:`LIMITS`)."""
    seen: set[Any] = set()

    @web.middleware
    async def mark_seen(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.add(request.protocol)  # a whole request came: the server keeps this connection
        return await handler(request)

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[mark_seen])
    app[SEEN] = seen
    add_witness_routes(app, witness)
    return app


__all__ = ["LIMITS", "SIZE_TYPE", "STATUS", "WITNESS", "add_checkpoint", "add_witness_routes", "build_witness_app", "error_response", "status_for"]
