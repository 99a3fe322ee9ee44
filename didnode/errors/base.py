"""The base of the error tree, the reason registry, and the categories the transport maps to status codes.

Part of the one error tree: import from :mod:`didnode.errors`.
"""

from __future__ import annotations

from typing import ClassVar, Mapping

_BY_REASON: dict[str, type["DidnodeError"]] = {}


class DidnodeError(Exception):
    """Base of every didnode error.

    ``details`` are short string key/values (a position, a key id, the field
    that was too large) that travel with the error as ErrorInfo metadata.
    """

    reason: ClassVar[str] = "DIDNODE_ERROR"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Only classes that declare their own reason are registered, so that
        # category classes without one never shadow a concrete class.
        if "reason" in cls.__dict__:
            existing = _BY_REASON.get(cls.reason)
            if existing is not None and existing is not cls:
                raise TypeError(f"reason {cls.reason} is used by {existing.__name__} and {cls.__name__}")
            _BY_REASON[cls.reason] = cls

    def __init__(self, message: str, **details: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, str] = {k: str(v) for k, v in details.items()}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason})"


def error_for_reason(reason: str, message: str, details: Mapping[str, str] | None = None) -> DidnodeError:
    """Rebuild the exception a peer raised from its reason code.

    Unknown reasons (a newer server) become a plain :class:`DidnodeError`
    whose ``reason`` attribute still says what the server said.
    """
    cls = _BY_REASON.get(reason)
    if cls is None:
        err = DidnodeError(message, **dict(details or {}))
        err.reason = reason  # type: ignore[misc]  # instance-level override for an unknown code
        return err
    return cls(message, **dict(details or {}))


def all_reasons() -> dict[str, type[DidnodeError]]:
    """Every registered reason code and its class (for docs and tests)."""
    return dict(_BY_REASON)


# --------------------------------------------------------------------------
# Categories: the transport maps these (not the leaves) to gRPC codes.
# --------------------------------------------------------------------------


class InvalidInput(DidnodeError):
    """The request itself is wrong; retrying it unchanged can never succeed."""

    reason = "INVALID_INPUT"


class NotFound(DidnodeError):
    """The thing named does not exist (yet) on this node."""

    reason = "NOT_FOUND"


class Conflict(DidnodeError):
    """The request is well formed but conflicts with the current ledger state."""

    reason = "CONFLICT"


class Unauthorized(DidnodeError):
    """A signature, key or proof does not authorize what was asked."""

    reason = "UNAUTHORIZED"


class ResourceExhausted(DidnodeError):
    """A bound on pending work, sizes or rates was hit; retry later or smaller."""

    reason = "RESOURCE_EXHAUSTED"


class Unavailable(DidnodeError):
    """The node (or its ordering service) cannot be reached right now."""

    reason = "UNAVAILABLE"


class Internal(DidnodeError):
    """A bug or a corrupted store; never the caller's fault."""

    reason = "INTERNAL"


class LocalError(DidnodeError):
    """Errors that only ever happen on the client side (keystore, files)."""

    reason = "LOCAL_ERROR"


