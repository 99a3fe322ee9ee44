"""Trust policies and the client's verified view of a ledger (docs/trust.md).

:mod:`~didnode.core.trust.policy` is the policy and its file format,
:mod:`~didnode.core.trust.verifier` checks checkpoints against it, and
:mod:`~didnode.core.trust.history` checks a DID's history against its verified
state. Pure: no I/O, the clock passed in.
"""

from didnode.core.trust.policy import DEFAULT_MAX_STALENESS_MS, TRUST_TYPE, TrustedKey, TrustPolicy, fingerprint
from didnode.core.trust.verifier import ProofBaseMoved, Signature, TrustedLog

__all__ = [
    "DEFAULT_MAX_STALENESS_MS",
    "TRUST_TYPE",
    "ProofBaseMoved",
    "Signature",
    "TrustPolicy",
    "TrustedKey",
    "TrustedLog",
    "fingerprint",
]
