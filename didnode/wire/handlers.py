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
With a guard, a method with one request message is registered as a
client-streaming one that reads that message itself: grpc calls a unary
handler only once its request has fully arrived, so a call still receiving
its request would be invisible to the guard (the wire is the same: a unary
call is a stream of one message).
"""

from __future__ import annotations

import inspect
from typing import Any, AsyncIterator, Callable, Protocol

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from didnode.errors import DidnodeError, HandshakeTooLarge, MalformedMessage, TooLarge
from didnode.wire.limits import request_limit
from didnode.wire.status import to_status

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
    """Wraps the behaviour of each method of a server (what the node limits per peer).

    ``single_request``: the method takes one request message, read from the
    request stream the wrapped behaviour is given (see the module doc).
    """

    def wrap(
        self, method: str, behavior: Callable[..., Any], request_streaming: bool, response_streaming: bool, single_request: bool
    ) -> Callable[..., Any]:
        ...


def _one_request(impl: Callable[..., Any], what: str, safe: bool) -> Callable[..., Any] | None:
    """``impl`` (request, context) as a behaviour over a request stream that carries its one message."""

    async def first(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async for msg in requests:
            return msg
        marker = Malformed(what, "the call carried no request message")
        if safe:
            return marker
        await context.abort_with_status(to_status(marker.error))

    if inspect.isasyncgenfunction(impl):

        async def gen(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            request = await first(requests, context)
            async for reply in impl(request, context):
                yield reply

        return gen
    if inspect.iscoroutinefunction(impl):

        async def coro(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            return await impl(await first(requests, context), context)

        return coro
    return None  # a plain function (an unimplemented stub): left out, UNIMPLEMENTED


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
        if guard is not None:
            single = not method.client_streaming
            if single:
                impl = _one_request(impl, req.DESCRIPTOR.full_name, safe)
                if impl is None:
                    continue
                streaming = (True, method.server_streaming)
            impl = guard.wrap(path, impl, *streaming, single)
        kind = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[streaming]
        deserializer = _safe_deserializer(req, path, request_limit(path)) if safe else req.FromString
        handlers[method.name] = kind(impl, request_deserializer=deserializer, response_serializer=resp.SerializeToString)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
