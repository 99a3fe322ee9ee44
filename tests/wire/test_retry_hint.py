"""The retry hint of a rate-limited call: google.rpc.RetryInfo in the status, retry_after_ms in the error's details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from didnode import errors
from didnode.wire.status import DETAILS_KEY, from_rpc_error, to_status


def _details(status: grpc.Status) -> status_pb2.Status:
    return status_pb2.Status.FromString(dict(status.trailing_metadata)[DETAILS_KEY])


def test_a_rate_limited_status_carries_retry_info_and_the_client_rebuilds_the_hint() -> None:
    status = to_status(errors.RateLimited("ipv4:10.0.0.7 is over its submit rate", peer="ipv4:10.0.0.7", retry_after_ms=1250))
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = [d for d in _details(status).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 250_000_000)
    err = from_rpc_error(status.code, status.details, status.trailing_metadata)
    assert type(err) is errors.RateLimited and err.retry_after_ms == 1250 and err.details["peer"] == "ipv4:10.0.0.7"


def test_errors_without_a_hint_carry_no_retry_info() -> None:
    status = to_status(errors.Overloaded("busy"))
    assert [d for d in _details(status).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)] == []
    assert errors.RateLimited("no hint").retry_after_ms is None


def test_a_retry_info_alone_becomes_the_hint() -> None:
    """A status from another server: RetryInfo next to the ErrorInfo, no retry_after_ms in its metadata."""
    info, hint = any_pb2.Any(), any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="didnode"))
    hint.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=5_000_000)))
    status = rpc_status.to_status(status_pb2.Status(code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message="slow down", details=[hint, info]))
    err = from_rpc_error(status.code, status.details, status.trailing_metadata)
    assert isinstance(err, errors.RateLimited) and err.retry_after_ms == 2005


def test_grpcs_own_size_refusal_is_too_large() -> None:
    err = from_rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "SERVER: Received message larger than max (4194314 vs. 1048576)", ())
    assert isinstance(err, errors.TooLarge) and "4194314" in err.message
