"""Run a node's HTTP face in the node's event loop, beside grpc.aio (``didnode serve --http HOST:PORT``).

:func:`start_node_http` composes it for a running node: the metrics (hooked
into the node's store, writer, ledger service and gRPC guard), the readiness
the gRPC health service also reports, the resolver over the same service
objects the gRPC servicers use, and the listening socket. With the node's
:class:`~didnode.wire.tls.TlsServerConfig` it serves HTTPS with the same
certificate (and requires client certificates when gRPC does).

Connections are bounded here (aiohttp has no such bound): beyond
``HttpLimits.max_connections`` a new one is closed at once, and one that has
not sent a whole request within ``HttpLimits.first_request_s`` is closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from typing import Any, Sequence

from aiohttp import web

from didnode.http.app import SEEN, HttpLimits, build_app
from didnode.http.metrics import NodeMetrics, handshake_tally
from didnode.http.resolver import Resolver
from didnode.service.health import Readiness
from didnode.service.ledger import LedgerService
from didnode.service.node import Node
from didnode.service.transparency import TransparencyService
from didnode.wire.tls import TlsServerConfig

log = logging.getLogger("didnode.http")


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); raises ``ValueError`` otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(f"--http takes HOST:PORT (port 0 picks a free one), not {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def ssl_context(tls: TlsServerConfig) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) with ``tls``'s certificate chain and key, and its client CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="didnode-tls-") as tmp:  # the ssl module loads chains from files only
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert, tls.cert_pem), (key, tls.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert, key)
    if tls.client_ca_pem is not None:
        ctx.load_verify_locations(cadata=tls.client_ca_pem.decode("ascii", "replace"))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class HttpServer:
    """A listening HTTP face: its port, its scheme; :meth:`stop` closes it."""

    def __init__(self, runner: web.AppRunner, server: asyncio.AbstractServer, host: str, port: int, scheme: str, metrics: NodeMetrics | None, guard: Any) -> None:
        self.runner = runner
        self.server = server
        self.host = host
        self.port = port
        self.scheme = scheme
        self.metrics = metrics
        self._guard = guard

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @classmethod
    async def start(cls, app: web.Application, listen: str, limits: HttpLimits = HttpLimits(), tls: TlsServerConfig | None = None) -> "HttpServer":
        """Serve ``app`` on ``listen`` (HOST:PORT; port 0 picks a free one)."""
        host, port = split_listen(listen)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=limits.keepalive_s,
            max_line_size=limits.max_line_bytes,
            max_field_size=limits.max_field_bytes,
            max_headers=limits.max_headers,
        )
        await runner.setup()
        loop = asyncio.get_running_loop()
        _bound_connections(runner.server, app[SEEN], limits, loop)  # type: ignore[arg-type]
        try:
            server = await loop.create_server(runner.server, host, port, ssl=ssl_context(tls) if tls else None, reuse_address=True, backlog=1024)  # type: ignore[arg-type]
        except BaseException:
            await runner.cleanup()
            raise
        bound = server.sockets[0].getsockname()[1]
        return cls(runner, server, host, bound, "https" if tls else "http", None, None)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, let requests under way finish for up to ``grace`` seconds, disconnect the metrics."""
        if self.metrics is not None:
            self.metrics.uninstall(self._guard)
        self.server.close()
        if self.runner.server is not None:
            await self.runner.server.shutdown(grace)
        await self.runner.cleanup()
        await self.server.wait_closed()


def _bound_connections(server: web.Server, seen: Any, limits: HttpLimits, loop: asyncio.AbstractEventLoop) -> None:
    """Close connections beyond ``max_connections``, and those without a whole request within ``first_request_s``."""
    made, lost = server.connection_made, server.connection_lost

    def close_if_silent(handler: Any, transport: asyncio.BaseTransport) -> None:
        if handler not in seen and not transport.is_closing():
            transport.close()

    def connection_made(handler: Any, transport: asyncio.BaseTransport) -> None:
        made(handler, transport)
        if len(server.connections) > limits.max_connections:
            transport.close()
            return
        loop.call_later(limits.first_request_s, close_if_silent, handler, transport)

    def connection_lost(handler: Any, exc: BaseException | None) -> None:
        seen.discard(handler)
        lost(handler, exc)

    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]


async def start_node_http(
    node: Node,
    ledger: LedgerService,
    listen: str,
    *,
    readiness: Readiness | None = None,
    servicers: Sequence[tuple[object, object]] = (),
    guard: Any = None,
    tls: TlsServerConfig | None = None,
    limits: HttpLimits = HttpLimits(),
    witness: Any = None,
) -> HttpServer:
    """The HTTP face of a running node (module docstring).

    ``servicers``: the node's gRPC (descriptor, servicer) pairs, where the
    handshake responder's outcomes are found for the metrics; ``guard``: its
    gRPC server's :class:`~didnode.transport.guard.NodeGuard` (RPC latency);
    ``witness``: a :class:`~didnode.witness.service.Witness` to serve
    ``POST /add-checkpoint`` with (``didnode serve --witness-for``, docs/witness.md).
    """
    readiness = readiness if readiness is not None else Readiness(node)
    metrics = NodeMetrics(node, ledger, readiness, handshake_tally(servicers))
    app = build_app(Resolver(ledger, TransparencyService(node)), readiness, metrics, limits)
    if witness is not None:
        from didnode.witness.http import add_witness_routes

        add_witness_routes(app, witness)
    server = await HttpServer.start(app, listen, limits, tls)
    metrics.install(guard)
    server.metrics, server._guard = metrics, guard
    return server


__all__ = ["HttpServer", "split_listen", "ssl_context", "start_node_http"]
