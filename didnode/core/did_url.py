"""DID URLs as the resolution interface takes them: parsing, the HTTP(S) binding's request target, error types.

Pure. :func:`parse_did_url` reads a DID URL (``did:dnode:<id>[?query][#fragment]``)
into a :class:`DidUrl`; :func:`parse_http_target` reads the path tail and the
query of ``GET /1.0/identifiers/{did-url}`` (W3C DID Resolution, "HTTP(S)
Binding"; docs/http.md) into the same. Every input is bounded and checked
before it is used; anything wrong is a typed error naming the first problem:

* :class:`~didnode.errors.MethodNotSupported`: a well-formed DID of another method;
* :class:`~didnode.errors.InvalidDid`: not a DID, or not a valid ``did:dnode`` DID;
* :class:`~didnode.errors.InvalidDidUrl`: a path (``did:dnode`` has none), a
  query that is not ``name=value`` pairs of the known DID parameters, a
  repeated parameter, a bad percent-escape or UTF-8, a bad fragment;
* :class:`~didnode.errors.InvalidOptions`: the same for the options of the
  HTTP query (beyond the DID URL), and contradicting options.

DID parameters (DID Core, "DID Parameters"; values percent-decoded once):
``service`` (a service id), ``relativeRef`` (with ``service`` only: a relative
reference resolved against its endpoint), ``versionId`` (a version, the DID's
``seq``), ``versionTime`` (an ISO 8601 datetime), ``resource`` (a resource id
of the DID: how ``did:dnode`` names published resources such as status lists).
The HTTP query may also carry the option ``proof`` (``true``/``false``: include
the state proof in the resolution metadata).

:data:`DID_ERROR_TYPES` and :func:`error_type` give the specification's error
type (``https://www.w3.org/ns/did#NOT_FOUND``, ...) of any didnode error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from didnode.core.did import KEY_ID_RE, METHOD, validate_did
from didnode.core.document import parse_iso8601
from didnode.errors import (
    DidnodeError,
    InvalidArgument,
    InvalidDid,
    InvalidDidUrl,
    InvalidInput,
    InvalidOptions,
    MethodNotSupported,
    NotFound,
    RepresentationNotSupported,
)

DID_ERROR_NS: Final = "https://www.w3.org/ns/did#"
MAX_DID_URL: Final = 2048  # characters of a DID URL (or of an HTTP target's path tail), before decoding
MAX_VALUE: Final = 512  # characters of one decoded parameter value (an endpoint is at most 512)
MAX_FRAGMENT: Final = 128
MAX_VERSION_ID: Final = (1 << 53) - 1
DID_PARAMETERS: Final = ("service", "relativeRef", "versionId", "versionTime", "resource")
HTTP_OPTIONS: Final = ("proof",)

# DID Core's generic DID syntax: did:<method-name>:<method-specific-id>.
_GENERIC_DID = re.compile(r"did:[a-z0-9]+:(?:[A-Za-z0-9._:-]|%[0-9A-Fa-f]{2})*(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})")
_METHOD_PREFIX = re.compile(r"did:([a-z0-9]+):")
# RFC 3986 characters: pchar (unreserved, sub-delims, ':', '@', pct-encoded) plus '/' and '?' for query and fragment.
_QUERY_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_VALUE_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$'()*+,;:@/?]|%[0-9A-Fa-f]{2})*")  # a query value: no '&' or '='
_REF_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]*")  # a decoded relativeRef: URI characters, no '%'
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_VERSION_ID = re.compile(r"0|[1-9][0-9]{0,15}")
_VERSION_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class DidUrl:
    """A parsed ``did:dnode`` DID URL with its DID parameters (and the HTTP options, when read from a request)."""

    did: str
    fragment: str | None = None
    service: str | None = None
    relative_ref: str | None = None
    version_id: int | None = None
    version_time: str | None = None
    resource: str | None = None
    proof: bool = False

    @property
    def is_did(self) -> bool:
        """Whether this names the DID document itself (a DID, maybe with a version): resolution, not dereferencing."""
        return self.fragment is None and self.service is None and self.resource is None

    @property
    def text(self) -> str:
        """The DID URL in its one spelling (parameters in :data:`DID_PARAMETERS` order, values escaped)."""
        params = [
            (name, value)
            for name, value in (
                ("service", self.service),
                ("relativeRef", self.relative_ref),
                ("versionId", None if self.version_id is None else str(self.version_id)),
                ("versionTime", self.version_time),
                ("resource", self.resource),
            )
            if value is not None
        ]
        query = "&".join(f"{n}={_escape(v)}" for n, v in params)
        return self.did + (f"?{query}" if query else "") + (f"#{_escape(self.fragment)}" if self.fragment is not None else "")


def _escape(value: str) -> str:
    return "".join(c if re.fullmatch(r"[A-Za-z0-9\-._~!$'()*+,;:@/?]", c) else "".join(f"%{b:02X}" for b in c.encode()) for c in value)


def _shown(text: str) -> str:
    """``text`` for an error message: bounded, with every character outside printable ASCII escaped."""
    cut = text[:80]
    out = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in cut)
    return out + ("..." if len(text) > 80 else "")


def percent_decode(text: str, what: str, error: type[InvalidInput] = InvalidDidUrl) -> str:
    """``text`` with each ``%HH`` decoded once, the bytes read as strict UTF-8.

    Raises ``error`` for a ``%`` not followed by two hex digits, bytes that are
    not UTF-8, and any control character (C0, DEL) in the result.
    """
    if not text.isascii():
        bad = next(c for c in text if not c.isascii())
        raise error(f"{what} {_shown(text)}: character {_shown(bad)!r} must be percent-encoded (as UTF-8)", value=_shown(text))
    if "%" in text:
        if text.count("%") != len(_ESCAPE.findall(text)):
            raise error(f"{what} {_shown(text)} has a '%' that is not followed by two hex digits", value=_shown(text))
        raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)  # each char < 256: one byte below
        try:
            text = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise error(f"{what} {_shown(text)} percent-encodes bytes that are not UTF-8", value=_shown(text)) from None
    if any(c < " " or c == "\x7f" for c in text):
        raise error(f"{what} {_shown(text)} holds a control character", value=_shown(text))
    return text


def check_did(text: str) -> str:
    """``text`` if it is a valid ``did:dnode`` DID; :class:`MethodNotSupported` for a well-formed DID of
    another method, :class:`~didnode.errors.InvalidDid` for anything else."""
    if _other_method(text):
        method = text.split(":", 2)[1]
        raise MethodNotSupported(f"{_shown(text)}: method {method!r} is not supported; this resolver resolves did:{METHOD}", did=_shown(text), method=method)
    validate_did(text)
    return text


def _other_method(text: str) -> bool:
    """Whether ``text`` is a DID by DID Core's generic syntax whose method is not ``dnode``."""
    m = _METHOD_PREFIX.match(text)
    return m is not None and m.group(1) != METHOD and len(text) <= MAX_DID_URL and _GENERIC_DID.fullmatch(text) is not None


