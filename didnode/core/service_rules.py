"""The method's rules for a service entry: its id, its type and its endpoint.

docs/did-method.md ("Services") is the specification; this module is it in
code, shared by the ledger (:func:`didnode.core.operations.parse`) and by
clients that want to refuse a bad entry before signing it (``didctl
--service``). Everything here is consensus: the rules use explicit character
ranges, never the Unicode database of whichever Python runs the node.

* **id**: a DID URL fragment, 1-32 characters of ``[A-Za-z0-9_-]``, not
  ``next`` and not ending in ``-jwk`` (those name keys).
* **type**: 1-64 characters of ``[A-Za-z0-9._-]``, starting with a letter or
  digit (the form of the DID Specification Registries' service types:
  ``DIDCommMessaging``, ``LinkedDomains``, ``MQTTBroker``).
* **serviceEndpoint**: at most 512 characters, a URI by RFC 3986's grammar
  (section 3, the ``URI`` rule: a scheme, so never a relative reference; a
  query and a fragment are allowed). The grammar's character set is printable
  ASCII, so no control, format or bidi character can occur; percent-encoded
  octets must not decode to one either. The scheme is lowercase and one of
  :data:`SCHEMES`; the network schemes need ``//`` and a host, without
  userinfo; ``did:`` needs a method name, ``urn:`` a namespace id.

Violations are :class:`~didnode.errors.InvalidService` (a
:class:`~didnode.errors.MalformedOperation`); an over-long type or endpoint is
:class:`~didnode.errors.TooLarge`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from didnode.core.did import JWK_SUFFIX, KEY_ID_RE, NEXT_KEY_ID
from didnode.errors import InvalidService, TooLarge

MAX_SERVICE_TYPE = 64
MAX_SERVICE_ENDPOINT = 512
MAX_SHOWN = 60  # how much of a rejected value an error message repeats

# The scheme allow-list (docs/did-method.md explains each). Network schemes
# name a host to connect to; the others name something to resolve.
NETWORK_SCHEMES = frozenset(
    {
        "https", "http",  # REST, DIDComm over HTTP, LinkedDomains
        "wss", "ws",  # DIDComm / device channels over WebSocket
        "mqtts", "mqtt",  # MQTT brokers
        "coaps", "coap",  # CoAP over (D)TLS / UDP (RFC 7252)
        "coaps+tcp", "coap+tcp", "coaps+ws", "coap+ws",  # CoAP over TCP / WebSocket (RFC 8323)
    }
)  # fmt: skip
NAME_SCHEMES = frozenset({"did", "urn"})
SCHEMES = NETWORK_SCHEMES | NAME_SCHEMES

SERVICE_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# RFC 3986, section 3 and appendix A, as regular expressions over ASCII.
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_SEGMENT = rf"{_PCHAR}*"
_SEGMENT_NZ = rf"{_PCHAR}+"
_QUERY = rf"(?:{_PCHAR}|[/?])*"
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_REG_NAME = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*"
# IP-literal: IPv6address is checked by the ipaddress module below (its ABNF is
# long); IPvFuture is RFC 3986's rule as written.
_IP_LITERAL = rf"\[(?:(?P<ipv6>[0-9A-Fa-f:.]+)|v[0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+)\]"
_AUTHORITY = rf"(?:(?P<userinfo>{_USERINFO})@)?(?P<host>{_IP_LITERAL}|{_REG_NAME})(?::(?P<port>[0-9]*))?"
_PATH_ABEMPTY = rf"(?:/{_SEGMENT})*"
_PATH_ABSOLUTE = rf"/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"
_PATH_ROOTLESS = rf"{_SEGMENT_NZ}(?:/{_SEGMENT})*"
URI_RE = re.compile(
    rf"(?P<scheme>[A-Za-z][A-Za-z0-9+\-.]*):"
    rf"(?:(?P<slashes>//){_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PATH_ROOTLESS}|)"
    rf"(?:\?{_QUERY})?(?:#{_QUERY})?"
)
_DID_RE = re.compile(r"did:[a-z0-9]+:.+")  # DID Core: "did:" method-name ":" method-specific-id
_URN_RE = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]:.+")  # RFC 8141: NID 2-32 characters, NSS non-empty

# Characters that must never reach a document, a log line or a terminal from a
# service entry: C0 controls, DEL, C1 controls, and the invisible format
# characters that can disguise text (soft hyphen, Arabic letter mark, Hangul
# fillers, Mongolian vowel separator, zero-width space/joiners and LRM/RLM,
# line and paragraph separators, the bidi embeddings/overrides U+202A-U+202E and
# isolates U+2066-U+2069, word joiner and invisible operators, deprecated
# format controls, BOM, interlinear annotations, tags).
UNSAFE_CHAR_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\u3164\ufeff\uffa0\ufff9-\ufffb\U000e0000-\U000e007f]"
)


def _shown(value: str) -> str:
    """``value`` for an error message: Python's repr escapes every control and format character."""
    return repr(value if len(value) <= MAX_SHOWN else value[: MAX_SHOWN - 3] + "...")


