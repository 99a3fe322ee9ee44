"""The node's HTTP application: routes, limits, and errors as documents (docs/http.md).

Routes (all ``GET``, ``HEAD`` too; the HTTP face is the ledger's read side,
writes stay on gRPC):

* ``/1.0/identifiers/{did-url}``: DID resolution and DID URL dereferencing
  (:mod:`didnode.http.resolver`);
* ``/1.0/methods``: the DID methods resolved here (``["dnode"]``);
* ``/status/{did}/{resource-id}``: a published resource (a status list) by path;
* ``/checkpoint``, ``/tile/...``: the log as tiles, c2sp.org/tlog-tiles (:mod:`didnode.http.tiles`);
* ``/metrics``: Prometheus text (:mod:`didnode.http.metrics`);
* ``/healthz``: alive; ``/readyz``: the node's readiness (:mod:`didnode.service.health`);
* ``/api/v1/...``: the explorer's JSON API (:mod:`didnode.http.explorer`); ``/``, ``/static/...`` and
  the explorer's deep links: its pages (:mod:`didnode.http.explorer_static`).

One middleware bounds the requests answered at once (beyond
``HttpLimits.max_requests``: 503 with ``Retry-After``; the probes ``/healthz``,
``/readyz`` and ``/metrics`` are always answered), turns every failure
outside resolution into an RFC 9457 problem document (:func:`didnode.http.status.problem`)
and an unexpected exception into a 500 whose body names no code (the
traceback goes to the node's log), and counts each request for the metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from didnode.errors import DidnodeError, Internal, InvalidArgument, NotFound, Overloaded, TooLarge
from didnode.http.explorer import add_explorer_api
from didnode.http.explorer_static import add_explorer_static
from didnode.http.metrics import CONTENT_TYPE as METRICS_TYPE
from didnode.http.metrics import NodeMetrics
from didnode.http.resolver import COMMON_HEADERS, IDENTIFIERS, STATUS, Resolver
from didnode.http.status import PROBLEM_JSON, problem
from didnode.http.tiles import add_tile_routes
from didnode.service.health import Readiness

log = logging.getLogger("didnode.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds of the HTTP face (docs/http.md, "Limits")."""

    max_requests: int = 256  # answered at once; beyond: 503 + Retry-After
    max_connections: int = 1024  # open at once; beyond: closed on accept
    first_request_s: float = 10.0  # a new connection has this long to send a whole request, else it is closed
    keepalive_s: float = 15.0  # an idle kept-alive connection is closed after this
    max_body_bytes: int = 16 * 1024  # request bodies (no route reads one)
    max_line_bytes: int = 8190  # the request line (method, target, version)
    max_field_bytes: int = 8190  # one header
    max_headers: int = 64
    retry_after_s: int = 1


LIMITS = web.AppKey("didnode_limits", HttpLimits)
# Cheap routes a load balancer or Prometheus polls: answered even while max_requests are under way.
UNBOUNDED = frozenset({"/healthz", "/readyz", "/metrics"})
# The open connections (aiohttp request handlers) that have sent a whole request: didnode.http.server
# closes a new connection that is not among them within HttpLimits.first_request_s (and forgets
# each when it closes).
SEEN = web.AppKey("didnode_seen", set)


def problem_response(err: DidnodeError, status: int | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """An ``application/problem+json`` answer for ``err``."""
    doc = problem(err, status)
    all_headers = {**COMMON_HEADERS, "Content-Type": PROBLEM_JSON, **(headers or {})}
    return web.Response(status=doc["status"], body=json.dumps(doc, separators=(",", ":")).encode(), headers=all_headers)


def _from_aiohttp(exc: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's own refusals (no route, wrong method, body too large) as problem documents."""
    if exc.status == 404:
        err: DidnodeError = NotFound(f"no resource at {request.path[:200]}: see docs/http.md for the routes", path=request.path[:200])
    elif exc.status == 405:
        err = InvalidArgument(f"{request.method[:20]} is not served here: the HTTP face is read-only (GET); writes go over gRPC", method=request.method[:20])
    elif exc.status == 413:
        err = TooLarge(f"request bodies are at most {request.app[LIMITS].max_body_bytes} bytes", field="body")
    else:
        err = InvalidArgument(exc.reason or "bad request")
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return problem_response(err, exc.status, headers)


def build_app(resolver: Resolver, readiness: Readiness, metrics: NodeMetrics | None = None, limits: HttpLimits = HttpLimits()) -> web.Application:
    """The aiohttp application of one node."""
    state = {"inflight": 0}
    seen: set[Any] = set()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        seen.add(request.protocol)
        if state["inflight"] >= limits.max_requests and request.path not in UNBOUNDED:
            response: web.StreamResponse = problem_response(
                Overloaded(f"{state['inflight']} requests are being answered, the most this node takes at once; retry shortly"),
                503,
                {"Retry-After": str(limits.retry_after_s)},
            )
        else:
            state["inflight"] += 1
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = _from_aiohttp(exc, request)
            except DidnodeError as err:
                response = problem_response(err)
            except asyncio.CancelledError:
                raise
            except Exception:  # the edge: a bug is a 500 problem document, the traceback goes to the log
                log.exception("internal error answering %s %s", request.method, request.path[:200])
                response = problem_response(Internal("internal error; see the node log"))
            finally:
                state["inflight"] -= 1
        if metrics is not None:
            info = request.match_info
            route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
            metrics.on_http(route, response.status, time.perf_counter() - started)
        return response

    async def methods(request: web.Request) -> web.Response:
        return web.json_response(["dnode"], headers=COMMON_HEADERS)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"}, headers={**COMMON_HEADERS, "Cache-Control": "no-store"})

    async def readyz(request: web.Request) -> web.Response:
        report = readiness.check()
        return web.json_response(report.to_json(), status=200 if report.ready else 503, headers={**COMMON_HEADERS, "Cache-Control": "no-store"})

    async def metrics_text(request: web.Request) -> web.Response:
        if metrics is None:
            raise web.HTTPNotFound()
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_TYPE, "Cache-Control": "no-store"})

    app = web.Application(middlewares=[guard], client_max_size=limits.max_body_bytes)
    app[LIMITS] = limits
    app[SEEN] = seen
    app.router.add_get(IDENTIFIERS + "{did_url:.*}", resolver.identifiers)
    app.router.add_get(STATUS + "{did}/{resource_id}", resolver.status_list)
    app.router.add_get("/1.0/methods", methods)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if resolver.transparency is not None:
        add_tile_routes(app, resolver.transparency)
        add_explorer_api(app, resolver)
        add_explorer_static(app)
    return app


__all__ = ["LIMITS", "SEEN", "HttpLimits", "build_app", "problem_response"]
