"""``statusListCredential`` URLs: the forms that name a status list on the ledger, and building them.

A status list is the ledger resource ``ID`` of its issuer's DID ``D``. A
credential names it in one of these forms, all of which a didnode verifier
maps to (``D``, ``ID``) and reads from the ledger, whatever host the URL
names (so verification works offline and through any node):

* **HTTP(S)** (what issuers write): ``{base}/1.0/identifiers/D?resource=ID``,
  the W3C DID Resolution HTTP(S) binding's dereferencing request for the DID
  URL ``D?resource=ID``. Any HTTP client can fetch it from a didnode HTTP
  listener (or any resolver serving that binding) at ``{base}``, the issuer's
  choice (default :data:`DEFAULT_STATUS_BASE_URL`, the listener of ``make run``).
  ``{base}`` is ``http://`` or ``https://``, a host, and optionally a path
  prefix (e.g. a reverse proxy's), ignored when mapping. The DID may be
  percent-encoded in the path, and the whole DID URL may be given in the
  path instead (``.../1.0/identifiers/D%3Fresource%3DID``, no query), as the
  binding allows; percent-escapes are decoded once, strictly (UTF-8).
* **DID URL** (credentials issued before the HTTP form): ``D?resource=ID``.

Both are bounded (:data:`MAX_URL` characters) and checked character by
character before anything is decoded. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Final

from didnode.core.did import KEY_ID_RE, PREFIX, validate_did
from didnode.errors import ClaimsInvalid, InvalidArgument, InvalidDid

DEFAULT_STATUS_BASE_URL: Final = "http://127.0.0.1:8080"
IDENTIFIERS_PATH: Final = "/1.0/identifiers/"
RESOURCE_QUERY: Final = "?resource="
MAX_URL: Final = 2048
MAX_BASE_URL: Final = 1024

# RFC 3986 URI characters (reserved, unreserved and '%'); everything else must be percent-encoded.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_HTTP = re.compile(r"(?i:https?)://")
# An authority without userinfo: a reg-name, IPv4 or bracketed IPv6 host, optionally a port.
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")
_PATH_PREFIX = re.compile(r"(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)*")


def _shown(url: str) -> str:
    return repr(url[:100])


def _decode(text: str, url: str) -> str:
    """``text`` with its percent-escapes decoded once (as UTF-8); raises :class:`ClaimsInvalid`."""
    if "%" not in text:
        return text
    if text.count("%") != len(_ESCAPE.findall(text)):
        raise ClaimsInvalid(f"statusListCredential {_shown(url)} has a '%' that is not a percent-escape")
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(text[i].encode("ascii"))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ClaimsInvalid(f"statusListCredential {_shown(url)} percent-encodes bytes that are not UTF-8") from None


def _did_url(text: str, url: str) -> tuple[str, str]:
    """(DID, resource id) of the DID URL form ``D?resource=ID``."""
    did, sep, rid = text.partition(RESOURCE_QUERY)
    if not sep:
        raise ClaimsInvalid(f"statusListCredential {_shown(url)} is neither {{base}}/1.0/identifiers/DID?resource=ID nor a DID URL DID?resource=ID")
    try:
        validate_did(did)
    except InvalidDid as exc:
        raise ClaimsInvalid(f"statusListCredential {_shown(url)}: {exc}") from None
    if not KEY_ID_RE.fullmatch(rid):
        raise ClaimsInvalid(f"statusListCredential {_shown(url)}: the resource id must be 1-32 characters of [A-Za-z0-9_-]")
    return did, rid


def _http_url(url: str) -> tuple[str, str]:
    """(DID, resource id) of ``http(s)://authority[/prefix]/1.0/identifiers/D?resource=ID``."""
    if not _URI_CHARS.fullmatch(url):
        raise ClaimsInvalid(f"statusListCredential {_shown(url)} has characters a URL must percent-encode")
    if "#" in url:
        raise ClaimsInvalid(f"statusListCredential {_shown(url)} has a fragment; it names a list, not a part of one")
    rest = url[url.index("://") + 3 :]
    target, _, query = rest.partition("?")
    authority, slash, path = target.partition("/")
    if not _AUTHORITY.fullmatch(authority):
        raise ClaimsInvalid(f"statusListCredential {_shown(url)} has no valid host (user information is not allowed)")
    path = slash + path
    prefix, marker, tail = path.rpartition(IDENTIFIERS_PATH)
    if not marker or not tail or "/" in tail or not _PATH_PREFIX.fullmatch(prefix):
        raise ClaimsInvalid(f"statusListCredential {_shown(url)}: the path must end in {IDENTIFIERS_PATH}<did:dnode DID>")
    decoded = _decode(tail, url)
    if "?" in decoded:
        # The whole DID URL in the path (its '?' percent-encoded): no HTTP query then.
        if "?" in rest:
            raise ClaimsInvalid(f"statusListCredential {_shown(url)} names its resource both in the path and in the query")
        return _did_url(decoded, url)
    if not query.startswith("resource=") or "&" in query or ";" in query:
        raise ClaimsInvalid(f"statusListCredential {_shown(url)}: the query must be exactly resource=<resource id>")
    rid = _decode(query[len("resource=") :], url)
    return _did_url(f"{decoded}{RESOURCE_QUERY}{rid}", url)


