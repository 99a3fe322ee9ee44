"""W3C VC Data Model 2.0 credentials in the didnode profile: building and validating claims.

The JWT payload *is* the credential (VC-JOSE-COSE: no ``vc`` claim). The
profile (docs/credentials.md has the table):

============================  =========  ==========================================
VC 2.0 member                 JWT claim  rule
============================  =========  ==========================================
``issuer`` (a DID, or {id})   ``iss``    the did:dnode DID of the signer
``credentialSubject.id``      ``sub``    the subject DID (holder binding)
``id``                        ``jti``    ``urn:uuid:...``
``validFrom``                 ``nbf``    required; dateTimeStamp with a time zone
``validUntil``                ``exp``    optional; after validFrom
(signing time)                ``iat``    optional; else validFrom is the signing time
============================  =========  ==========================================

The VC members are authoritative. A JWT claim is optional, but when present
it must say the same thing (seconds precision), so that a JWT library that
reads only ``exp`` and a VC processor that reads only ``validUntil`` can
never disagree about one token.

Pure: no clock; ``now`` is always passed in (ms since the Unix epoch).
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from didnode.core.credentials.status_url import parse_status_list_url, status_list_url
from didnode.core.did import PREFIX, validate_did
from didnode.errors import ClaimsInvalid, InvalidDid

VC_CONTEXT_V2 = "https://www.w3.org/ns/credentials/v2"
VERIFIABLE_CREDENTIAL = "VerifiableCredential"
DEVICE_ATTESTATION = "DeviceAttestationCredential"
NODE_SESSION = "NodeSessionCredential"
STATUS_LIST_CREDENTIAL = "BitstringStatusListCredential"
STATUS_ENTRY = "BitstringStatusListEntry"
PURPOSES = ("revocation", "suspension")
MAX_TYPES = 8
MAX_CONTEXTS = 8
MAX_STATUS_ENTRIES = 2
MAX_CLAIM_STRING = 256
FORBIDDEN_MEMBERS = ("vc", "vp", "proof")

# XML Schema dateTimeStamp: a time zone is mandatory (VC 2.0 section 4.9).
_DATETIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,9}")


# --------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------


def format_time(ms: int) -> str:
    """dateTimeStamp of ``ms`` (UTC, second precision, ``Z``): what our issuers write."""
    return _dt.datetime.fromtimestamp(ms // 1000, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Every time a credential names is in [1970-01-01T00:00:00Z, 9999-12-31T23:59:59Z], so that
# format_time can show it (a report names its times) and no arithmetic on it overflows.
MAX_TIME_MS = 253_402_300_799_000


def parse_time(value: object, member: str) -> int:
    """Milliseconds since the epoch of a dateTimeStamp; raises :class:`ClaimsInvalid`."""
    if not isinstance(value, str) or not _DATETIME_RE.fullmatch(value):
        raise ClaimsInvalid(f"{member} must be an ISO 8601 date-time with a time zone, e.g. 2025-01-31T12:00:00Z", member=member)
    try:
        t = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise ClaimsInvalid(f"{member} {value!r} is not a valid date-time", member=member) from None
    ms = int(t.timestamp() * 1000) if t.microsecond else int(t.timestamp()) * 1000
    if not 0 <= ms <= MAX_TIME_MS:
        raise ClaimsInvalid(f"{member} {value!r} is outside 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z", member=member)
    return ms


# --------------------------------------------------------------------------
# Status list references (URL forms: status_url.py)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One ``BitstringStatusListEntry`` of a credential."""

    purpose: str
    index: int
    list_url: str
    list_did: str
    resource_id: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": f"{self.list_url}#{self.index}",
            "type": STATUS_ENTRY,
            "statusPurpose": self.purpose,
            "statusListIndex": str(self.index),
            "statusListCredential": self.list_url,
        }


def status_entry(issuer: str, resource_id: str, purpose: str, index: int, base_url: str | None = None) -> StatusEntry:
    """An entry pointing at bit ``index`` of ``issuer``'s list ``resource_id``, named by its
    HTTP(S) URL under ``base_url`` (None: the DID URL form; see :mod:`.status_url`)."""
    if purpose not in PURPOSES:
        raise ClaimsInvalid(f"statusPurpose {purpose!r} is not one of {', '.join(PURPOSES)}")
    if not 0 <= index < 2**31:
        raise ClaimsInvalid(f"statusListIndex {index} is out of range")
    return StatusEntry(purpose, index, status_list_url(issuer, resource_id, base_url), issuer, resource_id)


