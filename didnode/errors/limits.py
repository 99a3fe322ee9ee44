"""Errors of the node's resource limits: per-peer rates, calls open at once, idle streams (docs/security.md, "Limits").

Part of the one error tree: import from :mod:`didnode.errors`. Sizes over a
method's limit are :class:`~didnode.errors.TooLarge`.
"""

from __future__ import annotations

from didnode.errors.base import ResourceExhausted


class RateLimited(ResourceExhausted):
    """This peer address is over its rate of submissions or handshakes; retry after ``retry_after_ms`` (detail), also sent as the status's ``google.rpc.RetryInfo``."""

    reason = "RATE_LIMITED"

    @property
    def retry_after_ms(self) -> int | None:
        """The node's retry hint in milliseconds (None when absent)."""
        value = self.details.get("retry_after_ms", "")
        return int(value) if value.isdigit() else None


class TooManyCalls(ResourceExhausted):
    """This peer address has too many calls open at once, or the node too many calls of this method; finish some and retry."""

    reason = "TOO_MANY_CALLS"


class IdleTimeout(ResourceExhausted):
    """A stream sent nothing for longer than the node's idle bound while nothing of it was pending; the node closed it."""

    reason = "IDLE_TIMEOUT"
