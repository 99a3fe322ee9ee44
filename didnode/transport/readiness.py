"""The gRPC health service reports the node's readiness (:mod:`didnode.service.health`).

Under the service name :data:`READINESS_SERVICE` (``didnode.readiness``) the
health service answers ``SERVING`` while :meth:`Readiness.check` passes and
``NOT_SERVING`` (with the reason in the node's log) while it does not,
re-checked every ``interval_s``: the same answer as HTTP ``/readyz``, for
load balancers and orchestrators that probe gRPC (Kubernetes' ``grpc`` probe
takes the service name). The server-wide entry ``""`` stays what ``/healthz``
says, alive: a node whose writes cannot be ordered still serves reads; the
per-service entries keep their own rules (in cluster mode
``didnode.v1.LedgerService`` follows writability).
"""

from __future__ import annotations

import asyncio
import logging

from didnode.service.health import Readiness
from didnode.transport.server import NodeServer

log = logging.getLogger("didnode.health")
READINESS_SERVICE = "didnode.readiness"


async def follow_readiness(readiness: Readiness, server: NodeServer, interval_s: float = 1.0) -> None:
    """Run until cancelled: set :data:`READINESS_SERVICE`'s health status whenever readiness changes."""
    last: bool | None = None
    while True:
        report = readiness.check()
        if report.ready is not last:
            await server.set_serving(report.ready, [READINESS_SERVICE])
            if not report.ready:
                log.warning("not ready: %s", report.reason)
            elif last is not None:
                log.info("ready again")
            last = report.ready
        await asyncio.sleep(interval_s)


def start_following(readiness: Readiness, server: NodeServer, interval_s: float = 1.0) -> "asyncio.Task[None]":
    """:func:`follow_readiness` as a task of the running loop (cancel it before stopping the server)."""
    return asyncio.get_running_loop().create_task(follow_readiness(readiness, server, interval_s), name="didnode-readiness")


__all__ = ["READINESS_SERVICE", "follow_readiness", "start_following"]
