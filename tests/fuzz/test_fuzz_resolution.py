"""Fuzz targets: the HTTP face's parsers of untrusted text (W3C DID Resolution binding, docs/http.md).

* ``did_url``: a DID URL (``didnode.core.did_url.parse_did_url``); one that parses
  must print (``DidUrl.text``) to a spelling that parses to the same value;
* ``http_target``: the path tail and query of ``GET /1.0/identifiers/...``
  (``parse_http_target``), then dereferenced against a sample resolution
  result with the representation a fuzzed ``Accept`` header chooses;
* ``accept``: an ``Accept`` header, negotiated against each offer list.

Every failure must be a typed didnode error (the oracle), never another exception.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from didnode.core.dereference import (
    DOCUMENT_OFFERS,
    FRAGMENT_OFFERS,
    choose,
    parse_accept,
    represent_document,
    represent_fragment,
    service_location,
)
from didnode.core.did_url import error_object, parse_did_url, parse_http_target
from didnode.core.document import resolution_result
from didnode.errors import DidnodeError
from tests.fuzz import harness
from tests.fuzz.harness import target

SERVICES = [{"id": "mqtt", "type": "MQTTBroker", "serviceEndpoint": "mqtts://broker.example:8883/a/b?c=d"}]
URL_TOKENS = ("?service=", "&relativeRef=", "versionId=", "versionTime=2026-01-31T12:00:00Z", "resource=", "proof=true", "%3F", "%23", "%26", "%3D", "%2F", "#key-1-jwk", "#mqtt", "did:web:", "%C3%A9", "%")
ACCEPT_TOKENS = ("application/did-resolution", "application/did+ld+json", "application/did", ";q=0.5", ";profile=", '"https://w3id.org/did-resolution"', "*/*", ", ", "text/html")


@lru_cache(maxsize=1)
def _sample() -> tuple[str, dict[str, Any]]:
    from tests.factory import MemLedger, new_create

    ledger = MemLedger()
    state = ledger.submit(new_create(services=SERVICES)[1])
    return state.did, resolution_result(state, state.created_time)


def _seeds_urls() -> list[bytes]:
    did, _ = _sample()
    return [
        u.encode()
        for u in (
            did,
            f"{did}#key-1",
            f"{did}?service=mqtt&relativeRef=%2Fx%3Fy%3D1#f",
            f"{did}?versionId=0",
            f"{did}?versionTime=2026-01-31T12:00:00Z",
            f"{did}?resource=revocation-1#94567",
            "did:web:example.com",
        )
    ]


def _seeds_targets() -> list[bytes]:
    did, _ = _sample()
    enc = did.replace(":", "%3A")
    return [
        f"{did}\n\napplication/did-resolution".encode(),
        f"{enc}%23key-1-jwk\n\napplication/did+json".encode(),
        f"{did}\nservice=mqtt&relativeRef=%2Fz\n".encode(),
        f"{enc}%3FversionId%3D0\nproof=false\n*/*".encode(),
        f"{did}\nversionId=0&proof=true\ntext/html, application/did;q=0.1".encode(),
    ]


@target("did_url", seeds=_seeds_urls, tokens=URL_TOKENS, max_len=4096)
def fuzz_did_url(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        url = parse_did_url(text)
    except DidnodeError as err:
        error_object(err, text)  # every error has a specification error type and an object
        raise
    assert parse_did_url(url.text) == url, "a parsed DID URL must print to a spelling that parses to the same value"


@target("http_target", seeds=_seeds_targets, tokens=(*URL_TOKENS, *ACCEPT_TOKENS, "\n"), max_len=4096)
def fuzz_http_target(data: bytes) -> None:
    tail, _, rest = data.decode("latin-1").partition("\n")
    query, _, accept = rest.partition("\n")
    url = parse_http_target(tail, query)
    did, result = _sample()
    if url.did != did:
        return
    if url.service is not None:
        rep = service_location(result, url)
        assert rep.location is None or not any(c in rep.location for c in "\r\n\x00"), "a Location must be one header line"
    elif url.fragment is not None:
        represent_fragment(result, url, choose(accept or None, FRAGMENT_OFFERS))
    else:
        represent_document(result, choose(accept or None, DOCUMENT_OFFERS))


@target("accept", seeds=lambda: [t.encode() for t in ACCEPT_TOKENS], tokens=ACCEPT_TOKENS, max_len=2048)
def fuzz_accept(data: bytes) -> None:
    header = data.decode("latin-1")
    parse_accept(header)
    for offers in (DOCUMENT_OFFERS, FRAGMENT_OFFERS, ("application/vc+jwt", "application/did-url-dereferencing")):
        assert choose(header, offers) in offers


test_fuzz = harness.fuzz_tests(__name__)
