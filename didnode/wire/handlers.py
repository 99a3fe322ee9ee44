"""gRPC method handlers with safe deserializers, for every server didnode code runs (a node, a device's responder).

Handlers are registered from the service descriptors with *safe*
deserializers: bytes that are not a valid message become a :class:`Malformed`
marker, so the servicer answers INVALID_ARGUMENT with reason
MALFORMED_MESSAGE instead of grpc's generic "Exception deserializing request".

Each method has a request size limit (:func:`didnode.wire.limits.request_limit`):
a longer message is never parsed; it becomes an :class:`Oversized` marker (a
:class:`Malformed` whose error is ``TOO_LARGE``, or ``HANDSHAKE_TOO_LARGE`` on
``AuthService``). A server may also pass a :class:`CallGuard` that wraps every
method's behaviour (the node's per-peer limits: :mod:`didnode.transport.guard`).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from didnode.errors import DidnodeError, HandshakeTooLarge, MalformedMessage, TooLarge
from didnode.wire.limits import request_limit

AUTH_SERVICE = "didnode.v1.AuthService"


class Malformed:
    """Stands for a request whose bytes did not parse; ``error`` is what the servicer answers."""

    def __init__(self, what: str, error: str) -> None:
        self.error: DidnodeError = MalformedMessage(f"request is not a valid {what} message: {error}")


class Oversized(Malformed):
    """Stands for a request longer than its method's limit (never parsed); ``error`` is TOO_LARGE."""

    def __init__(self, method: str, size: int, limit: int) -> None:
        cls = HandshakeTooLarge if method.startswith(f"/{AUTH_SERVICE}/") else TooLarge
        self.error = cls(f"a {method} request message is {size} bytes; the limit is {limit}", field="message", size=size, limit=limit)


class CallGuard(Protocol):
    """Wraps the behaviour of each method of a server (what the node limits per peer)."""

    def wrap(self, method: str, behavior: Callable[..., Any], request_streaming: bool, response_streaming: bool) -> Callable[..., Any]:
        ...


def _safe_deserializer(cls: Any, method: str, limit: int) -> Callable[[bytes], Any]:
    name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        if len(data) > limit:
            return Oversized(method, len(data), limit)
        try:
            return cls.FromString(data)
        except DecodeError as exc:
            return Malformed(name, str(exc) or "truncated or garbage bytes")

    return deserialize


def generic_handler(
    service: _descriptor.ServiceDescriptor, servicer: object, guard: CallGuard | None = None, safe: bool = True
) -> grpc.GenericRpcHandler:
    """A handler for every method of ``service``, implemented by same-named methods of ``servicer``.

    ``safe`` False is for servicers that are not didnode's (health, reflection):
    they get plain deserializers (gRPC's receive limit still applies), and
    methods they do not implement are left out (UNIMPLEMENTED).
    """
    handlers = {}
    for method in service.methods:
        req = message_factory.GetMessageClass(method.input_type)
        resp = message_factory.GetMessageClass(method.output_type)
        impl = getattr(servicer, method.name) if safe else getattr(servicer, method.name, None)
        if impl is None:
            continue
        path = f"/{service.full_name}/{method.name}"
        streaming = (method.client_streaming, method.server_streaming)
        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[streaming]
        if guard is not None:
            impl = guard.wrap(path, impl, *streaming)
        deserializer = _safe_deserializer(req, path, request_limit(path)) if safe else req.FromString
        handlers[method.name] = kind(impl, request_deserializer=deserializer, response_serializer=resp.SerializeToString)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