def parse_did_url(text: str) -> DidUrl:
    """A DID URL (not percent-encoded as a whole: its query values and fragment may hold escapes)."""
    if len(text) > MAX_DID_URL:
        raise InvalidDidUrl(f"a DID URL is at most {MAX_DID_URL} characters, not {len(text)}", size=len(text), limit=MAX_DID_URL)
    head, hash_, fragment = text.partition("#")
    did_part, qmark, query = head.partition("?")
    path_at = did_part.find("/")
    did = did_part if path_at < 0 else did_part[:path_at]
    check_did(did)
    if path_at >= 0:
        raise InvalidDidUrl(f"{_shown(text)}: a did:{METHOD} DID URL has no path ({_shown(did_part[path_at:])})", value=_shown(text))
    params = _parse_query(query, InvalidDidUrl, DID_PARAMETERS) if qmark else {}
    frag = _parse_fragment(fragment) if hash_ else None
    return _build(did, params, frag, {})


def parse_http_target(raw_tail: str, raw_query: str) -> DidUrl:
    """The DID URL of ``GET /1.0/identifiers/<raw_tail>?<raw_query>``; both still percent-encoded, as received.

    The tail is percent-decoded once into the DID URL (so ``%3F`` and ``%23``
    are its query and fragment: a client cannot send a raw ``#``). When the
    decoded DID URL has no query of its own, the DID parameters of the HTTP
    query are its query (the form ``/1.0/identifiers/did:dnode:...?service=x``);
    otherwise the HTTP query holds options only. Options (``proof``) come from
    the HTTP query only. A parameter named twice, in either place or across
    both, is refused.
    """
    if len(raw_tail) > MAX_DID_URL or len(raw_query) > MAX_DID_URL:
        raise InvalidDidUrl(f"a DID URL request target is at most {MAX_DID_URL} characters in its path and in its query", limit=MAX_DID_URL)
    if not raw_tail:
        raise InvalidDid(f"no DID given: GET /1.0/identifiers/did:{METHOD}:<id>")
    decoded = percent_decode(raw_tail, "the request path")
    did_url = parse_did_url(decoded)
    if not raw_query:
        return did_url
    own_query = "?" in decoded.partition("#")[0]
    allowed = HTTP_OPTIONS + DID_PARAMETERS
    error: type[InvalidInput] = InvalidOptions if own_query else InvalidDidUrl
    extra = _parse_query(raw_query, error, allowed)
    options = {k: extra.pop(k) for k in HTTP_OPTIONS if k in extra}
    current = _params_of(did_url)
    for name in extra:
        if name in current:
            raise InvalidOptions(f"parameter {name} is given twice (in the DID URL and in the request's query)", parameter=name)
    if not extra and not options:
        return did_url
    return _build(did_url.did, {**current, **extra}, did_url.fragment, options)


