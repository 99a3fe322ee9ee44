"""Errors of network governance: who may write, how much (docs/governance.md).

Part of the one error tree: import from :mod:`didnode.errors`. Every node
reaches the same verdict, since the rules and the counts come from the log.
"""

from __future__ import annotations

from didnode.errors.base import InvalidInput, NotFound, ResourceExhausted, Unauthorized


class NotARegistrar(Unauthorized):
    """The network's policy admits this create (or publish) only when a listed registrar (or a governor) signs it; none did."""

    reason = "NOT_A_REGISTRAR"


class QuotaExceeded(ResourceExhausted):
    """A registrar's creates or a publisher's resources are over the quota governance set.

    ``reset_time`` (detail, ms since the Unix epoch of ordering time) is when the
    window's count starts again; absent when the total quota is what is used up.
    """

    reason = "QUOTA_EXCEEDED"

    @property
    def reset_time_ms(self) -> int | None:
        """When the quota's window ends (ordering time, ms), or None for a total quota."""
        value = self.details.get("reset_time", "")
        return int(value) if value.isdigit() else None


class GovernanceThreshold(Unauthorized):
    """A governance change lacks the signatures of the threshold of current governors (M of N)."""

    reason = "GOVERNANCE_THRESHOLD"


class NotAGovernor(Unauthorized):
    """A governance change carries a signature by a DID that is not a current governor (removed, or never one)."""

    reason = "NOT_A_GOVERNOR"


class GovernanceInvalid(InvalidInput):
    """A governance operation is well formed JSON but not a valid change of this network's policy (names a registrar twice, removes one that is not listed, an inception after the genesis, ...)."""

    reason = "GOVERNANCE_INVALID"


class NoGovernance(NotFound):
    """The network has no governance record: its genesis created none, so anyone may create and publish (``open``)."""

    reason = "NO_GOVERNANCE"