def parse_status_list_url(url: object) -> tuple[str, str]:
    """(DID, resource id) named by a ``statusListCredential`` in either form; raises :class:`ClaimsInvalid`.

    The host and path prefix of the HTTP(S) form are not part of the answer:
    the verifier reads the resource from the ledger, not from that host.
    """
    if not isinstance(url, str):
        raise ClaimsInvalid("statusListCredential must be a URL string")
    if len(url) > MAX_URL:
        raise ClaimsInvalid(f"statusListCredential is {len(url)} characters; the limit is {MAX_URL}")
    if url.startswith(PREFIX):
        return _did_url(url, url)
    if _HTTP.match(url):
        return _http_url(url)
    raise ClaimsInvalid(f"statusListCredential {_shown(url)} is neither an http(s) URL nor a did:dnode DID URL")


def validate_base_url(base: object) -> str:
    """``base`` without trailing slashes if it is a valid status list base URL, else :class:`InvalidArgument`.

    A base URL is ``http://`` or ``https://``, a host (no user information),
    an optional port and an optional path prefix; no query, no fragment.
    """
    if not isinstance(base, str) or not base:
        raise InvalidArgument("a status list base URL is a non-empty string such as https://resolver.example.com")
    if len(base) > MAX_BASE_URL:
        raise InvalidArgument(f"the status list base URL is {len(base)} characters; the limit is {MAX_BASE_URL}")
    trimmed = base.rstrip("/")
    m = _HTTP.match(trimmed)
    if m is None:
        raise InvalidArgument(f"status list base URL {_shown(base)} must start with http:// or https://", url=base[:100])
    authority, slash, path = trimmed[m.end() :].partition("/")
    if not _URI_CHARS.fullmatch(trimmed) or "?" in trimmed or "#" in trimmed:
        raise InvalidArgument(f"status list base URL {_shown(base)} must have no query or fragment and only URL characters", url=base[:100])
    if not _AUTHORITY.fullmatch(authority) or not _PATH_PREFIX.fullmatch(slash + path):
        raise InvalidArgument(f"status list base URL {_shown(base)} needs a valid host (no user information) and path", url=base[:100])
    return trimmed


def status_list_url(did: str, resource_id: str, base_url: str | None = None) -> str:
    """The ``statusListCredential`` URL of ``did``'s resource ``resource_id``.

    With ``base_url``: ``{base_url}/1.0/identifiers/{did}?resource={resource_id}``
    (precondition: ``base_url`` passed :func:`validate_base_url`); without:
    the DID URL ``{did}?resource={resource_id}``. DIDs and resource ids need
    no percent-encoding.
    """
    if base_url is None:
        return f"{did}{RESOURCE_QUERY}{resource_id}"
    return f"{base_url}{IDENTIFIERS_PATH}{did}{RESOURCE_QUERY}{resource_id}"


__all__ = ["DEFAULT_STATUS_BASE_URL", "IDENTIFIERS_PATH", "parse_status_list_url", "status_list_url", "validate_base_url"]
