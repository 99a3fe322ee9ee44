"""DID URL dereferencing and content negotiation over a resolution result (pure).

Given the :class:`~didnode.core.did_url.DidUrl` a caller asked for, the
resolution result of its DID (or the resource it names) and the caller's
``Accept`` header, the functions here say what to answer, as a
:class:`Representation`: a media type and a body, a redirect, or a deactivated
DID's answer. The HTTP edge (:mod:`didnode.http`) only turns it into bytes and a
status (docs/http.md, "Negotiation"):

* a DID (maybe with ``versionId``/``versionTime``): the resolution result
  (``application/did-resolution``, also under the older
  ``application/ld+json;profile="https://w3id.org/did-resolution"``), a
  dereferencing result (``application/did-url-dereferencing``), or the document
  alone (``application/did+ld+json``, ``application/did``,
  ``application/did+json``, ``application/ld+json``, ``application/json``);
  without an ``Accept`` header, or with ``*/*``, the resolution result;
* a fragment: the verification method or service it names, alone (the
  document's media types) or in a dereferencing result (the default);
* ``?service=ID``: a redirect to the service's endpoint (``relativeRef``
  resolved against it by RFC 3986 section 5, the fragment carried over);
* ``?resource=ID``: the resource's content with its media type (the default),
  or a dereferencing result carrying it as a string.

Anything the caller's ``Accept`` excludes is
:class:`~didnode.errors.RepresentationNotSupported`; a malformed ``Accept``
header is :class:`~didnode.errors.InvalidOptions`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Final, Sequence

from didnode.core.did_url import DidUrl, error_object
from didnode.core.document import DID_LD_JSON, iso8601
from didnode.core.results import Resource
from didnode.errors import DidnodeError, InvalidOptions, RepresentationNotSupported, UnknownFragment, UnknownService

RESULT: Final = "application/did-resolution"
LEGACY_RESULT: Final = 'application/ld+json;profile="https://w3id.org/did-resolution"'
DEREFERENCING: Final = "application/did-url-dereferencing"
DID: Final = "application/did"
DID_JSON: Final = "application/did+json"
LD_JSON: Final = "application/ld+json"
JSON: Final = "application/json"
URI_LIST: Final = "text/uri-list"
OCTET_STREAM: Final = "application/octet-stream"

# What each kind of DID URL can be answered as, in the node's order of preference (the first is the default).
DOCUMENT_OFFERS: Final = (RESULT, LEGACY_RESULT, DEREFERENCING, DID_LD_JSON, DID, DID_JSON, LD_JSON, JSON)
FRAGMENT_OFFERS: Final = (DEREFERENCING, DID_LD_JSON, DID, DID_JSON, LD_JSON, JSON)
RESULT_TYPES: Final = (RESULT, LEGACY_RESULT)

MAX_ACCEPT: Final = 1024  # characters of an Accept header
MAX_RANGES: Final = 32  # media ranges in one
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
# A parameter value: a quoted string, or (leniently: clients send profile URLs unquoted) any run of
# visible characters other than ';', ',' and '"'.
_VALUE = r"(?:\"[^\"\\\x00-\x1f]*\"|[^;,\"\s\x00-\x1f\x7f]+)"
_RANGE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*((?:;\s*{_TOKEN}\s*=\s*{_VALUE}\s*)*)")
_PARAM = re.compile(rf";\s*({_TOKEN})\s*=\s*({_VALUE})\s*")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,62}")
_Q = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One range of an ``Accept`` header: ``type/subtype`` (either may be ``*``), its parameters, its weight."""

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...]
    q: float


@dataclass(frozen=True, slots=True)
class Representation:
    """What to answer: ``body`` (a JSON value, or the text of a resource) as ``media_type``; or a redirect to
    ``location``. ``deactivated``: the answer is about a deactivated DID (HTTP 410)."""

    media_type: str
    body: Any
    deactivated: bool = False
    location: str | None = None


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an ``Accept`` header (RFC 9110 section 12.5.1); none or empty: ``*/*``."""
    if header is None or not header.strip():
        return [MediaRange("*", "*", (), 1.0)]
    if len(header) > MAX_ACCEPT:
        raise InvalidOptions(f"the Accept header is at most {MAX_ACCEPT} characters, not {len(header)}", size=len(header))
    out: list[MediaRange] = []
    for part in header.split(","):
        if not part.strip():
            continue
        m = _RANGE.fullmatch(part)
        if m is None:
            raise InvalidOptions(f"Accept: {part.strip()[:60]!r} is not a media range (type/subtype;name=value)", header="Accept")
        params: list[tuple[str, str]] = []
        q = 1.0
        for name, value in _PARAM.findall(m.group(3)):
            value = value[1:-1] if value.startswith('"') else value
            if name.lower() == "q":
                if not _Q.fullmatch(value):
                    raise InvalidOptions(f"Accept: weight q={value[:10]!r} must be 0..1 with at most 3 decimals", header="Accept")
                q = float(value)
                break  # what follows q are accept-extensions, not media type parameters
            params.append((name.lower(), value))
        kind, sub = m.group(1).lower(), m.group(2).lower()
        if kind == "*" and sub != "*":
            raise InvalidOptions(f"Accept: {part.strip()[:60]!r}: */subtype is not a media range", header="Accept")
        out.append(MediaRange(kind, sub, tuple(params), q))
        if len(out) > MAX_RANGES:
            raise InvalidOptions(f"the Accept header lists more than {MAX_RANGES} media ranges", header="Accept")
    if not out:
        return [MediaRange("*", "*", (), 1.0)]
    return out


