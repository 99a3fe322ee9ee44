"""Strict JWS compact serialization for ``vc+jwt`` (RFC 7515, profile of docs/credentials.md).

Why not jwcrypto on the hot path: it builds several objects per token and
verifies through OpenSSL, about a third of the rate of libsodium here. This
module implements exactly the profile and nothing else, which is also what
makes it strict:

* exactly three parts, unpadded base64url in its *canonical* form (the
  unused low bits of the last character must be zero, so no two strings
  decode to the same bytes: a token has no malleable twin);
* the header is a JSON object with no duplicate members; ``alg`` is
  ``EdDSA`` or ``Ed25519`` (RFC 9864's fully specified name); ``crit``
  (we understand no extension), every member that would carry or pick the
  key (``jwk``, ``jku``, ``x5u``, ``x5c``, ``x5t``, ``x5t#S256``) and ``b64``
  (RFC 7797: another signing input) are refused; any other member is
  ignored, as RFC 7515 section 4 and VC-JOSE-COSE require of members a
  recipient does not understand;
* ``typ`` is ``vc+jwt`` (or ``application/vc+jwt``), ``cty`` if present ``vc``;
* ``kid`` is a ``did:dnode`` DID URL with a key fragment: the ``JsonWebKey``
  verification method ``did#key-1-jwk`` (what our issuers write) or the
  ``Multikey`` one ``did#key-1`` (tokens issued before), naming one key;
* the signature is 64 bytes and is checked with libsodium
  (``crypto_sign_open``: rejects non-canonical S and small-order points;
  it releases the GIL).

Sizes are bounded before any decoding. Parsed headers are cached by their
encoded form (an issuer's key signs many tokens with one header), which is
safe because a cached header was fully validated and is immutable.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from nacl.bindings import crypto_sign, crypto_sign_open
from nacl.exceptions import BadSignatureError

from didnode.core import canonical
from didnode.core.did import JWK_SUFFIX, KEY_ID_RE, PREFIX, validate_did
from didnode.core.encoding import b64url, b64url_decode
from didnode.errors import (
    AlgNotAllowed,
    CredentialBadSignature,
    HeaderNotAllowed,
    InvalidDid,
    KidForeign,
    KidMissing,
    MalformedCredential,
    TokenTooLarge,
    TypNotAllowed,
)

ALG = "EdDSA"  # what our issuers write: every JOSE library in use knows it
ALGS = frozenset({ALG, "Ed25519"})  # RFC 9864: "Ed25519" is the fully specified name, "EdDSA" deprecated
TYP = "vc+jwt"
MEDIA_TYPE = "application/vc+jwt"
ACCEPTED_TYP = frozenset({TYP, MEDIA_TYPE})
# Refused header members: crit (no extension is understood, so none may be critical), those
# that carry or pick the verification key (the key comes from the issuer's DID, by kid, only),
# and b64 (RFC 7797 changes the signing input). Every other member is ignored.
REFUSED_MEMBERS = frozenset({"crit", "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64"})
SIGNATURE_CHARS = 86  # 64 bytes, unpadded base64url
MAX_HEADER_CHARS = 1024
DEFAULT_MAX_TOKEN = 16384

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise MalformedCredential(f"JSON member {k[:40]!r} appears more than once")
            seen.add(k)
    return out


def _reject_constant(name: str) -> Any:
    raise MalformedCredential(f"JSON constant {name} is not allowed")


# Duplicate members are refused (RFC 7515 section 5.2 allows either refusing
# or last-wins; last-wins lets two parsers disagree about one token).
_decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def decode_json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from UTF-8 ``data``; no duplicate members, no NaN/Infinity."""
    value = canonical.loads(data, MalformedCredential, what, _decoder)
    if type(value) is not dict:
        raise MalformedCredential(f"{what} is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class Header:
    """A validated protected header. ``key_id`` is the fragment with a ``-jwk`` suffix removed
    (both verification-method forms of the DID document name the same key)."""

    alg: str
    kid: str
    typ: str
    did: str
    key_id: str


@dataclass(frozen=True, slots=True)
class CompactJws:
    """A parsed token: header, payload bytes, the exact signing input and the signature."""

    header: Header
    payload: bytes
    signing_input: bytes
    signature: bytes


def parse_kid(kid: object) -> tuple[str, str]:
    """(DID, key id) of a ``kid``; raises :class:`KidMissing` or :class:`KidForeign`."""
    if kid is None or kid == "":
        raise KidMissing("the JOSE header names no kid; it must be a DID URL of the issuer's key")
    if not isinstance(kid, str):
        raise KidForeign("the JOSE header kid is not a string")
    did, sep, frag = kid.partition("#")
    if not sep or not did.startswith(PREFIX):
        raise KidForeign(f"kid {kid[:100]!r} is not a did:dnode DID URL with a key fragment", kid=kid[:100])
    try:
        validate_did(did)
    except InvalidDid as exc:
        raise KidForeign(f"kid {kid[:100]!r}: {exc}", kid=kid[:100]) from None
    key_id = frag[: -len(JWK_SUFFIX)] if frag.endswith(JWK_SUFFIX) else frag
    if not KEY_ID_RE.fullmatch(key_id) or key_id.endswith(JWK_SUFFIX):
        raise KidForeign(f"kid {kid[:100]!r} has no valid key fragment", kid=kid[:100])
    return did, key_id


def parse_header(segment: str, allowed_algs: frozenset[str]) -> Header:
    """Validate the encoded protected header (see module docstring for the rules)."""
    if len(segment) > MAX_HEADER_CHARS:
        raise MalformedCredential(f"JOSE header is {len(segment)} characters; the limit is {MAX_HEADER_CHARS}")
    h = decode_json_object(b64url_decode(segment, "JOSE header", MalformedCredential), "JOSE header")
    alg = h.get("alg")
    if alg is None:
        raise AlgNotAllowed("the JOSE header has no alg")
    if not isinstance(alg, str) or alg not in allowed_algs:
        raise AlgNotAllowed(f"alg {str(alg)[:20]!r} is not allowed (policy: {', '.join(sorted(allowed_algs))})", alg=str(alg)[:20])
    refused = h.keys() & REFUSED_MEMBERS
    if refused:
        raise HeaderNotAllowed(f"JOSE header member(s) {', '.join(sorted(refused))[:80]} are not allowed", members=",".join(sorted(refused))[:80])
    typ = h.get("typ")
    if typ not in ACCEPTED_TYP:
        raise TypNotAllowed(f"typ {str(typ)[:40]!r} is not vc+jwt", typ=str(typ)[:40])
    if "cty" in h and h["cty"] != "vc":
        raise HeaderNotAllowed(f"cty {str(h['cty'])[:40]!r} is not 'vc'")
    did, key_id = parse_kid(h.get("kid"))
    return Header(alg, h["kid"], typ, did, key_id)


class HeaderCache:
    """Validated headers by their encoded form (bounded; oldest evicted first)."""

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int = 4096) -> None:
        self._items: dict[tuple[str, frozenset[str]], Header] = {}
        self._limit = limit

    def get(self, segment: str, allowed_algs: frozenset[str]) -> Header:
        key = (segment, allowed_algs)
        h = self._items.get(key)
        if h is None:
            h = parse_header(segment, allowed_algs)
            if len(self._items) >= self._limit:
                del self._items[next(iter(self._items))]
            self._items[key] = h
        return h


