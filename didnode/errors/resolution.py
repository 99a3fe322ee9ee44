"""Errors of DID resolution and DID URL dereferencing as the W3C DID Resolution specification names them.

Part of the one error tree: import from :mod:`didnode.errors`. A DID that is
not a ``did:dnode`` DID at all is :class:`~didnode.errors.InvalidDid`; these
classes add what the resolution interface (HTTP, docs/http.md) tells apart
beyond it. Each maps to one of the specification's error types
(``https://www.w3.org/ns/did#...``) in :data:`didnode.core.did_url.DID_ERROR_TYPES`.
"""

from __future__ import annotations

from didnode.errors.base import InvalidInput, NotFound
from didnode.errors.ledger import InvalidDid


class MethodNotSupported(InvalidDid):
    """A well-formed DID of another method than ``did:dnode``: this resolver resolves only ``did:dnode`` (HTTP 501)."""

    reason = "METHOD_NOT_SUPPORTED"


class InvalidDidUrl(InvalidInput):
    """A DID URL that does not parse: a path, a query that is not ``name=value`` pairs, an unknown or repeated parameter, a bad fragment or escape."""

    reason = "INVALID_DID_URL"


class InvalidOptions(InvalidInput):
    """Resolution or dereferencing options that are malformed, repeated, unknown or contradict each other (e.g. ``versionId`` with ``versionTime``)."""

    reason = "INVALID_OPTIONS"


class RepresentationNotSupported(InvalidInput):
    """None of the media types the caller accepts can represent the result (HTTP 406)."""

    reason = "REPRESENTATION_NOT_SUPPORTED"


class UnknownFragment(NotFound):
    """A DID URL's fragment names no verification method or service of the DID's document (of that version)."""

    reason = "UNKNOWN_FRAGMENT"


class UnknownService(NotFound):
    """A DID URL's ``service`` parameter names no service of the DID's document (of that version)."""

    reason = "UNKNOWN_SERVICE"