def _params_of(url: DidUrl) -> dict[str, str]:
    out = {
        "service": url.service,
        "relativeRef": url.relative_ref,
        "versionId": None if url.version_id is None else str(url.version_id),
        "versionTime": url.version_time,
        "resource": url.resource,
    }
    return {k: v for k, v in out.items() if v is not None}


def _parse_query(query: str, error: type[InvalidInput], allowed: tuple[str, ...]) -> dict[str, str]:
    """``name=value&...`` into a dict of decoded values; names from ``allowed``, each once."""
    if not query:
        return {}
    if not _QUERY_CHARS.fullmatch(query):
        bad = next((c for c in query if not re.fullmatch(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]", c)), None)
        if bad is None:
            raise error(f"query {_shown(query)} has a '%' that is not followed by two hex digits", value=_shown(query))
        raise error(f"query {_shown(query)}: character {_shown(bad)!r} must be percent-encoded", value=_shown(query))
    out: dict[str, str] = {}
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if not eq or not name:
            raise error(f"query part {_shown(part)!r} is not name=value", value=_shown(part))
        if name not in allowed:
            raise error(f"unknown parameter {_shown(name)!r}; known: {', '.join(allowed)}", parameter=_shown(name))
        if name in out:
            raise error(f"parameter {name} is given twice", parameter=name)
        if not _VALUE_CHARS.fullmatch(value):
            raise error(f"parameter {name}: '=' in a value must be percent-encoded", parameter=name)
        decoded = percent_decode(value, f"parameter {name}", error)
        if not decoded:
            raise error(f"parameter {name} is empty", parameter=name)
        if len(decoded) > MAX_VALUE:
            raise error(f"parameter {name} is at most {MAX_VALUE} characters, not {len(decoded)}", parameter=name, size=len(decoded))
        out[name] = decoded
    return out


def _parse_fragment(fragment: str) -> str:
    if not fragment:
        raise InvalidDidUrl("the DID URL's fragment is empty")
    if len(fragment) > MAX_FRAGMENT or not _QUERY_CHARS.fullmatch(fragment):
        raise InvalidDidUrl(f"fragment {_shown(fragment)!r} is not a URI fragment of at most {MAX_FRAGMENT} characters", value=_shown(fragment))
    return percent_decode(fragment, "the fragment")


def _build(did: str, params: dict[str, str], fragment: str | None, options: dict[str, str]) -> DidUrl:
    """Check each DID parameter's value and how they combine; the :class:`DidUrl`."""
    version_id = version_time = None
    if "versionId" in params:
        if not _VERSION_ID.fullmatch(params["versionId"]) or int(params["versionId"]) > MAX_VERSION_ID:
            raise InvalidDidUrl(f"versionId {_shown(params['versionId'])!r} must be a version number (0, 1, ...), without leading zeros", parameter="versionId")
        version_id = int(params["versionId"])
    if "versionTime" in params:
        version_time = params["versionTime"]
        try:
            if not _VERSION_TIME.fullmatch(version_time):
                raise ValueError(version_time)
            parse_iso8601(version_time)
        except (ValueError, OverflowError):
            raise InvalidDidUrl(
                f"versionTime {_shown(version_time)!r} must be an ISO 8601 UTC or offset datetime, e.g. 2026-01-31T12:00:00Z", parameter="versionTime"
            ) from None
    if version_id is not None and version_time is not None:
        raise InvalidOptions("give versionId or versionTime, not both", parameter="versionTime")
    for name in ("service", "resource"):
        if name in params and not KEY_ID_RE.fullmatch(params[name]):
            raise InvalidDidUrl(f"{name} {_shown(params[name])!r} must be 1-32 characters of [A-Za-z0-9_-] (a did:{METHOD} {name} id)", parameter=name)
    if "service" in params and "resource" in params:
        raise InvalidDidUrl("a DID URL names a service or a resource, not both", parameter="resource")
    if "resource" in params and (version_id is not None or version_time is not None):
        raise InvalidDidUrl("past versions of a resource are not served: ask for the resource without versionId/versionTime", parameter="resource")
    relative_ref = params.get("relativeRef")
    if relative_ref is not None:
        if "service" not in params:
            raise InvalidDidUrl("relativeRef is only meaningful with service", parameter="relativeRef")
        if not _REF_CHARS.fullmatch(relative_ref) or _SCHEME.match(relative_ref) or relative_ref.startswith("//"):
            raise InvalidDidUrl(
                f"relativeRef {_shown(relative_ref)!r} must be a relative reference (RFC 3986 4.2) of URI characters, without scheme or authority",
                parameter="relativeRef",
            )
    proof = False
    if "proof" in options:
        if options["proof"] not in ("true", "false"):
            raise InvalidOptions(f"option proof is true or false, not {_shown(options['proof'])!r}", parameter="proof")
        proof = options["proof"] == "true"
    return DidUrl(did, fragment, params.get("service"), relative_ref, version_id, version_time, params.get("resource"), proof)


# --------------------------------------------------------------------------
# Error types (W3C DID Resolution, "Errors")
# --------------------------------------------------------------------------

# The specification's error type of each didnode error class; the first class of an error's MRO found wins.
DID_ERROR_TYPES: dict[type[DidnodeError], str] = {
    MethodNotSupported: "METHOD_NOT_SUPPORTED",
    InvalidDid: "INVALID_DID",
    InvalidDidUrl: "INVALID_DID_URL",
    InvalidOptions: "INVALID_OPTIONS",
    RepresentationNotSupported: "REPRESENTATION_NOT_SUPPORTED",
    InvalidArgument: "INVALID_OPTIONS",
    InvalidInput: "INVALID_DID_URL",
    NotFound: "NOT_FOUND",
    DidnodeError: "INTERNAL_ERROR",
}
TITLES: Final = {
    "METHOD_NOT_SUPPORTED": "DID method not supported",
    "INVALID_DID": "Invalid DID",
    "INVALID_DID_URL": "Invalid DID URL",
    "INVALID_OPTIONS": "Invalid options",
    "REPRESENTATION_NOT_SUPPORTED": "Representation not supported",
    "NOT_FOUND": "Not found",
    "INTERNAL_ERROR": "Internal error",
}


def error_type(err: DidnodeError, did_text: str | None = None) -> str:
    """The specification's error type name of ``err`` (``NOT_FOUND``, ...).

    ``did_text``: the DID the caller asked about, when known; an
    :class:`~didnode.errors.InvalidDid` for a well-formed DID of another
    method (as :func:`~didnode.core.did.validate_did` raises it) is then
    ``METHOD_NOT_SUPPORTED``.
    """
    if type(err) is InvalidDid and did_text is not None and _other_method(did_text):
        return "METHOD_NOT_SUPPORTED"
    for cls in type(err).__mro__:
        found = DID_ERROR_TYPES.get(cls)  # type: ignore[call-overload]
        if found is not None:
            return str(found)
    return "INTERNAL_ERROR"


def error_object(err: DidnodeError, did_text: str | None = None) -> dict[str, str]:
    """The RFC 9457 problem object of ``err`` for resolution metadata: ``type`` (a URL of the
    specification's namespace), ``title``, ``detail`` (the message) and didnode's ``reason``."""
    name = error_type(err, did_text)
    return {"type": DID_ERROR_NS + name, "title": TITLES[name], "detail": err.message, "reason": err.reason}


__all__ = [
    "DID_ERROR_NS",
    "DID_ERROR_TYPES",
    "DID_PARAMETERS",
    "DidUrl",
    "check_did",
    "error_object",
    "error_type",
    "parse_did_url",
    "parse_http_target",
    "percent_decode",
]