def parse_compact(
    token: str, max_chars: int = DEFAULT_MAX_TOKEN, allowed_algs: frozenset[str] = ALGS, headers: HeaderCache | None = None
) -> CompactJws:
    """Parse a compact JWS strictly (no signature check yet).

    Precondition: none; raises :class:`TokenTooLarge`, :class:`MalformedCredential`,
    :class:`AlgNotAllowed`, :class:`HeaderNotAllowed`, :class:`TypNotAllowed`,
    :class:`KidMissing` or :class:`KidForeign`.
    """
    if not isinstance(token, str):
        raise MalformedCredential(f"a token is a string, not {type(token).__name__}")
    if len(token) > max_chars:
        raise TokenTooLarge(f"token is {len(token)} characters; the limit is {max_chars}", size=len(token), limit=max_chars)
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedCredential(f"a JWS compact serialization has 3 parts, this token has {len(parts)}")
    h_seg, p_seg, s_seg = parts
    header = headers.get(h_seg, allowed_algs) if headers is not None else parse_header(h_seg, allowed_algs)
    if len(s_seg) != SIGNATURE_CHARS:
        raise MalformedCredential(f"the signature part has {len(s_seg)} characters; an Ed25519 signature has {SIGNATURE_CHARS}")
    signature = b64url_decode(s_seg, "signature", MalformedCredential)
    payload = b64url_decode(p_seg, "payload", MalformedCredential)
    if not payload:
        raise MalformedCredential("the payload is empty")
    return CompactJws(header, payload, token[: len(h_seg) + 1 + len(p_seg)].encode("ascii"), signature)


def check_signature(jws: CompactJws, public_key: bytes) -> None:
    """Verify the Ed25519 signature over the signing input; raises :class:`CredentialBadSignature`."""
    try:
        crypto_sign_open(jws.signature + jws.signing_input, public_key)
    except BadSignatureError:
        raise CredentialBadSignature(f"the signature by {jws.header.kid} does not verify: the token was altered or forged", kid=jws.header.kid) from None


# --------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------

_HEADER_SEGMENTS: dict[str, str] = {}


def header_segment(kid: str) -> str:
    """The encoded protected header our issuers emit: ``{"alg":"EdDSA","kid":KID,"typ":"vc+jwt"}``."""
    seg = _HEADER_SEGMENTS.get(kid)
    if seg is None:
        body = json.dumps({"alg": ALG, "kid": kid, "typ": TYP}, separators=(",", ":"), sort_keys=True)
        seg = b64url(body.encode("utf-8"))
        if len(_HEADER_SEGMENTS) < 4096:
            _HEADER_SEGMENTS[kid] = seg
    return seg


_payload_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sign_compact(payload: Mapping[str, Any], kid: str, secret_key: bytes) -> str:
    """A compact JWS over ``payload`` (compact JSON, UTF-8) signed with a 64-byte libsodium secret key.

    Precondition: ``secret_key`` is the libsodium secret key (seed || public key) of ``kid``.
    """
    signing_input = header_segment(kid) + "." + b64url(_payload_encoder.encode(payload).encode("utf-8"))
    signature = crypto_sign(signing_input.encode("ascii"), secret_key)[:64]
    return signing_input + "." + b64url(signature)
