"""gRPC method handlers with safe deserializers, for every server didnode code runs (a node, a device's responder).

Handlers are registered from the service descriptors with *safe*
deserializers: bytes that are not a valid message become a :class:`Malformed`
marker, so the servicer answers INVALID_ARGUMENT with reason
MALFORMED_MESSAGE instead of grpc's generic "Exception deserializing request".
"""

from __future__ import annotations

from typing import Any, Callable

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from didnode.errors import MalformedMessage


class Malformed:
    """Stands for a request whose bytes did not parse; ``error`` is what the servicer answers."""

    def __init__(self, what: str, error: str) -> None:
        self.error = MalformedMessage(f"request is not a valid {what} message: {error}")


def _safe_deserializer(cls: Any) -> Callable[[bytes], Any]:
    name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            return Malformed(name, str(exc) or "truncated or garbage bytes")

    return deserialize


def generic_handler(service: _descriptor.ServiceDescriptor, servicer: object) -> grpc.GenericRpcHandler:
    """A handler for every method of ``service``, implemented by same-named methods of ``servicer``."""
    handlers = {}
    for method in service.methods:
        req = message_factory.GetMessageClass(method.input_type)
        resp = message_factory.GetMessageClass(method.output_type)
        impl = getattr(servicer, method.name)
        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(impl, request_deserializer=_safe_deserializer(req), response_serializer=resp.SerializeToString)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