def _split(media_type: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    main, _, rest = media_type.partition(";")
    kind, _, sub = main.strip().lower().partition("/")
    params = tuple((n.lower(), v[1:-1] if v.startswith('"') else v) for n, v in _PARAM.findall(";" + rest)) if rest else ()
    return kind, sub, params


def quality(offer: str, ranges: Sequence[MediaRange]) -> float:
    """The weight the caller gives ``offer``: that of the most specific range matching it (0: none).

    A range with parameters matches an offer with those parameters; a range
    without parameters matches the offers of its type without parameters
    (``application/ld+json`` is the document, not the profiled result);
    ``type/*`` and ``*/*`` match every offer of their scope.
    """
    kind, sub, params = _split(offer)
    best, found = -1, 0.0
    for r in ranges:
        if r.type == "*":
            rank = 0
        elif r.type != kind:
            continue
        elif r.subtype == "*":
            rank = 1
        elif r.subtype != sub:
            continue
        elif r.params:
            if not set(r.params) <= set(params):
                continue
            rank = 3
        elif params:
            continue
        else:
            rank = 2
        if rank > best:
            best, found = rank, r.q
    return found


def choose(accept: str | None, offers: Sequence[str]) -> str:
    """The offer the caller weighs highest (ties: the first of ``offers``); raises
    :class:`RepresentationNotSupported` when it accepts none."""
    return _choose(accept, tuple(offers))


@functools.lru_cache(maxsize=256)  # a handful of Accept headers make nearly all requests
def _choose(accept: str | None, offers: tuple[str, ...]) -> str:
    ranges = parse_accept(accept)
    chosen, weight = None, 0.0
    for offer in offers:
        q = quality(offer, ranges)
        if q > weight:
            chosen, weight = offer, q
    if chosen is None:
        raise RepresentationNotSupported(
            f"none of the accepted media types ({(accept or '')[:100]}) can represent this; available: {', '.join(offers)}", accept=(accept or "")[:100]
        )
    return chosen


def safe_media_type(media_type: str) -> str:
    """A stored resource's media type when it is a plain ``type/subtype`` (what may go in a header), else
    ``application/octet-stream``."""
    return media_type if _MEDIA_TYPE.fullmatch(media_type) else OCTET_STREAM


# --------------------------------------------------------------------------
# Representations
# --------------------------------------------------------------------------


def _deactivated(result: dict[str, Any]) -> bool:
    return result.get("didDocumentMetadata", {}).get("deactivated") is True


def represent_document(result: dict[str, Any], media_type: str) -> Representation:
    """A DID's resolution ``result`` as ``media_type`` (one of :data:`DOCUMENT_OFFERS`)."""
    gone = _deactivated(result)
    if media_type in RESULT_TYPES:
        return Representation(media_type, result, gone)
    if media_type == DEREFERENCING:
        body = {"content": result["didDocument"], "contentMetadata": result["didDocumentMetadata"], "dereferencingMetadata": {"contentType": DID_LD_JSON}}
        return Representation(media_type, body, gone)
    return Representation(media_type, result["didDocument"], gone)


def select_fragment(document: dict[str, Any], did: str, fragment: str) -> dict[str, Any]:
    """The verification method or service of ``document`` whose id is ``did#fragment``; raises :class:`UnknownFragment`."""
    target = f"{did}#{fragment}"
    for member in ("verificationMethod", "service"):
        for item in document.get(member, ()):
            if item.get("id") == target:
                return dict(item)
    raise UnknownFragment(f"{target[:160]} names no verification method or service of the document", did=did, fragment=fragment[:40])


def represent_fragment(result: dict[str, Any], url: DidUrl, media_type: str) -> Representation:
    """The object ``url``'s fragment names, as ``media_type`` (one of :data:`FRAGMENT_OFFERS`)."""
    assert url.fragment is not None
    gone = _deactivated(result)
    if gone:  # a deactivated document names nothing: the answer is that it is gone
        return represent_document(result, DEREFERENCING if media_type == DEREFERENCING else DID_LD_JSON)
    content = select_fragment(result["didDocument"], url.did, url.fragment)
    if media_type == DEREFERENCING:
        body = {"content": content, "contentMetadata": result["didDocumentMetadata"], "dereferencingMetadata": {"contentType": DID_LD_JSON}}
        return Representation(media_type, body)
    return Representation(media_type, content)


def service_location(result: dict[str, Any], url: DidUrl) -> Representation:
    """The redirect that ``?service=ID`` (with ``relativeRef`` and a fragment) dereferences to."""
    assert url.service is not None
    gone = _deactivated(result)
    if gone:
        return represent_document(result, RESULT)
    target = f"{url.did}#{url.service}"
    endpoint = next((s["serviceEndpoint"] for s in result["didDocument"].get("service", ()) if s.get("id") == target), None)
    if not isinstance(endpoint, str):
        raise UnknownService(f"{url.did} has no service {url.service!r}", did=url.did, service=url.service)
    location = resolve_reference(endpoint, url.relative_ref) if url.relative_ref else endpoint
    if url.fragment is not None:
        location = location.partition("#")[0] + "#" + _escape_fragment(url.fragment)
    return Representation(URI_LIST, None, location=location)


def represent_resource(resource: Resource, media_type: str) -> Representation:
    """A published resource as its own media type (its content) or as a dereferencing result."""
    own = safe_media_type(resource.media_type)
    if media_type != DEREFERENCING:
        return Representation(own, resource.content)
    metadata = {
        "resourceId": resource.id,
        "mediaType": own,
        "versionId": str(resource.seq),
        "updated": iso8601(resource.time_ms),
        "ledgerPosition": resource.position,
        "operationHash": resource.op_hash.hex(),
    }
    return Representation(DEREFERENCING, {"content": resource.content, "contentMetadata": metadata, "dereferencingMetadata": {"contentType": own}})


def resource_offers(resource: Resource) -> tuple[str, str]:
    """The representations of a resource: its content (the default) or a dereferencing result."""
    return (safe_media_type(resource.media_type), DEREFERENCING)


def error_representation(err: DidnodeError, did_text: str | None, dereferencing: bool) -> Representation:
    """The answer for a failed resolution (a result with ``didResolutionMetadata.error``) or dereferencing
    (``dereferencingMetadata.error``): the specification's error type and didnode's reason."""
    problem = error_object(err, did_text)
    if dereferencing:
        return Representation(DEREFERENCING, {"content": None, "contentMetadata": {}, "dereferencingMetadata": {"error": problem}})
    return Representation(RESULT, {"didDocument": None, "didDocumentMetadata": {}, "didResolutionMetadata": {"error": problem}})


# --------------------------------------------------------------------------
# RFC 3986 section 5: resolving a relative reference against a base URI
# --------------------------------------------------------------------------

_URI = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.DOTALL)


