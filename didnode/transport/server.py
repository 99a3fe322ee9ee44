"""Build and run the node's gRPC server: didnode services, health checking, reflection.

Handlers come from :func:`didnode.wire.handlers.generic_handler` (safe
deserializers: a request that does not parse is answered INVALID_ARGUMENT /
MALFORMED_MESSAGE, not with grpc's generic error).
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor as _descriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from didnode.wire.handlers import generic_handler

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    ("grpc.max_concurrent_streams", 256),
]


class NodeServer:
    """The running gRPC server of a node and its health servicer."""

    def __init__(self, server: grpc.aio.Server, port: int, health_servicer: health.aio.HealthServicer, names: list[str]) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.names = names

    async def set_serving(self, serving: bool, names: list[str] | None = None) -> None:
        """Set the health status of the whole server ("") and of each service (or only ``names``)."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in names if names is not None else ["", *self.names]:
            await self.health.set(name, status)

    async def stop(self, grace: float = 5.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


async def start_server(pairs: list[tuple[_descriptor.ServiceDescriptor, object]], listen: str) -> NodeServer:
    """Serve (service descriptor, servicer) ``pairs`` on ``listen`` (HOST:PORT; port 0 picks a free one).

    Health checking and reflection are added for every service.
    """
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(tuple(generic_handler(d, s) for d, s in pairs))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [d.full_name for d, _ in pairs] + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    node_server = NodeServer(server, port, health_servicer, [d.full_name for d, _ in pairs])
    await node_server.set_serving(True)
    return node_server