def _parse_status(value: Any, issuer: str) -> tuple[StatusEntry, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_STATUS_ENTRIES:
        raise ClaimsInvalid(f"credentialStatus holds 1 to {MAX_STATUS_ENTRIES} entries")
    out = []
    for item in items:
        if type(item) is not dict:
            raise ClaimsInvalid("each credentialStatus entry must be an object")
        if item.get("type") != STATUS_ENTRY:
            raise ClaimsInvalid(f"credentialStatus type must be {STATUS_ENTRY}")
        purpose = item.get("statusPurpose")
        if purpose not in PURPOSES:
            raise ClaimsInvalid(f"statusPurpose {str(purpose)[:40]!r} is not one of {', '.join(PURPOSES)}")
        index = item.get("statusListIndex")
        if not isinstance(index, str) or not _INDEX_RE.fullmatch(index):
            raise ClaimsInvalid("statusListIndex must be a decimal integer string without leading zeros")
        url = item.get("statusListCredential")
        did, rid = parse_status_list_url(url)
        if did != issuer:
            # The list must live in the issuer's own ledger history, where only
            # the issuer's keys can publish.
            raise ClaimsInvalid(f"statusListCredential names a resource of {did}, not of the issuer {issuer}")
        out.append(StatusEntry(purpose, int(index), url, did, rid))  # type: ignore[arg-type]
    if len({e.purpose for e in out}) != len(out):
        raise ClaimsInvalid("credentialStatus has two entries with the same statusPurpose")
    return tuple(out)


# --------------------------------------------------------------------------
# Parsed credential
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential whose claims passed the profile's shape checks (not yet its signature)."""

    claims: dict[str, Any]
    id: str | None
    types: tuple[str, ...]
    issuer: str
    subject: str | None
    valid_from: int
    valid_until: int | None
    signed_at: int
    status: tuple[StatusEntry, ...]


def _str_claim(subject: Mapping[str, Any], name: str, type_name: str) -> str:
    value = subject.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_STRING:
        raise ClaimsInvalid(f"{type_name} needs credentialSubject.{name}: a non-empty string of at most {MAX_CLAIM_STRING} characters", member=name)
    return value


def _device_attestation(cred: Credential) -> None:
    subject = cred.claims["credentialSubject"]
    if cred.subject is None:
        raise ClaimsInvalid(f"{DEVICE_ATTESTATION} needs credentialSubject.id (the device DID)")
    for name in ("model", "serialNumber", "hardwareVersion", "firmwareVersion"):
        _str_claim(subject, name, DEVICE_ATTESTATION)
    parse_time(subject.get("manufactureTime"), "credentialSubject.manufactureTime")


def _node_session(cred: Credential) -> None:
    if cred.subject is None:
        raise ClaimsInvalid(f"{NODE_SESSION} needs credentialSubject.id (the authenticated DID)")
    if cred.valid_until is None:
        raise ClaimsInvalid(f"{NODE_SESSION} must have validUntil")


# Type-specific claim shapes; a type not listed here gets the generic checks only.
TYPE_RULES: dict[str, Callable[[Credential], None]] = {
    DEVICE_ATTESTATION: _device_attestation,
    NODE_SESSION: _node_session,
}


_VALID_ISSUERS: set[str] = set()


def parse_claims(claims: dict[str, Any]) -> Credential:
    """Check ``claims`` against the VC 2.0 profile and return the parsed credential.

    Precondition: ``claims`` is a decoded JSON object. Raises :class:`ClaimsInvalid`
    naming the first problem.
    """
    ctx = claims.get("@context")
    if type(ctx) is not list or not ctx or ctx[0] != VC_CONTEXT_V2 or len(ctx) > MAX_CONTEXTS:
        raise ClaimsInvalid(f"@context must be a list starting with {VC_CONTEXT_V2}")
    types = claims.get("type")
    if type(types) is not list or VERIFIABLE_CREDENTIAL not in types or len(types) > MAX_TYPES or not all(isinstance(t, str) for t in types):
        raise ClaimsInvalid(f"type must be a list of at most {MAX_TYPES} strings including {VERIFIABLE_CREDENTIAL}")
    for name in FORBIDDEN_MEMBERS:
        if name in claims:
            raise ClaimsInvalid(f"member {name!r} is not allowed in a vc+jwt credential", member=name)
    issuer_value = claims.get("issuer")
    issuer = issuer_value.get("id") if type(issuer_value) is dict else issuer_value
    if not isinstance(issuer, str) or not issuer.startswith(PREFIX):
        raise ClaimsInvalid("issuer must be a did:dnode DID (or an object whose id is one)")
    if issuer not in _VALID_ISSUERS:
        try:
            validate_did(issuer)
        except InvalidDid as exc:
            raise ClaimsInvalid(f"issuer: {exc}") from None
        # Few issuers sign many credentials: remember the (immutable) fact that a DID is well formed.
        if len(_VALID_ISSUERS) >= 4096:
            _VALID_ISSUERS.clear()
        _VALID_ISSUERS.add(issuer)
    cred_id = claims.get("id")
    if cred_id is not None and (not isinstance(cred_id, str) or ":" not in cred_id):
        raise ClaimsInvalid("id must be a URL (e.g. urn:uuid:...)")
    subject_value = claims.get("credentialSubject")
    if type(subject_value) is not dict:
        raise ClaimsInvalid("credentialSubject must be one JSON object")
    subject = subject_value.get("id")
    if subject is not None and (not isinstance(subject, str) or ":" not in subject):
        raise ClaimsInvalid("credentialSubject.id must be a URL (a DID)")
    valid_from = parse_time(claims.get("validFrom"), "validFrom")
    valid_until = None
    if "validUntil" in claims:
        valid_until = parse_time(claims["validUntil"], "validUntil")
        if valid_until <= valid_from:
            raise ClaimsInvalid("validUntil must be after validFrom")
    signed_at = valid_from
    # JWT claims: optional, but never in contradiction with the VC members.
    if "iss" in claims and claims["iss"] != issuer:
        raise ClaimsInvalid("JWT iss differs from issuer", member="iss")
    if "sub" in claims and claims["sub"] != subject:
        raise ClaimsInvalid("JWT sub differs from credentialSubject.id", member="sub")
    if "jti" in claims and claims["jti"] != cred_id:
        raise ClaimsInvalid("JWT jti differs from id", member="jti")
    if "nbf" in claims and claims["nbf"] != valid_from // 1000:
        raise ClaimsInvalid("JWT nbf differs from validFrom", member="nbf")
    if "exp" in claims and (valid_until is None or claims["exp"] != valid_until // 1000):
        raise ClaimsInvalid("JWT exp differs from validUntil", member="exp")
    if "iat" in claims:
        iat = claims["iat"]
        if type(iat) is not int or not 0 <= iat <= MAX_TIME_MS // 1000:
            raise ClaimsInvalid("JWT iat must be an integer NumericDate in 1970 .. 9999", member="iat")
        signed_at = iat * 1000
    status = _parse_status(claims["credentialStatus"], issuer) if "credentialStatus" in claims else ()
    cred = Credential(claims, cred_id, tuple(types), issuer, subject, valid_from, valid_until, signed_at, status)
    for t in types:
        rule = TYPE_RULES.get(t)
        if rule is not None:
            rule(cred)
    return cred


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def new_id() -> str:
    """A fresh ``urn:uuid`` credential id."""
    return f"urn:uuid:{uuid.uuid4()}"


def build_claims(
    issuer: str,
    subject: str,
    types: Sequence[str],
    subject_claims: Mapping[str, Any],
    now_ms: int,
    valid_until_ms: int | None = None,
    status: Sequence[StatusEntry] = (),
    credential_id: str | None = None,
) -> dict[str, Any]:
    """The payload of a credential issued at ``now_ms`` (validFrom = iat = now, seconds precision;
    no ``nbf``: ``validFrom`` says it, and a JWT claim is only ever a copy).

    Precondition: ``subject_claims`` has no ``id`` (the subject is ``subject``)
    and is JSON-serializable. Raises :class:`ClaimsInvalid` for a validUntil
    not after now or a reserved member in ``subject_claims``.
    """
    if "id" in subject_claims:
        raise ClaimsInvalid("claims must not contain 'id': the subject is given separately")
    secs = now_ms // 1000
    cid = credential_id or new_id()
    claims: dict[str, Any] = {
        "@context": [VC_CONTEXT_V2],
        "type": [VERIFIABLE_CREDENTIAL, *[t for t in types if t != VERIFIABLE_CREDENTIAL]],
        "id": cid,
        "issuer": issuer,
        "validFrom": format_time(now_ms),
        "credentialSubject": {"id": subject, **subject_claims},
        "iss": issuer,
        "sub": subject,
        "jti": cid,
        "iat": secs,
    }
    if valid_until_ms is not None:
        if valid_until_ms // 1000 <= secs:
            raise ClaimsInvalid("validUntil must be after validFrom (now)")
        claims["validUntil"] = format_time(valid_until_ms)
        claims["exp"] = valid_until_ms // 1000
    if status:
        entries = [e.to_json() for e in status]
        claims["credentialStatus"] = entries[0] if len(entries) == 1 else entries
    return claims
