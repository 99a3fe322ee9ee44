"""Client-side credential verification: every rule runs here; a node only supplies ledger facts, cached.

No private key is ever sent to a node: issuers sign locally and publish only
signed status lists (:mod:`didnode.client.status_lists`).
"""

from __future__ import annotations

from typing import Callable

from didnode.clock import wall_ms
from didnode.core.credentials import IssuerRecord, VerificationReport, Verifier, VerifyPolicy


class OfflineVerifier:
    """Verifies credentials locally; issuer key states and status lists come from a node, cached.

    ``cache_ttl_ms`` bounds how stale a cached key state or status list may
    be: a revocation on the ledger is seen at the latest that long after.
    The signature check and every rule run here; the node is only asked for
    ledger facts (and not at all while the cache is warm).
    """

    def __init__(
        self,
        resolve: Callable[[str], IssuerRecord],
        fetch: Callable[[str, str], str],
        policy: VerifyPolicy = VerifyPolicy(),
        cache_ttl_ms: int = 60_000,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.verifier = Verifier(resolve, fetch, policy, cache_ttl_ms)
        self.clock_ms = clock_ms

    def verify(
        self,
        token: str,
        expected_subject: str | None = None,
        expected_issuer: str | None = None,
        expected_type: str | None = None,
        now_ms: int | None = None,
    ) -> VerificationReport:
        """Verify at ``now_ms`` (default: the local clock). Raises only "could not check" errors (unreachable node)."""
        now = self.clock_ms() if now_ms is None else now_ms
        return self.verifier.verify(token, now, expected_subject, expected_issuer, expected_type)
