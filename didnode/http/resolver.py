"""The DID Resolution HTTP(S) binding: ``GET /1.0/identifiers/{did-url}``, and status lists by path.

Thin: the request target is parsed by :func:`didnode.core.did_url.parse_http_target`,
what to answer is decided by :mod:`didnode.core.dereference`, the data comes
from the same :class:`~didnode.service.ledger.LedgerService` (and, for
``proof=true``, :class:`~didnode.service.transparency.TransparencyService`)
the gRPC servicers call. Failures are answered as resolution (or
dereferencing) results carrying the specification's error type, with the
status of its table (:func:`didnode.http.status.resolution_status`); never a
traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from didnode.core.dereference import (
    DOCUMENT_OFFERS,
    FRAGMENT_OFFERS,
    Representation,
    choose,
    error_representation,
    represent_document,
    represent_fragment,
    represent_resource,
    resource_offers,
    service_location,
)
from didnode.core.did import KEY_ID_RE
from didnode.core.did_url import DidUrl, check_did, parse_http_target, percent_decode
from didnode.errors import DidnodeError, Internal, InvalidDidUrl, InvalidOptions
from didnode.http.status import resolution_status
from didnode.service.ledger import LedgerService
from didnode.service.transparency import TransparencyService

log = logging.getLogger("didnode.http")
IDENTIFIERS = "/1.0/identifiers/"
STATUS = "/status/"
# On every answer: the read side is public (any origin may read it), never sniffed, revalidated before reuse.
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"}
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def respond(rep: Representation, status: int) -> web.Response:
    """The HTTP response of a :class:`Representation`: a 303 to its location, or its body as its media type."""
    headers = dict(COMMON_HEADERS)
    if rep.location is not None:
        headers["Location"] = rep.location
        return web.Response(status=303, headers=headers)
    body = rep.body.encode() if isinstance(rep.body, str) else _dumps(rep.body).encode()
    headers["Content-Type"] = rep.media_type
    headers["Vary"] = "Accept"
    return web.Response(status=status, body=body, headers=headers)


def _origin_form(target: str) -> str:
    """The request target as ``/path?query`` (an absolute-form target, ``http://host/path?query``, loses its
    scheme and authority: RFC 9112 section 3.2.2), still percent-encoded as received."""
    if target.startswith("/"):
        return target
    scheme, sep, rest = target.partition("://")
    return "/" + rest.partition("/")[2] if sep else target


def accept_of(request: web.Request) -> str | None:
    """The request's ``Accept`` header (several are one list, RFC 9110 section 5.3); None when absent."""
    values = request.headers.getall("Accept", ())
    return ", ".join(values) if values else None


class Resolver:
    """The handlers of resolution, dereferencing and status lists for one node."""

    def __init__(self, ledger: LedgerService, transparency: TransparencyService | None = None) -> None:
        self.ledger = ledger
        self.transparency = transparency

    async def identifiers(self, request: web.Request) -> web.Response:
        """``GET /1.0/identifiers/{did-url}`` (docs/http.md)."""
        raw_path, _, raw_query = _origin_form(request.raw_path).partition("?")
        tail = raw_path[len(IDENTIFIERS) :]
        url: DidUrl | None = None
        try:
            url = parse_http_target(tail, raw_query)
            rep = await self.dereference(url, accept_of(request))
        except DidnodeError as err:
            return self._failed(err, url, tail, raw_query)
        except Exception:  # the edge: a bug is an INTERNAL_ERROR result, never a traceback
            log.exception("internal error resolving %s", tail[:200])
            return self._failed(Internal("internal error while resolving; see the node log"), url, tail, raw_query)
        return respond(rep, 303 if rep.location is not None else 410 if rep.deactivated else 200)

    def _failed(self, err: DidnodeError, url: DidUrl | None, tail: str, raw_query: str) -> web.Response:
        if url is not None:
            dereferencing = not url.is_did
        else:  # it did not parse: a DID URL if it looks like one (an escaped '?' or '#', a query)
            upper = tail.upper()
            dereferencing = bool(raw_query) or "%3F" in upper or "%23" in upper
        rep = error_representation(err, None, dereferencing)
        status = resolution_status(err)
        meta = rep.body["dereferencingMetadata" if dereferencing else "didResolutionMetadata"]
        meta["error"]["status"] = status
        return respond(rep, status)

    async def dereference(self, url: DidUrl, accept: str | None) -> Representation:
        """What ``url`` dereferences to, in the representation ``accept`` asks for."""
        if url.resource is not None:
            resource = self.ledger.resource(url.did, url.resource)
            return represent_resource(resource, choose(accept, resource_offers(resource)))
        if url.service is not None:
            return service_location(await self._result(url), url)
        offers = DOCUMENT_OFFERS if url.fragment is None else FRAGMENT_OFFERS
        media = choose(accept, offers)  # before reading: an unacceptable answer costs no read
        result = await self._result(url)
        return represent_document(result, media) if url.fragment is None else represent_fragment(result, url, media)

    async def _result(self, url: DidUrl) -> dict[str, Any]:
        """The resolution result of ``url``'s DID (its version), with the state proof when asked for."""
        if not url.proof:
            return self.ledger.resolve(url.did, url.version_id, url.version_time)
        if url.version_id is not None or url.version_time is not None:
            raise InvalidOptions("proof=true proves the current version only; leave out versionId and versionTime", parameter="proof")
        if self.transparency is None:
            raise InvalidOptions("this resolver has no state proofs to give", parameter="proof")
        proven = await self.transparency.resolve_with_proof(url.did)
        result = proven.result
        result["didResolutionMetadata"]["proof"] = proven.proof.to_json()
        return result

    async def status_list(self, request: web.Request) -> web.Response:
        """``GET /status/{did}/{resource-id}``: a DID's published resource (a status list) by a path of its own.

        The same content as ``/1.0/identifiers/{did}?resource={resource-id}``;
        failures are RFC 9457 problem documents (the middleware answers them).
        """
        raw_path, _, raw_query = _origin_form(request.raw_path).partition("?")
        if raw_query:
            raise InvalidOptions("GET /status/{did}/{resource-id} takes no query", parameter="query")
        did_part, slash, rid_part = raw_path[len(STATUS) :].partition("/")
        if not slash:
            raise InvalidDidUrl("expected /status/{did}/{resource-id}")
        did = check_did(percent_decode(did_part, "the DID"))
        rid = percent_decode(rid_part, "the resource id")
        if not KEY_ID_RE.fullmatch(rid):
            raise InvalidDidUrl(f"resource id {rid[:40]!r} must be 1-32 characters of [A-Za-z0-9_-]", parameter="resource")
        resource = self.ledger.resource(did, rid)
        rep = represent_resource(resource, choose(accept_of(request), resource_offers(resource)[:1]))
        return respond(rep, 200)


__all__ = ["COMMON_HEADERS", "IDENTIFIERS", "Resolver", "accept_of", "respond"]
