"""The one table from didnode errors to HTTP statuses, and the DID Resolution binding's table.

Two answers exist on the HTTP face (docs/http.md, "Errors"):

* resolution and dereferencing (``/1.0/identifiers/...``) answer a resolution
  or dereferencing result whose metadata holds the error; its status follows
  the error's DID Resolution error type (:func:`didnode.core.did_url.error_type`)
  through :data:`DID_ERROR_STATUS`, the specification's own table;
* every other route answers an RFC 9457 ``application/problem+json`` document
  (:func:`problem`) whose status comes from :data:`HTTP_STATUS_TABLE`, by the
  error's class (most specific first, as ``didnode.wire.status`` does for gRPC),
  and whose ``reason`` is the error's didnode reason.

No aiohttp here: statuses are numbers, documents are dicts.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Final

from didnode import errors as e
from didnode.core.did_url import error_type

PROBLEM_JSON: Final = "application/problem+json"

# W3C DID Resolution, "HTTP(S) Binding": the status of each error type (any other type: 500).
DID_ERROR_STATUS: Final[dict[str, int]] = {
    "INVALID_DID": 400,
    "INVALID_DID_URL": 400,
    "INVALID_OPTIONS": 400,
    "NOT_FOUND": 404,
    "REPRESENTATION_NOT_SUPPORTED": 406,
    "INVALID_DID_DOCUMENT": 500,
    "METHOD_NOT_SUPPORTED": 501,
    "FEATURE_NOT_SUPPORTED": 501,
    "INTERNAL_ERROR": 500,
}

# Most specific first: the first class in an error's MRO found here wins.
HTTP_STATUS_TABLE: Final[dict[type[e.DidnodeError], int]] = {
    e.RepresentationNotSupported: 406,
    e.MethodNotSupported: 501,
    e.TooLarge: 413,
    e.RateLimited: 429,
    e.InvalidInput: 400,
    e.NotFound: 404,
    e.Conflict: 409,
    e.Unauthorized: 403,
    e.ResourceExhausted: 503,
    e.Unavailable: 503,
    e.Internal: 500,
    e.DidnodeError: 500,
}


def http_status(err: e.DidnodeError) -> int:
    """The HTTP status of ``err`` on a route that is not resolution (walks :data:`HTTP_STATUS_TABLE`)."""
    for cls in type(err).__mro__:
        status = HTTP_STATUS_TABLE.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return int(status)
    return 500


def resolution_status(err: e.DidnodeError, did_text: str | None = None) -> int:
    """The HTTP status of a resolution or dereferencing that failed with ``err`` (:data:`DID_ERROR_STATUS`)."""
    return DID_ERROR_STATUS.get(error_type(err, did_text), 500)


def problem(err: e.DidnodeError, status: int | None = None, instance: str | None = None) -> dict[str, Any]:
    """The RFC 9457 problem document of ``err``: ``type`` ``about:blank`` (the status says what kind),
    ``title`` the status phrase, ``status``, ``detail`` the message, and didnode's ``reason`` and
    ``details`` as extension members."""
    code = status if status is not None else http_status(err)
    doc: dict[str, Any] = {"type": "about:blank", "title": _phrase(code), "status": code, "detail": err.message, "reason": err.reason}
    if err.details:
        doc["details"] = dict(err.details)
    if instance is not None:
        doc["instance"] = instance
    return doc


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


__all__ = ["DID_ERROR_STATUS", "HTTP_STATUS_TABLE", "PROBLEM_JSON", "http_status", "problem", "resolution_status"]