def _parts(uri: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    m = _URI.match(uri)
    assert m is not None  # the pattern matches every string (RFC 3986 appendix B)
    scheme, authority, path, query, fragment = m.groups()
    return scheme, authority, path, query, fragment


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    out: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith("./"):
            path = path[2:]
        elif path.startswith("/./"):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if out:
                out.pop()
        elif path == "/..":
            path = "/"
            if out:
                out.pop()
        elif path in (".", ".."):
            path = ""
        else:
            start = 1 if path.startswith("/") else 0
            end = path.find("/", start)
            end = len(path) if end < 0 else end
            out.append(path[:end])
            path = path[end:]
    return "".join(out)


def resolve_reference(base: str, ref: str) -> str:
    """The target URI of reference ``ref`` against ``base`` (RFC 3986 section 5.2.2, strict)."""
    b_scheme, b_auth, b_path, b_query, _ = _parts(base)
    r_scheme, r_auth, r_path, r_query, r_frag = _parts(ref)
    if r_scheme is not None:
        scheme, auth, path, query = r_scheme, r_auth, remove_dot_segments(r_path), r_query
    else:
        scheme = b_scheme
        if r_auth is not None:
            auth, path, query = r_auth, remove_dot_segments(r_path), r_query
        else:
            auth = b_auth
            if r_path == "":
                path, query = b_path, r_query if r_query is not None else b_query
            else:
                if r_path.startswith("/"):
                    path = remove_dot_segments(r_path)
                elif b_auth is not None and b_path == "":
                    path = remove_dot_segments("/" + r_path)
                else:
                    path = remove_dot_segments(b_path[: b_path.rfind("/") + 1] + r_path)
                query = r_query
    out = f"{scheme}:" if scheme is not None else ""
    if auth is not None:
        out += f"//{auth}"
    out += path
    if query is not None:
        out += f"?{query}"
    if r_frag is not None:
        out += f"#{r_frag}"
    return out


def _escape_fragment(fragment: str) -> str:
    """A decoded fragment as URI text: each character outside RFC 3986's fragment set percent-encoded (UTF-8)."""
    return "".join(
        c if re.fullmatch(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]", c) else "".join(f"%{b:02X}" for b in c.encode()) for c in fragment
    )


__all__ = [
    "DEREFERENCING",
    "DID",
    "DID_JSON",
    "DOCUMENT_OFFERS",
    "FRAGMENT_OFFERS",
    "LEGACY_RESULT",
    "RESULT",
    "MediaRange",
    "Representation",
    "choose",
    "error_representation",
    "parse_accept",
    "quality",
    "represent_document",
    "represent_fragment",
    "represent_resource",
    "resolve_reference",
    "resource_offers",
    "safe_media_type",
    "select_fragment",
    "service_location",
]
