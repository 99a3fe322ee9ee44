"""Verifiable credentials of didnode (pure core): VC Data Model 2.0 as ``vc+jwt``,
Bitstring Status List v1.0, and verification against the ledger's key fates.

Modules: :mod:`.jose` (strict compact JWS), :mod:`.model` (claims profile),
:mod:`.status_list` (bitstrings, list credentials), :mod:`.resolver`
(issuer records and caching), :mod:`.verify` (the verifier and its report),
:mod:`.issue` (issuing), :mod:`.session` (signed session credential requests).
The formats are specified in docs/credentials.md.
"""

from didnode.core.credentials.issue import Issuer, device_attestation_claims
from didnode.core.credentials.model import (
    DEVICE_ATTESTATION,
    NODE_SESSION,
    Credential,
    StatusEntry,
    parse_status_list_url,
    status_list_url,
)
from didnode.core.credentials.resolver import IssuerRecord, Resolver, record_from_versions
from didnode.core.credentials.status_list import Bitstring, StatusList
from didnode.core.credentials.verify import (
    Check,
    StatusFetcher,
    VerificationReport,
    Verifier,
    VerifyPolicy,
)

__all__ = [
    "Bitstring",
    "Check",
    "Credential",
    "DEVICE_ATTESTATION",
    "Issuer",
    "IssuerRecord",
    "NODE_SESSION",
    "Resolver",
    "StatusEntry",
    "StatusFetcher",
    "StatusList",
    "VerificationReport",
    "Verifier",
    "VerifyPolicy",
    "device_attestation_claims",
    "parse_status_list_url",
    "record_from_versions",
    "status_list_url",
]