def check_service_id(sid: Any) -> str:
    """``sid`` if it is a valid service id (a fragment: ``did#<id>`` in the document)."""
    if not isinstance(sid, str) or not KEY_ID_RE.fullmatch(sid):
        shown = _shown(sid) if isinstance(sid, str) else type(sid).__name__
        raise InvalidService(f"service id {shown} must be 1-32 characters of [A-Za-z0-9_-]", field="id")
    if sid == NEXT_KEY_ID or sid.endswith(JWK_SUFFIX):
        raise InvalidService(f"service id {sid!r} is reserved ('next' and '*-jwk' name keys)", service=sid, field="id")
    return sid


def check_service_type(sid: str, stype: Any) -> str:
    """``stype`` if it is a valid service type (see the module docstring)."""
    if not isinstance(stype, str):
        raise InvalidService(f"service {sid} type must be a string", service=sid, field="type")
    if len(stype) > MAX_SERVICE_TYPE:
        raise TooLarge(f"service {sid} type is {len(stype)} characters; the limit is {MAX_SERVICE_TYPE}", field="type")
    if not SERVICE_TYPE_RE.fullmatch(stype):
        raise InvalidService(
            f"service {sid} type {_shown(stype)} must be 1-{MAX_SERVICE_TYPE} characters of [A-Za-z0-9._-], starting with a letter or digit",
            service=sid,
            field="type",
        )
    return stype


def check_service_endpoint(sid: str, endpoint: Any) -> str:
    """``endpoint`` if it is a valid service endpoint (see the module docstring)."""
    if not isinstance(endpoint, str):
        raise InvalidService(f"service {sid} serviceEndpoint must be a string", service=sid, field="serviceEndpoint")
    if len(endpoint) > MAX_SERVICE_ENDPOINT:
        raise TooLarge(f"service {sid} endpoint is {len(endpoint)} characters; the limit is {MAX_SERVICE_ENDPOINT}", field="serviceEndpoint")

    def bad(why: str) -> InvalidService:
        return InvalidService(f"service {sid} endpoint {_shown(endpoint)} {why}", service=sid, field="serviceEndpoint")

    if UNSAFE_CHAR_RE.search(endpoint):
        raise bad("contains a control or invisible formatting character")
    m = URI_RE.fullmatch(endpoint)
    if m is None:
        if ":" not in endpoint:
            raise bad("is not an absolute URI (no scheme)")
        raise bad("is not a URI (RFC 3986: printable ASCII, other characters percent-encoded, no spaces)")
    scheme = m["scheme"]
    if scheme not in SCHEMES:
        if scheme.lower() in SCHEMES:
            raise bad(f"must spell its scheme in lowercase ({scheme.lower()!r})")
        raise bad(f"has scheme {scheme!r}; allowed: {', '.join(sorted(SCHEMES))}")
    if scheme in NETWORK_SCHEMES:
        if not m["slashes"]:
            raise bad(f"must be {scheme}://host...")
        if m["userinfo"] is not None:
            raise bad("must not carry userinfo (user:password@): a DID document is public")
        if not m["host"]:
            raise bad("names no host")
        if m["ipv6"] is not None:
            try:
                ipaddress.IPv6Address(m["ipv6"])
            except ValueError:
                raise bad("has a malformed IPv6 address") from None
        port = m["port"]
        if port is not None and not (port.isdigit() and len(port) <= 5 and 0 < int(port) <= 65535):
            raise bad("has a port outside 1-65535")
    elif scheme == "did" and not _DID_RE.fullmatch(endpoint):
        raise bad("is not a DID (did:<method>:<id>)")
    elif scheme == "urn" and not _URN_RE.fullmatch(endpoint):
        raise bad("is not a URN (urn:<nid>:<nss>)")
    if "%" in endpoint and UNSAFE_CHAR_RE.search(unquote_to_bytes(endpoint).decode("utf-8", "replace")):
        raise bad("percent-encodes a control or invisible formatting character")
    return endpoint


def check_service(sid: Any, stype: Any, endpoint: Any) -> tuple[str, str, str]:
    """``(id, type, serviceEndpoint)`` if the entry is valid; raises :class:`InvalidService` or :class:`TooLarge`."""
    sid = check_service_id(sid)
    return sid, check_service_type(sid, stype), check_service_endpoint(sid, endpoint)
