"""Fuzz targets: ``vc+jwt`` tokens (JOSE compact form, claims, the whole ``Verifier.verify``) and status lists.

Status list URLs (``statusListCredential``, both forms) have their own target.
Tokens arrive as protobuf strings (Verify, handshake attachments, ``didctl vc verify``).
Mutated tokens rarely keep a valid signature, so two targets sign what the fuzzer made
with the issuer's real key: the payload of a credential (every check of the verifier is
then reachable: validity, subject, status) and the payload of a status list credential.
"""

from __future__ import annotations

import functools
import json

from didnode.core.credentials import Verifier
from didnode.core.credentials.jose import decode_json_object, header_segment, parse_compact
from didnode.core.credentials.model import parse_claims
from didnode.core.credentials.status_list import Bitstring
from didnode.core.credentials.status_url import parse_status_list_url, status_list_url
from didnode.core.did import KEY_ID_RE, validate_did
from didnode.core.encoding import b64url, b64url_decode
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, NOW, world

VC_TOKENS = (
    *JSON_TOKENS,
    *DID_TOKENS,
    *(f'"{m}":' for m in ("@context", "type", "id", "issuer", "validFrom", "validUntil", "credentialSubject", "credentialStatus", "iss", "sub", "jti", "nbf", "exp", "iat",
                          "statusPurpose", "statusListIndex", "statusListCredential", "encodedList", "allocated", "alg", "kid", "typ", "cty", "crit")),
    '"https://www.w3.org/ns/credentials/v2"', '"VerifiableCredential"', '"DeviceAttestationCredential"', '"NodeSessionCredential"', '"BitstringStatusListCredential"',
    '"BitstringStatusListEntry"', '"BitstringStatusList"', '"revocation"', '"suspension"', "?resource=revocation-1", '"2025-06-15T12:00:00Z"', "+14:00", "9999-12-31T23:59:59",
    '"EdDSA"', '"Ed25519"', '"vc+jwt"', "eyJ", '"x5t#S256":', '"jku":', '"x5u":', '"b64":', "/1.0/identifiers/", "https://",
)


@functools.lru_cache(maxsize=1)
def _verifier() -> Verifier:
    return world().ledger.verifier()


def _tokens() -> list[bytes]:
    w = world()
    return [t.encode() for t in (*w.tokens, *w.status_lists)]


def _payloads(tokens: tuple[str, ...]) -> list[bytes]:
    return [b64url_decode(t.split(".")[1]) for t in tokens]


def _sign(payload: bytes) -> str:
    """A token over exactly ``payload``, signed by the world's issuer (its key-1 on the ledger)."""
    w = world()
    signing_input = header_segment(w.issuer.kid) + "." + b64url(payload)
    return signing_input + "." + b64url(w.admin.key.sign(signing_input.encode("ascii")).signature)


@target("jws_compact", seeds=_tokens, tokens=VC_TOKENS, max_len=16384)
def fuzz_jws_compact(data: bytes) -> None:
    parse_compact(data.decode("utf-8", "replace"))


@target("vc_claims", seeds=lambda: _payloads(world().tokens + world().status_lists), tokens=VC_TOKENS, max_len=16384)
def fuzz_vc_claims(data: bytes) -> None:
    parse_claims(decode_json_object(data, "payload"))


@target("vc_verify", seeds=_tokens, tokens=VC_TOKENS, max_len=16384)
def fuzz_vc_verify(data: bytes) -> None:
    """The node's Verify and an offline verifier: a report for any token, never an exception."""
    report = _verifier().verify(data.decode("utf-8", "replace"), NOW, expected_subject=world().admin.did)
    json.dumps(report.to_json())


@target("vc_verify_signed", seeds=lambda: _payloads(world().tokens), tokens=VC_TOKENS, max_len=16384)
def fuzz_vc_verify_signed(data: bytes) -> None:
    """Every check after the signature: the fuzzer's payload, validly signed by the issuer."""
    report = _verifier().verify(_sign(data), NOW)
    json.dumps(report.to_json())


@target("status_list_signed", seeds=lambda: _payloads(world().status_lists), tokens=VC_TOKENS, max_len=16384)
def fuzz_status_list_signed(data: bytes) -> None:
    """A status list credential with the fuzzer's payload, validly signed by its issuer."""
    _verifier().verify_status_list(_sign(data), world().issuer.did, NOW)


STATUS_URL_TOKENS = ("https://", "http://", "/1.0/identifiers/", "?resource=", "resource=", "%3A", "%3F", "%3D", "%", "[::1]", ":8080", "@", "#", "&", *DID_TOKENS)


def _status_urls() -> list[bytes]:
    w = world()
    did = w.issuer.did
    return [
        f"{did}?resource=revocation-1".encode(),
        w.issuer.status_url("revocation-1").encode(),
        f"https://r.example/p/1.0/identifiers/{did.replace(':', '%3A')}?resource=suspension-1".encode(),
        f"http://[::1]:8080/1.0/identifiers/{did}%3Fresource%3Drevocation-2".encode(),
    ]


@target("status_list_url", seeds=_status_urls, tokens=STATUS_URL_TOKENS, max_len=4096)
def fuzz_status_list_url(data: bytes) -> None:
    """``statusListCredential`` in any form: a ledger resource (a valid DID, a valid id) or ClaimsInvalid."""
    did, rid = parse_status_list_url(data.decode("utf-8", "replace"))
    validate_did(did)
    assert KEY_ID_RE.fullmatch(rid), rid
    assert parse_status_list_url(status_list_url(did, rid, "https://h")) == (did, rid)


def _encoded_lists() -> list[bytes]:
    one = Bitstring()
    one.set(5, True)
    return [Bitstring().encode().encode(), one.encode().encode(), Bitstring(size=1 << 18).encode().encode()]


@target("status_list_encoded", seeds=_encoded_lists, tokens=("u", "uH4sI"), max_len=8192)
def fuzz_status_list_encoded(data: bytes) -> None:
    """``encodedList``: multibase base64url of GZIP, bounded against bombs."""
    bits = Bitstring.decode(data.decode("utf-8", "replace"))
    bits.get(len(bits) - 1)


test_fuzz = harness.fuzz_tests(__name__)


# Crashes the fuzzers found (each failed with a non-didnode exception before its fix).
def _signed_claims(**changes: object) -> bytes:
    """The first sample credential's payload with ``changes`` (None drops a member)."""
    claims = json.loads(_payloads(world().tokens)[0])
    claims.update(changes)
    return json.dumps({k: v for k, v in claims.items() if v is not None}).encode()


REGRESSIONS = {
    # format_time(iat * 1000) in the report: OverflowError "timestamp out of range for platform time_t".
    "iat-beyond-year-9999": ("vc_verify_signed", _signed_claims(iat=175000090071992547409930002)),
    # validFrom / validUntil that parse but name a time before 1970 or after 9999 in UTC: ValueError in format_time.
    "valid-from-year-1": ("vc_verify_signed", _signed_claims(validFrom="0001-01-01T00:00:00+14:00", nbf=None, iat=None)),
    "valid-until-year-10000": ("vc_verify_signed", _signed_claims(validUntil="9999-12-31T23:59:59-14:00")),
    # json's int() limit inside the JOSE payload: ValueError.
    "payload-5000-digit-integer": ("vc_claims", b'{"iat":' + b"1" * 5000 + b"}"),
}
test_regression = harness.regression_tests(REGRESSIONS)
