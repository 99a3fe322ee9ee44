"""Verifiable credential errors: every reason a credential or status list is not accepted (docs/credentials.md).

Part of the one error tree: import from :mod:`didnode.errors`.
"""

from __future__ import annotations

from didnode.errors.base import Unauthorized
from didnode.errors.ledger import InvalidSignature, KeyRevoked, KeyRotated

# --------------------------------------------------------------------------
# Verifiable credentials (didnode.core.credentials; docs/credentials.md).
#
# Every reason a credential (or a status list credential) is not accepted
# has its own class and code, so that a verifier, a log line or a test can
# tell "expired" from "revoked" from "forged" without parsing messages.
# Three classes name a fact the ledger names too (a revoked or rotated key, a
# bad signature): they subclass both the ledger class and CredentialInvalid,
# and have codes of their own (CREDENTIAL_KEY_REVOKED, ...), so a client
# rebuilds exactly the class the verifier raised.
# --------------------------------------------------------------------------


class CredentialInvalid(Unauthorized):
    """A verifiable credential is not acceptable; the subclass says why."""

    reason = "CREDENTIAL_INVALID"


class MalformedCredential(CredentialInvalid):
    """Not a strict JWS compact serialization (three unpadded base64url parts, JSON header and payload)."""

    reason = "MALFORMED_CREDENTIAL"


class TokenTooLarge(CredentialInvalid):
    """The token is longer than the verifier's limit (checked before any decoding)."""

    reason = "TOKEN_TOO_LARGE"


class AlgNotAllowed(CredentialInvalid):
    """The JOSE ``alg`` is not in the policy (``none``, HMAC and every algorithm but EdDSA)."""

    reason = "ALG_NOT_ALLOWED"


class TypNotAllowed(CredentialInvalid):
    """The JOSE ``typ`` is missing or is not ``vc+jwt``: a token of another kind."""

    reason = "TYP_NOT_ALLOWED"


class HeaderNotAllowed(CredentialInvalid):
    """The JOSE header has a member outside the profile (``crit``, ``jwk``, ``jku``, ``x5c``, ``b64``, ...)."""

    reason = "HEADER_NOT_ALLOWED"


class KidMissing(CredentialInvalid):
    """The JOSE header names no ``kid``."""

    reason = "KID_MISSING"


class KidForeign(CredentialInvalid):
    """The ``kid`` is not a ``did:dnode`` DID URL with a key fragment (another method, a URL, a thumbprint)."""

    reason = "KID_FOREIGN"


class KidNotIssuer(CredentialInvalid):
    """The ``kid`` names a key of another DID than the credential's issuer."""

    reason = "KID_NOT_ISSUER"


class KidUnknown(CredentialInvalid):
    """The issuer has never had a signing key with the ``kid``'s fragment."""

    reason = "KID_UNKNOWN"


class KeyNotAssertionMethod(CredentialInvalid):
    """The signing key is not an assertionMethod key of the issuer."""

    reason = "KEY_NOT_ASSERTION_METHOD"


class KeyNotValidAtIssuance(CredentialInvalid):
    """The credential claims to be signed before its key was installed on the ledger."""

    reason = "KEY_NOT_VALID_AT_ISSUANCE"


class CredentialKeyRotated(KeyRotated, CredentialInvalid):
    """Signed by a key rotated out before the credential's claimed signing time."""

    reason = "CREDENTIAL_KEY_ROTATED"


class CredentialKeyRevoked(KeyRevoked, CredentialInvalid):
    """Signed by a key revoked as compromised: it verifies nothing."""

    reason = "CREDENTIAL_KEY_REVOKED"


class CredentialBadSignature(InvalidSignature, CredentialInvalid):
    """The JWS signature does not verify: header or payload was altered, or forged."""

    reason = "CREDENTIAL_BAD_SIGNATURE"


class IssuerUnknown(CredentialInvalid):
    """The issuer DID does not exist on the ledger."""

    reason = "ISSUER_UNKNOWN"


class IssuerDeactivated(CredentialInvalid):
    """The issuer DID is deactivated: none of its credentials verifies any more."""

    reason = "ISSUER_DEACTIVATED"


class IssuerNotExpected(CredentialInvalid):
    """Validly issued, but not by the issuer the verifier requires."""

    reason = "ISSUER_NOT_EXPECTED"


class ClaimsInvalid(CredentialInvalid):
    """The payload is not a VC Data Model 2.0 credential of the profile, or JWT claims contradict it."""

    reason = "CLAIMS_INVALID"


class TypeNotExpected(CredentialInvalid):
    """Valid, but not of the credential type the verifier requires."""

    reason = "TYPE_NOT_EXPECTED"


class CredentialExpired(CredentialInvalid):
    """Now is at or past ``validUntil`` (plus the allowed clock skew)."""

    reason = "EXPIRED"


class CredentialNotYetValid(CredentialInvalid):
    """Now is before ``validFrom`` (or the claimed signing time) minus the allowed clock skew."""

    reason = "NOT_YET_VALID"


class SubjectMismatch(CredentialInvalid):
    """``credentialSubject.id`` is not the DID the verifier expects (the presenter)."""

    reason = "SUBJECT_MISMATCH"


class CredentialRevoked(CredentialInvalid):
    """The credential's bit in its issuer's revocation status list is set."""

    reason = "REVOKED"


class CredentialSuspended(CredentialInvalid):
    """The credential's bit in its issuer's suspension status list is set."""

    reason = "SUSPENDED"


class StatusListForeignSigner(CredentialInvalid):
    """The status list credential is issued or signed by another DID than the credential's issuer."""

    reason = "STATUS_LIST_FOREIGN_SIGNER"


class StatusListStale(CredentialInvalid):
    """The status list credential is older than the verifier's freshness policy (or past its validUntil)."""

    reason = "STATUS_LIST_STALE"


class StatusListInvalid(CredentialInvalid):
    """The status list credential does not verify or does not fit the entry (purpose, index, encoding)."""

    reason = "STATUS_LIST_INVALID"


class StatusListNotFound(CredentialInvalid):
    """The status list the credential names was never published."""

    reason = "STATUS_LIST_NOT_FOUND"


class StaleRequest(Unauthorized):
    """A signed request's timestamp is outside the accepted window (replay protection)."""

    reason = "STALE_REQUEST"


class ReplayedRequest(Unauthorized):
    """A signed request's nonce was already used."""

    reason = "REPLAYED_REQUEST"
