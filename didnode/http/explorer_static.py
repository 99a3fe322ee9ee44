"""The explorer's static files at ``/`` (issue #20; docs/http.md, "Explorer API", "Static files").

The pages, styles and JavaScript modules in ``didnode/http/explorer/static/``
(package data of :mod:`didnode.http`, shipped in the wheel) are served as
they are: ``/static/{path}`` a file, ``/``, ``/index.html`` and the pages'
deep links (``/did/{anything}``, ``/log``, ``/position/{n}``) the explorer's
``index.html``, which reads its route from ``location``. No directory
listing; a path is served only if it is made of plain segments
(``[A-Za-z0-9_-]`` and inner dots) naming a regular file under the static
directory, resolved and checked to stay in it: ``..``, escapes, backslashes,
dot files and symbolic links out of the directory are a ``404``. Every
explorer answer carries :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiohttp import web

from didnode.errors import DidnodeError, NotFound
from didnode.http.status import PROBLEM_JSON, problem

STATIC_DIR = Path(__file__).resolve().parent / "explorer" / "static"
STATIC = "/static/"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}
MAX_PATH = 256
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
DEEP_LINKS = ("/", "/index.html", "/log", "/did/{tail:.*}", "/position/{n}")


def content_type(path: Path) -> str:
    """The media type served for ``path`` (by its extension; unknown: ``application/octet-stream``)."""
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def static_file(raw: str, root: Path = STATIC_DIR) -> Path:
    """The file under ``root`` that the raw (still percent-encoded) path tail ``raw`` names; :class:`NotFound` otherwise."""
    segments = raw.split("/")
    if not raw or len(raw) > MAX_PATH or not all(_SEGMENT.fullmatch(s) and ".." not in s for s in segments):
        raise NotFound("no such explorer file", path=raw[:100])
    base = root.resolve()
    path = base.joinpath(*segments).resolve()
    if base not in path.parents or not path.is_file():
        raise NotFound("no such explorer file", path=raw[:100])
    return path


def _respond(path: Path) -> web.Response:
    return web.Response(body=path.read_bytes(), headers={**SECURITY_HEADERS, "Content-Type": content_type(path), "Cache-Control": "no-cache"})


async def index(request: web.Request) -> web.Response:
    """The explorer's page (all its routes: the page reads ``location``)."""
    path = STATIC_DIR / "index.html"
    if not path.is_file():
        raise NotFound("this node ships no explorer page", path=request.path[:100])
    return _respond(path)


async def static(request: web.Request) -> web.Response:
    """``/static/{path}``: a file of the explorer (or a 404 problem document with the explorer's headers)."""
    try:
        return _respond(static_file(request.rel_url.raw_path[len(STATIC) :]))
    except DidnodeError as err:
        doc = problem(err)
        return web.Response(status=doc["status"], body=json.dumps(doc).encode(), headers={**SECURITY_HEADERS, "Content-Type": PROBLEM_JSON})


def add_explorer_static(app: web.Application) -> None:
    """Register the explorer's page, its deep links and ``/static/...`` (GET, and HEAD) on ``app``."""
    for route in DEEP_LINKS:
        app.router.add_get(route, index)
    app.router.add_get(STATIC + "{tail:.*}", static)


__all__ = ["CSP", "SECURITY_HEADERS", "STATIC_DIR", "add_explorer_static", "content_type", "static_file"]
