"""Build and run the node's gRPC server: didnode services, health checking, reflection.

Handlers come from :func:`didnode.wire.handlers.generic_handler` (safe
deserializers: a request that does not parse is answered INVALID_ARGUMENT /
MALFORMED_MESSAGE, not with grpc's generic error; a request over its method's
size limit is never parsed). Every method of every service, health and
reflection included, runs inside the node's :class:`~didnode.transport.guard.NodeGuard`
(per-peer calls and rates, idle streams); the server's options come from
:class:`~didnode.transport.limits.Limits` (docs/security.md, "Limits"). With a
:class:`~didnode.wire.tls.TlsServerConfig` the port serves TLS only
(docs/tls.md); :func:`listens_on_loopback` is the rule that lets a node serve
plaintext without being told ``--insecure-plaintext``.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import descriptor as _descriptor
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from didnode.transport.guard import NodeGuard
from didnode.transport.limits import MAX_REPLY_BYTES, Limits, connection_limit, raise_nofile_limit, server_options
from didnode.wire.handlers import generic_handler
from didnode.wire.limits import MAX_REQUEST_BYTES
from didnode.wire.tls import listens_on_loopback  # noqa: F401  (re-exported: the node's rule)
from didnode.wire.tls import TlsServerConfig

log = logging.getLogger("didnode.transport")

MAX_MESSAGE_BYTES = MAX_REPLY_BYTES  # replies; requests are at most MAX_REQUEST_BYTES
# The options of a server with the default limits and 1,024 descriptors (see server_options).
SERVER_OPTIONS = server_options(Limits(), 1024)

__all__ = ["MAX_MESSAGE_BYTES", "MAX_REQUEST_BYTES", "SERVER_OPTIONS", "NodeServer", "listens_on_loopback", "start_server"]


class NodeServer:
    """The running gRPC server of a node, its health servicer and its guard."""

    def __init__(
        self, server: grpc.aio.Server, port: int, health_servicer: health.aio.HealthServicer, names: list[str], guard: NodeGuard | None = None
    ) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.names = names
        self.guard = guard

    async def set_serving(self, serving: bool, names: list[str] | None = None) -> None:
        """Set the health status of the whole server ("") and of each service (or only ``names``)."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in names if names is not None else ["", *self.names]:
            await self.health.set(name, status)

    async def stop(self, grace: float = 5.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


async def start_server(
    pairs: list[tuple[_descriptor.ServiceDescriptor, object]], listen: str, limits: Limits | None = None, tls: TlsServerConfig | None = None
) -> NodeServer:
    """Serve (service descriptor, servicer) ``pairs`` on ``listen`` (HOST:PORT; port 0 picks a free one).

    Health checking and reflection are added for every service. Raises the
    process's RLIMIT_NOFILE soft limit to its hard limit first (connections
    are file descriptors). ``tls``: serve TLS only (None: plaintext; whether
    that is allowed is the caller's rule, :func:`listens_on_loopback`).
    """
    limits = limits or Limits()
    nofile = raise_nofile_limit()
    server = grpc.aio.server(options=server_options(limits, nofile), maximum_concurrent_rpcs=limits.max_calls)
    guard = NodeGuard(limits)
    health_servicer = health.aio.HealthServicer()
    health_service = health_pb2.DESCRIPTOR.services_by_name["Health"]
    reflection_service = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
    names = [d.full_name for d, _ in pairs] + [health_service.full_name, reflection.SERVICE_NAME]
    handlers = [generic_handler(d, s, guard) for d, s in pairs]
    handlers.append(generic_handler(health_service, health_servicer, guard, safe=False))
    handlers.append(generic_handler(reflection_service, reflection.aio.ReflectionServicer(names), guard, safe=False))
    server.add_generic_rpc_handlers(tuple(handlers))
    port = server.add_insecure_port(listen) if tls is None else server.add_secure_port(listen, tls.server_credentials())
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    log.debug("server limits: %s; %d descriptors, %d connections at most", limits, nofile, connection_limit(limits, nofile))
    node_server = NodeServer(server, port, health_servicer, [d.full_name for d, _ in pairs], guard)
    await node_server.set_serving(True)
    return node_server
