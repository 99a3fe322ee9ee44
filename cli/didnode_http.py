"""``didnode serve``'s HTTP face and logging options: ``--http``, ``--ready-max-lag``, ``--log-format`` (docs/http.md).

``--http HOST:PORT`` serves the HTTP face (W3C DID Resolution, status lists,
``/metrics``, ``/healthz``, ``/readyz``) in the node's event loop; the node
prints its URL (``http://HOST:PORT`` or ``https://...``) as the second line
of stdout, after the gRPC address. It uses the gRPC port's TLS: with
``--tls-cert``/``--tls-key`` it serves HTTPS with the same certificate (and
requires client certificates when ``--tls-client-ca`` is given); without, it
serves plaintext on a loopback address only, unless ``--insecure-plaintext``.

``--log-format json`` writes one JSON object per log record
(:class:`JsonFormatter`) instead of text lines.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import sys
from typing import Any, Callable, Sequence, TypeVar

import click

from didnode.errors import InsecureListen
from didnode.service.health import DEFAULT_MAX_LAG, Readiness
from didnode.service.ledger import LedgerService
from didnode.service.node import Node
from didnode.transport.readiness import READINESS_SERVICE, start_following
from didnode.transport.server import NodeServer, listens_on_loopback
from didnode.wire.tls import TlsServerConfig

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("didnode")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def http_options(f: F) -> F:
    """The options of ``didnode serve`` for the HTTP face and logs (parameters ``http``, ``ready_max_lag``, ``log_format``)."""
    options = [
        click.option("--http", default="", envvar="DIDNODE_HTTP", metavar="HOST:PORT", help="Also serve HTTP (DID resolution, status lists, /metrics, /healthz, /readyz) on HOST:PORT; port 0 picks a free one. Off when empty. See docs/http.md."),
        click.option("--ready-max-lag", default=DEFAULT_MAX_LAG, show_default=True, envvar="DIDNODE_READY_MAX_LAG", type=click.IntRange(0), metavar="N", help="Cluster mode: stream messages a node may be behind and still report ready (/readyz, gRPC health)."),
        click.option("--log-format", default="text", show_default=True, envvar="DIDNODE_LOG_FORMAT", type=click.Choice(["text", "json"]), help="Log records as text lines or as one JSON object per line."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``,
    and ``exception`` (the formatted traceback) when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = _dt.datetime.fromtimestamp(record.created, tz=_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out: dict[str, Any] = {"time": stamp, "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def setup_logging(level: str, log_format: str) -> None:
    """The node's logging on stderr, as text lines or JSON objects."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def check_http_listen(http: str, tls: TlsServerConfig | None, insecure_plaintext: bool) -> None:
    """The gRPC rule for the HTTP address: plaintext only on loopback, unless ``--insecure-plaintext``."""
    if http and tls is None and not insecure_plaintext and not listens_on_loopback(http):
        raise InsecureListen(
            f"refusing to serve plaintext HTTP on {http}, which is not a loopback address: give --tls-cert and --tls-key "
            "(the HTTP face serves HTTPS with them), or --insecure-plaintext if something else secures the network",
            listen=http,
        )


class HttpFace:
    """What ``didnode serve`` runs beside its gRPC server: readiness for gRPC health, and the HTTP face if asked."""

    def __init__(self, task: "asyncio.Task[None]", http: Any) -> None:
        self.task = task
        self.http = http

    @classmethod
    async def start(
        cls, node: Node, ledger: LedgerService, server: NodeServer, servicers: Sequence[tuple[object, object]], http: str, tls: TlsServerConfig | None, max_lag: int,
        witness: Any = None,
    ) -> "HttpFace":
        readiness = Readiness(node, max_lag)
        task = start_following(readiness, server)
        face = None
        if http:
            from didnode.http.server import start_node_http  # aiohttp and prometheus_client: only with --http

            try:
                face = await start_node_http(node, ledger, http, readiness=readiness, servicers=servicers, guard=server.guard, tls=tls, witness=witness)
            except BaseException:
                task.cancel()
                raise
        return cls(task, face)

    def announce(self) -> None:
        """Print the HTTP face's URL (the second line of stdout, after the gRPC address) and log it."""
        if self.http is not None:
            print(self.http.url, flush=True)
            log.info("HTTP face on %s (DID resolution at %s/1.0/identifiers/, /metrics, /healthz, /readyz)", self.http.url, self.http.url)

    async def stop(self, server: NodeServer) -> None:
        self.task.cancel()
        await server.set_serving(False, [READINESS_SERVICE])
        if self.http is not None:
            await self.http.stop()


__all__ = ["HttpFace", "JsonFormatter", "check_http_listen", "http_options", "setup_logging"]
