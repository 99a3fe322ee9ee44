"""The one table from didnode errors to gRPC status codes, and back.

A rejected call carries the standard rich error model: the gRPC status code,
a one-line message, and in the ``grpc-status-details-bin`` trailer a
``google.rpc.Status`` holding a ``google.rpc.ErrorInfo`` whose ``reason`` is
the error's machine-readable code (domain ``didnode``) and whose metadata are
its details. Clients rebuild the same exception class from the reason.

An error whose details carry ``retry_after_ms`` (``RATE_LIMITED``) also
carries the standard ``google.rpc.RetryInfo`` detail with that delay; a client
reading a status with a RetryInfo but no such detail adds it, so
``error.details["retry_after_ms"]`` is the hint either way.
"""

from __future__ import annotations

from typing import Iterable

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from didnode import errors as e

DOMAIN = "didnode"
DETAILS_KEY = rpc_status.GRPC_DETAILS_METADATA_KEY
RETRY_AFTER = "retry_after_ms"

# Most specific first: the first class in an error's MRO found here wins.
STATUS_TABLE: dict[type[e.DidnodeError], grpc.StatusCode] = {
    e.DuplicateOperation: grpc.StatusCode.ALREADY_EXISTS,
    e.DidAlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    e.SequenceMismatch: grpc.StatusCode.ABORTED,
    e.PrevMismatch: grpc.StatusCode.ABORTED,
    e.WriteConflict: grpc.StatusCode.ABORTED,
    e.DidDeactivated: grpc.StatusCode.FAILED_PRECONDITION,
    e.StoreReadOnly: grpc.StatusCode.FAILED_PRECONDITION,
    e.HandshakeTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    e.IdleTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
    e.TooLarge: grpc.StatusCode.INVALID_ARGUMENT,
    e.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    e.NotFound: grpc.StatusCode.NOT_FOUND,
    e.Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    e.Unauthorized: grpc.StatusCode.PERMISSION_DENIED,
    e.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    e.Unavailable: grpc.StatusCode.UNAVAILABLE,
    e.Internal: grpc.StatusCode.INTERNAL,
    e.DidnodeError: grpc.StatusCode.INTERNAL,
}

# What a client says when the transport itself fails (no didnode ErrorInfo).
_TRANSPORT_ERRORS: dict[grpc.StatusCode, type[e.DidnodeError]] = {
    grpc.StatusCode.UNAVAILABLE: e.NodeUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: e.NodeUnavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: e.Overloaded,
    grpc.StatusCode.INVALID_ARGUMENT: e.InvalidArgument,
    grpc.StatusCode.UNIMPLEMENTED: e.NodeUnavailable,
    grpc.StatusCode.CANCELLED: e.NodeUnavailable,
}


def code_for(err: e.DidnodeError) -> grpc.StatusCode:
    """The gRPC status code of ``err`` (walks its class hierarchy through :data:`STATUS_TABLE`)."""
    for cls in type(err).__mro__:
        code = STATUS_TABLE.get(cls)  # type: ignore[call-overload]
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def to_status(err: e.DidnodeError) -> grpc.Status:
    """A grpc.Status (code, message, rich details trailer) for ``err``."""
    code = code_for(err)
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.details)
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    retry_ms = err.details.get(RETRY_AFTER, "")
    if retry_ms.isdigit():
        hint = any_pb2.Any()
        hint.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(retry_ms) // 1000, nanos=int(retry_ms) % 1000 * 1_000_000)))
        details.append(hint)
    proto = status_pb2.Status(code=code.value[0], message=err.message, details=details)
    return rpc_status.to_status(proto)


def from_rpc_error(code: grpc.StatusCode, message: str, trailing: Iterable[tuple[str, object]] | None) -> e.DidnodeError:
    """Rebuild the didnode exception from a failed call's code, message and trailers."""
    for key, value in trailing or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        proto = status_pb2.Status()
        try:
            proto.ParseFromString(value)
        except DecodeError:
            break
        found: e.DidnodeError | None = None
        retry_ms: int | None = None
        for detail in proto.details:
            info = error_details_pb2.ErrorInfo()
            retry = error_details_pb2.RetryInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == DOMAIN and found is None:
                found = e.error_for_reason(info.reason, proto.message or message, dict(info.metadata))
            elif detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
                retry_ms = retry.retry_delay.seconds * 1000 + retry.retry_delay.nanos // 1_000_000
        if found is not None:
            if retry_ms is not None:
                found.details.setdefault(RETRY_AFTER, str(retry_ms))
            return found
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in message:
        # gRPC's own size limit (the node's receive limit, or this client's send limit).
        return e.TooLarge(message, field="message", grpc_code=code.name)
    cls = _TRANSPORT_ERRORS.get(code, e.Internal)
    text = message or code.name
    if cls is e.NodeUnavailable:
        text = f"node unreachable: {text}"
    return cls(text, grpc_code=code.name)


def rejection_code(err: e.DidnodeError) -> int:
    """Numeric gRPC code for a per-item rejection in a batch."""
    return int(code_for(err).value[0])

