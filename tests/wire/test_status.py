"""The error <-> gRPC status table: every error that crosses the wire comes back as exactly its class."""

from __future__ import annotations

import inspect

import grpc
import pytest

from didnode import errors
from didnode.wire.status import DETAILS_KEY, code_for, from_rpc_error, to_status

ALL_CLASSES = sorted(
    (c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, errors.DidnodeError)), key=lambda c: c.__name__
)


def test_every_class_declares_its_own_reason() -> None:
    """A class that inherited its parent's reason would arrive at a client as the parent."""
    assert [c.__name__ for c in ALL_CLASSES if "reason" not in c.__dict__] == []


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_status_round_trip_rebuilds_the_exact_class(cls: type[errors.DidnodeError]) -> None:
    err = cls("something precise went wrong", did="did:dnode:x", position=7)
    status = to_status(err)
    rebuilt = from_rpc_error(status.code, status.details, status.trailing_metadata)
    assert type(rebuilt) is cls
    assert rebuilt.reason == cls.reason and rebuilt.message == err.message and rebuilt.details == err.details
    assert status.code == code_for(err)


def test_a_peer_error_is_not_its_parent() -> None:
    """The case that motivated own reasons: a peer's revoked key used to arrive as a plain KeyRevoked."""
    status = to_status(errors.PeerKeyRevoked("the peer's key-1 is revoked"))
    rebuilt = from_rpc_error(status.code, status.details, status.trailing_metadata)
    assert isinstance(rebuilt, errors.PeerKeyRevoked) and isinstance(rebuilt, errors.KeyRevoked)


def test_transport_failures_without_details_become_transport_errors() -> None:
    assert isinstance(from_rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused", ()), errors.NodeUnavailable)
    assert isinstance(from_rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big", ()), errors.Overloaded)


@pytest.mark.parametrize("garbage", [b"", b"\xff\x00", b"\x0a\x05abc"])
def test_garbage_details_fall_back_to_the_status_code(garbage: bytes) -> None:
    err = from_rpc_error(grpc.StatusCode.NOT_FOUND, "gone", ((DETAILS_KEY, garbage),))
    assert isinstance(err, errors.DidnodeError) and err.message
